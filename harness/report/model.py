"""One run, as the reports see it: targets, scenarios and one record per check and target.

Every report (JUnit, JSON, HTML, console) is rendered from the same :class:`RunModel`, so
they never disagree. Records are built from a :class:`~harness.results.CheckResult` while
the item is still at hand (in a pytest-xdist worker too) and travel as plain dicts on the
test report; the model is assembled where the reports are written.

Secrets: transcripts are redacted when recorded, and a :class:`Scrubber` removes the
password of every target in the run (raw and base64) from every string again before
anything is rendered, so a server that echoes a password cannot put it in a report.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from harness.results import CheckResult, SkipKind, Status, skip_kind_of
from harness.transcript import REDACTED, secret_forms

# 2: results carry skip_kind, counts split skips by kind, and a lab server's own error
# turns a result into status error (a status no longer always the check's own verdict).
# 3: status warn (and counts.warn): a deviation that passes a run unless strict, so a
# consumer that treated every non-pass status as a failure would misread it.
SCHEMA_VERSION = 3
STATUSES: tuple[str, ...] = tuple(status.value for status in Status)  # pass warn fail skip error
SKIP_KINDS: tuple[str, ...] = tuple(kind.value for kind in SkipKind)
# The counts keys of the two skip kinds: skip_not_applicable, skip_could_not_run.
SKIP_COUNT_KEYS: dict[str, str] = {k: "skip_" + k.replace("-", "_") for k in SKIP_KINDS}
OUTCOMES = ("passed", "failed", "skipped")


# -- values that survive JSON, XML and the wire -------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: evidence may hold tuples, bytes, enums or paths."""
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _valid_unicode(str.__str__(value))
    if isinstance(value, bytes | bytearray):
        return _valid_unicode(bytes(value).decode("utf-8", "backslashreplace"))
    if isinstance(value, Mapping):
        return {_valid_unicode(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    return _valid_unicode(str(value))


def _valid_unicode(text: str) -> str:
    """Lone surrogates (from undecodable bytes) cannot be written as UTF-8: escape them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def printable(text: str) -> str:
    """Control characters a server sent, made visible (``\\x1b``) and legal in XML 1.0.

    Tabs and newlines stay; everything else below U+0020, DEL, C1 controls and the
    non-characters U+FFFE/U+FFFF become escapes, so a hostile reply cannot break the
    XML or drive a terminal.
    """
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in "\t\n" or (0x20 <= code < 0x7F) or (0xA0 <= code <= 0xD7FF):
            out.append(char)
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


# -- secrets ------------------------------------------------------------------------


class Scrubber:
    """Replace every known secret, in every form it can take, in every string.

    The forms are those of :func:`harness.transcript.secret_forms` (raw and base64) plus
    the SASL PLAIN blob (``\\0user\\0password``, base64) when the user is known.
    """

    def __init__(self, secrets: Iterable[str] = (), users: Iterable[str | None] = ()) -> None:
        self._forms: set[str] = set()
        self._users = {u for u in users if u}
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None, user: str | None = None) -> None:
        if not secret:
            return
        if user:
            self._users.add(user)
        self._forms.update(form for form in secret_forms(secret) if form)
        for name in self._users:
            blob = f"\0{name}\0{secret}".encode()
            self._forms.add(base64.b64encode(blob).decode())

    @property
    def forms(self) -> list[str]:
        """Longest first, so a secret inside a longer one is not half-replaced."""
        return sorted(self._forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, value: str) -> str:
        for form in self.forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` (JSON types) with every string scrubbed, keys included."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value

    def found_in(self, text: str) -> list[str]:
        """Which secret forms occur in ``text`` (for a last check before writing)."""
        return [form for form in self.forms if form in text]


def scrubber_for(targets: Iterable[Any]) -> Scrubber:
    """A scrubber for the passwords of ``targets`` (anything with ``password``/``user``)."""
    scrubber = Scrubber()
    for target in targets:
        scrubber.add(getattr(target, "password", None), getattr(target, "user", None))
    return scrubber


# -- the model ----------------------------------------------------------------------


@dataclass
class TargetInfo:
    """What a report says about a target: never its password."""

    id: str
    name: str
    protocol: str
    kind: str  # "lab" or "remote"
    host: str | None = None
    port: int | None = None
    user: str | None = None
    groups: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # the inventory's free labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "protocol": self.protocol,
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "groups": list(self.groups),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetInfo:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            protocol=str(data.get("protocol") or ""),
            kind=str(data.get("kind") or "remote"),
            host=data.get("host"),
            port=data.get("port"),
            user=data.get("user"),
            groups=[str(g) for g in data.get("groups") or []],
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        )


@dataclass
class ScenarioInfo:
    name: str
    file: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "description": self.description}


@dataclass
class ResultRecord:
    """One check against one target: the check's verdict and what pytest made of it.

    ``status`` is the check's own verdict (pass/warn/fail/skip/error); ``expect`` is what
    the scenario wanted; ``outcome`` is pytest's (``failed`` when they disagree, and for a
    warning or a could-not-run skip under strict). A scenario that demonstrates a fault
    is caught has ``status`` fail, ``expect`` fail and ``outcome`` passed; a warning
    under ``expect: pass`` has ``outcome`` passed unless strict.
    """

    nodeid: str
    scenario: str
    scenario_file: str
    line: int | None
    check: str
    check_id: str
    target: str
    protocol: str
    status: str
    expect: str
    outcome: str
    message: str = ""
    summary: str = ""
    expected: str = ""
    observed: str = ""
    replies: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""
    transcript: list[str] = field(default_factory=list)
    duration: float = 0.0
    tls_version: str = ""
    order: int = 0  # the check's position in its scenario, for stable ordering
    skip_kind: str | None = None  # a SkipKind value when status is skip, else None

    @property
    def case(self) -> str:
        """``scenario::check-id``: the name of this check in every report."""
        return f"{self.scenario}::{self.check_id}"

    @property
    def as_expected(self) -> bool:
        return self.outcome != "failed"

    def describe(self) -> str:
        """The same text pytest prints for a failure (see :meth:`CheckResult.describe`)."""
        return self.check_result().describe()

    def check_result(self) -> CheckResult:
        return CheckResult(
            check=self.check,
            status=Status(self.status),
            summary=self.summary,
            expected=self.expected,
            observed=self.observed,
            replies=list(self.replies),
            evidence=dict(self.evidence),
            advice=self.advice,
            duration=self.duration,
            transcript=list(self.transcript),
            skip_kind=skip_kind_of(self.skip_kind) if self.status == "skip" else None,
        )

    @property
    def skip_label(self) -> str:
        """``not applicable`` / ``could not run`` for a skip, else empty."""
        return self.skip_kind.replace("-", " ") if self.skip_kind else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "scenario": self.scenario,
            "scenario_file": self.scenario_file,
            "line": self.line,
            "check": self.check,
            "check_id": self.check_id,
            "target": self.target,
            "protocol": self.protocol,
            "status": self.status,
            "skip_kind": self.skip_kind,
            "expect": self.expect,
            "outcome": self.outcome,
            "as_expected": self.as_expected,
            "message": self.message,
            "summary": self.summary,
            "expected": self.expected,
            "observed": self.observed,
            "replies": list(self.replies),
            "evidence": jsonable(self.evidence),
            "advice": self.advice,
            "tls_version": self.tls_version,
            "transcript": list(self.transcript),
            "duration": round(float(self.duration), 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRecord:
        status = str(data.get("status") or "error")
        if status not in STATUSES:
            status = "error"
        return cls(
            nodeid=str(data.get("nodeid") or ""),
            scenario=str(data.get("scenario") or ""),
            scenario_file=str(data.get("scenario_file") or ""),
            line=data.get("line"),
            check=str(data.get("check") or ""),
            check_id=str(data.get("check_id") or data.get("check") or ""),
            target=str(data.get("target") or ""),
            protocol=str(data.get("protocol") or ""),
            status=status,
            expect=str(data.get("expect") or "pass"),
            outcome=str(data.get("outcome") or "passed"),
            message=str(data.get("message") or ""),
            summary=str(data.get("summary") or ""),
            expected=str(data.get("expected") or ""),
            observed=str(data.get("observed") or ""),
            replies=[str(r) for r in data.get("replies") or []],
            evidence=dict(data.get("evidence") or {}),
            advice=str(data.get("advice") or ""),
            transcript=[str(t) for t in data.get("transcript") or []],
            duration=float(data.get("duration") or 0.0),
            tls_version=str(data.get("tls_version") or ""),
            order=int(data.get("order") or 0),
            skip_kind=skip_kind_of(data.get("skip_kind")).value if status == "skip" else None,
        )


def tls_version_of(evidence: Mapping[str, Any]) -> str:
    """The negotiated TLS version, top level (FTPS checks) or under ``tls`` (SMTP)."""
    version = evidence.get("tls_version")
    if not version and isinstance(evidence.get("tls"), Mapping):
        version = evidence["tls"].get("tls_version")
    return str(version) if version else ""


def counts_of(records: Iterable[ResultRecord]) -> dict[str, int]:
    """Per status, per skip kind (``skip_not_applicable``, ``skip_could_not_run``), the
    total and how many results were not as expected."""
    counts = dict.fromkeys(STATUSES, 0)
    kinds = dict.fromkeys(SKIP_COUNT_KEYS.values(), 0)
    total = unexpected = 0
    for record in records:
        counts[record.status] += 1
        if record.status == "skip":
            kinds[SKIP_COUNT_KEYS[skip_kind_of(record.skip_kind).value]] += 1
        total += 1
        unexpected += not record.as_expected
    return {**counts, **kinds, "total": total, "unexpected": unexpected}


@dataclass
class CollectionError:
    """A scenario file (or other collector) that failed to load, with pytest's message."""

    nodeid: str
    message: str

    def headline(self) -> str:
        """The last non-empty line: where pytest and Python put the actual error."""
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        return lines[-1] if lines else "collection failed"

    def to_dict(self) -> dict[str, str]:
        return {"nodeid": self.nodeid, "message": self.message}


@dataclass
class RunInfo:
    started: str
    finished: str
    duration: float
    ftps_lab_version: str
    python: str
    platform: str
    pytest_version: str
    exit_status: int | None = None
    # Run identity, so ``lab report merge`` can refuse shards of different runs:
    # LAB_RUN_ID, else the CI's pipeline id, else a hash of the plan, host and start.
    run_id: str = ""
    plan: str | None = None  # hash of every (target, scenario, check) before sharding
    shard: dict[str, int] | None = None  # {"index": I, "total": N} for --lab-shard I/N
    merged_shards: list[int] = field(default_factory=list)  # set by ``lab report merge``

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "shard": dict(self.shard) if self.shard else None,
            "merged_shards": list(self.merged_shards),
            "started": self.started,
            "finished": self.finished,
            "duration": round(self.duration, 3),
            "ftps_lab_version": self.ftps_lab_version,
            "python": self.python,
            "platform": self.platform,
            "pytest_version": self.pytest_version,
            "exit_status": self.exit_status,
        }


    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        shard = data.get("shard")
        return cls(
            started=str(data.get("started") or ""),
            finished=str(data.get("finished") or ""),
            duration=float(data.get("duration") or 0.0),
            ftps_lab_version=str(data.get("ftps_lab_version") or ""),
            python=str(data.get("python") or ""),
            platform=str(data.get("platform") or ""),
            pytest_version=str(data.get("pytest_version") or ""),
            exit_status=data.get("exit_status"),
            run_id=str(data.get("run_id") or ""),
            plan=data.get("plan"),
            shard={"index": int(shard["index"]), "total": int(shard["total"])} if shard else None,
            merged_shards=[int(i) for i in data.get("merged_shards") or []],
        )


def ftps_lab_version() -> str:
    try:
        from importlib.metadata import version

        return version("ftps-lab")
    except Exception:
        from harness import __version__

        return __version__


def run_info(
    started: float,
    finished: float,
    exit_status: int | None = None,
    *,
    plan: str | None = None,
    shard: tuple[int, int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunInfo:
    """Metadata for a run between two ``time.time()`` stamps, with its identity."""
    import pytest

    def stamp(when: float) -> str:
        return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds")

    return RunInfo(
        started=stamp(started),
        finished=stamp(finished),
        duration=max(0.0, finished - started),
        ftps_lab_version=ftps_lab_version(),
        python=f"{platform.python_implementation()} {sys.version.split()[0]}",
        platform=platform.platform(),
        pytest_version=pytest.__version__,
        exit_status=exit_status,
        run_id=run_id(environ if environ is not None else os.environ, plan, started),
        plan=plan,
        shard={"index": shard[0], "total": shard[1]} if shard else None,
    )


def run_id(environ: Mapping[str, str], plan: str | None, started: float) -> str:
    """The identity every shard of one run shares.

    ``LAB_RUN_ID`` wins; then GitHub Actions' ``GITHUB_RUN_ID``/``GITHUB_RUN_ATTEMPT`` and
    GitLab's ``CI_PIPELINE_ID``, the same in every job of a pipeline; else a hash of the
    plan, the host and the start, which differs between any two runs (shards started
    by hand need ``LAB_RUN_ID`` to be merged).
    """
    if environ.get("LAB_RUN_ID"):
        return environ["LAB_RUN_ID"]
    if environ.get("GITHUB_RUN_ID"):
        attempt = environ.get("GITHUB_RUN_ATTEMPT") or "1"
        return f"github-{environ['GITHUB_RUN_ID']}-{attempt}"
    if environ.get("CI_PIPELINE_ID"):
        return f"gitlab-{environ['CI_PIPELINE_ID']}"
    seed = f"{plan}|{platform.node()}|{started}".encode()
    return "local-" + hashlib.sha256(seed).hexdigest()[:16]


def plan_of(items: Iterable[tuple[str, str, str]]) -> str:
    """A short hash of every (target, scenario, check id) a run collected, before sharding:
    the shards of one run share it."""
    text = "\n".join(sorted("\t".join(item) for item in set(items)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunModel:
    """Everything the reports show, already scrubbed of secrets."""

    run: RunInfo
    targets: list[TargetInfo]
    scenarios: list[ScenarioInfo]
    results: list[ResultRecord]
    # Scenario files that did not load: no result would otherwise show they never ran.
    collection_errors: list[CollectionError] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        run: RunInfo,
        entries: Iterable[Mapping[str, Any]],
        scrubber: Scrubber | None = None,
        collection_errors: Iterable[CollectionError] = (),
    ) -> RunModel:
        """Assemble a model from record dicts (see :func:`record_entry`), scrubbing them.

        Each entry holds ``record``, ``target`` (a :class:`TargetInfo` dict) and
        ``scenario`` (a :class:`ScenarioInfo` dict).
        """
        scrub = scrubber or Scrubber()
        errors = [
            CollectionError(*(scrub.text(_valid_unicode(text)) for text in (e.nodeid, e.message)))
            for e in collection_errors
        ]
        targets: dict[str, TargetInfo] = {}
        scenarios: dict[str, ScenarioInfo] = {}
        results: list[ResultRecord] = []
        for raw in entries:
            entry = scrub.scrub(jsonable(raw))
            record = ResultRecord.from_dict(entry["record"])
            results.append(record)
            info = TargetInfo.from_dict(entry.get("target") or {"id": record.target})
            known = targets.get(info.id)
            if known is None or (known.host is None and info.host is not None):
                targets[info.id] = info
            scen = entry.get("scenario") or {"name": record.scenario, "file": ""}
            scenarios.setdefault(
                record.scenario,
                ScenarioInfo(
                    str(scen.get("name") or record.scenario),
                    str(scen.get("file") or record.scenario_file),
                    str(scen.get("description") or ""),
                ),
            )
        results.sort(key=lambda r: (r.scenario_file, r.scenario, r.order, r.check_id, r.target))
        ordered_scenarios = sorted(scenarios.values(), key=lambda s: (s.file, s.name))
        ordered_targets = sorted(targets.values(), key=lambda t: (t.kind, t.id))
        return cls(
            run=run,
            targets=ordered_targets,
            scenarios=ordered_scenarios,
            results=results,
            collection_errors=errors,
        )

    # -- views ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return counts_of(self.results)

    def by_target(self) -> dict[str, list[ResultRecord]]:
        """Each target's results in one pass (a fleet has 500 targets x 40 checks)."""
        grouped: dict[str, list[ResultRecord]] = {t.id: [] for t in self.targets}
        for record in self.results:
            grouped.setdefault(record.target, []).append(record)
        return grouped

    def counts_by_target(self) -> dict[str, dict[str, int]]:
        grouped = self.by_target()
        return {target.id: counts_of(grouped[target.id]) for target in self.targets}

    def problems(self) -> list[ResultRecord]:
        """Records whose outcome disagrees with the scenario: what makes the run fail."""
        return [r for r in self.results if not r.as_expected]

    def warnings(self) -> list[ResultRecord]:
        """Warnings that passed the run (expect: pass, not strict): shown with their
        advice, because a deviation nobody reads is never fixed. A warning that failed
        the run is a problem instead; one under ``expect: warn`` is a demonstration."""
        return [r for r in self.results
                if r.status == "warn" and r.as_expected and r.expect == "pass"]

    def matrix(self, scenario: str) -> tuple[list[str], list[str], dict[tuple[str, str], int]]:
        """Rows (check ids), columns (target ids) and cell -> index into ``results``."""
        rows: list[str] = []
        columns: list[str] = []
        cells: dict[tuple[str, str], int] = {}
        for index, record in enumerate(self.results):
            if record.scenario != scenario:
                continue
            if record.check_id not in rows:
                rows.append(record.check_id)
            if record.target not in columns:
                columns.append(record.target)
            cells[(record.check_id, record.target)] = index
        order = {t.id: i for i, t in enumerate(self.targets)}
        columns.sort(key=lambda c: order.get(c, len(order)))
        return rows, columns, cells

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RunModel:
        """A model from a JSON report (already normalised to the current schema, see
        :mod:`harness.report.load`), keeping its order, for re-rendering and merging."""
        results = []
        for data in document.get("results") or []:
            record = ResultRecord.from_dict(data)
            record.order = record.line or 0  # the check's place in its scenario file
            results.append(record)
        return cls(
            run=RunInfo.from_dict(document.get("run") or {}),
            targets=[TargetInfo.from_dict(t) for t in document.get("targets") or []],
            scenarios=[
                ScenarioInfo(str(s.get("name") or ""), str(s.get("file") or ""),
                             str(s.get("description") or ""))
                for s in document.get("scenarios") or []
            ],
            results=results,
            collection_errors=[
                CollectionError(str(e.get("nodeid") or ""), str(e.get("message") or ""))
                for e in document.get("collection_errors") or []
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``harness/schemas/report.schema.json``)."""
        by_target = self.counts_by_target()
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run.to_dict(),
            "totals": self.counts(),
            "targets": [{**t.to_dict(), "counts": by_target[t.id]} for t in self.targets],
            "scenarios": [s.to_dict() for s in self.scenarios],
            "results": [r.to_dict() for r in self.results],
            "collection_errors": [e.to_dict() for e in self.collection_errors],
        }


def record_entry(
    *,
    nodeid: str,
    scenario: ScenarioInfo,
    target: TargetInfo,
    check: str,
    check_id: str,
    expect: str,
    line: int | None,
    order: int,
    outcome: str,
    message: str,
    result: CheckResult | None,
    duration: float,
    skip_kind: SkipKind | str | None = None,
) -> dict[str, Any]:
    """A record as plain JSON types, ready to travel on a pytest report.

    Without a ``result`` (skipped before running, or an internal error) the record says
    so: status ``skip`` for a skip, ``error`` otherwise, with pytest's message as summary.
    ``skip_kind`` is the result's own, else the one given, else ``could-not-run``.
    """
    if result is not None:
        data = result.to_dict()
        status = result.status.value
        skip_kind = result.skip_kind or skip_kind
    else:
        status = "skip" if outcome == "skipped" else "error"
        data = {"summary": message, "duration": duration}
    data = jsonable(data)
    kind = skip_kind_of(skip_kind).value if status == "skip" else None
    record = {
        "nodeid": nodeid,
        "scenario": scenario.name,
        "scenario_file": scenario.file,
        "line": line,
        "check": check,
        "check_id": check_id,
        "target": target.id,
        "protocol": target.protocol,
        "status": status,
        "skip_kind": kind,
        "expect": expect,
        "outcome": outcome,
        "message": message,
        "summary": data.get("summary", ""),
        "expected": data.get("expected", ""),
        "observed": data.get("observed", ""),
        "replies": data.get("replies", []),
        "evidence": data.get("evidence", {}),
        "advice": data.get("advice", ""),
        "transcript": data.get("transcript", []),
        "duration": data.get("duration") or duration,
        "tls_version": tls_version_of(data.get("evidence", {})),
        "order": order,
    }
    return {"record": record, "target": target.to_dict(), "scenario": scenario.to_dict()}
