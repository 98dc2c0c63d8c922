"""The one value every check produces, so pytest, reports and the CLI read the same thing."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Outcome of a check (the rule and every check's table: ``docs/verdicts.md``).

    ``fail`` means the behaviour weakens security or breaks real clients; ``warn`` means
    the server deviates from an RFC SHOULD or from best practice but stays secure and
    clients work (it passes a run unless strict); ``error`` means the check could not
    reach a verdict (connection refused, timeout before the step, our own bug); ``skip``
    means the step was not performed (see :class:`SkipKind`).
    """

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"


class SkipKind(str, enum.Enum):
    """Why a check skipped, because the two kinds call for different actions.

    ``not-applicable``: the step has nothing to say about this target (a lab-only step on a
    remote target, a check that does not apply to the port or protocol); nothing to fix.
    ``could-not-run``: the step applies but this run could not perform it (no credentials,
    a feature it builds on is missing, this client cannot offer TLS 1.0): the property is
    unproven, which ``--lab-strict`` turns into a failure.
    """

    NOT_APPLICABLE = "not-applicable"
    COULD_NOT_RUN = "could-not-run"

    @property
    def label(self) -> str:
        """The words used in skip reasons and the console: ``not applicable``."""
        return self.value.replace("-", " ")


def skip_kind_of(value: SkipKind | str | None) -> SkipKind:
    """A skip kind from a record or result; anything unclassified could not run.

    Defaulting to ``could-not-run`` keeps a forgotten classification on the cautious side:
    it is reported as unproven (and fails under ``--lab-strict``), never as harmless.
    """
    try:
        return SkipKind(value) if value else SkipKind.COULD_NOT_RUN
    except ValueError:
        return SkipKind.COULD_NOT_RUN


@dataclass
class CheckResult:
    """What one check observed and what it concluded.

    ``expected``/``observed`` are short human sentences; ``replies`` keeps the server's
    reply lines that decided the verdict; ``evidence`` holds structured facts (TLS
    version, certificate details, addresses) for reports; ``transcript`` is the redacted
    session log; ``advice`` says how to fix a failure or a warning.
    """

    check: str
    status: Status
    summary: str
    expected: str = ""
    observed: str = ""
    replies: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""
    duration: float = 0.0
    transcript: list[str] = field(default_factory=list)
    skip_kind: SkipKind | None = None

    def __post_init__(self) -> None:
        if self.status is Status.SKIP:
            self.skip_kind = skip_kind_of(self.skip_kind)
        else:
            self.skip_kind = None

    @property
    def ok(self) -> bool:
        """Nothing wrong was seen: a pass, a warning (secure, clients work) or a skip."""
        return self.status in (Status.PASS, Status.WARN, Status.SKIP)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["skip_kind"] = self.skip_kind.value if self.skip_kind else None
        return data

    def describe(self) -> str:
        """Multi-line text for a failure report: verdict, expectation, the server's words."""
        label = self.status.value.upper()
        if self.status is Status.SKIP and self.skip_kind:
            label += f", {self.skip_kind.label}"
        lines = [f"[{label}] {self.check}: {self.summary}"]
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.observed:
            lines.append(f"  observed: {self.observed}")
        for reply in self.replies[-6:]:
            lines.append(f"  server:   {reply}")
        if self.advice:
            lines.append(f"  advice:   {self.advice}")
        if self.transcript and self.status in (Status.WARN, Status.FAIL, Status.ERROR):
            lines.append("  transcript (last lines):")
            lines.extend(f"    {line}" for line in self.transcript[-15:])
        return "\n".join(lines)


@contextmanager
def timed() -> Iterator[list[float]]:
    """Measure a block; the single list element holds the elapsed seconds afterwards."""
    box = [0.0]
    start = time.monotonic()
    try:
        yield box
    finally:
        box[0] = time.monotonic() - start
