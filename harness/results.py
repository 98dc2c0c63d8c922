"""The one value every check produces, so pytest, reports and the CLI read the same thing."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Outcome of a check.

    ``fail`` means the server did something wrong; ``error`` means the check could not
    reach a verdict (connection refused, timeout before the step, our own bug); ``skip``
    means the check does not apply to this target.
    """

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"


@dataclass
class CheckResult:
    """What one check observed and what it concluded.

    ``expected``/``observed`` are short human sentences; ``replies`` keeps the server's
    reply lines that decided the verdict; ``evidence`` holds structured facts (TLS
    version, certificate details, addresses) for reports; ``transcript`` is the redacted
    session log; ``advice`` says how to fix a failure.
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

    @property
    def ok(self) -> bool:
        return self.status in (Status.PASS, Status.SKIP)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    def describe(self) -> str:
        """Multi-line text for a failure report: verdict, expectation, the server's words."""
        lines = [f"[{self.status.value.upper()}] {self.check}: {self.summary}"]
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.observed:
            lines.append(f"  observed: {self.observed}")
        for reply in self.replies[-6:]:
            lines.append(f"  server:   {reply}")
        if self.advice:
            lines.append(f"  advice:   {self.advice}")
        if self.transcript and self.status in (Status.FAIL, Status.ERROR):
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
