"""What changed between two runs: regressions first, then fixes, targets, checks and evidence.

Pure functions over two normalised JSON reports (:func:`harness.report.load.normalise`),
so CI can compare a build with the last green one without running anything. A result is
keyed by (target, scenario, check id). Evidence is compared per target, not per result:
the same certificate is recorded by half a dozen checks and should be reported once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.report.load import paused_gc

# Kinds, in the order a reader wants them.
KINDS: tuple[str, ...] = (
    "regression", "removed-target", "removed-check", "cert-change", "expiry",
    "tls-change", "pasv-change", "auth-change", "status-change", "fix",
    "new-target", "new-check",
)
# --fail-on shorthands.
ALIASES: dict[str, tuple[str, ...]] = {
    "removed": ("removed-target", "removed-check"),
    "new": ("new-target", "new-check"),
    "evidence": ("cert-change", "tls-change", "pasv-change", "auth-change"),
    "any": KINDS,
}
GOOD = ("pass", "warn")
BAD = ("fail", "error")
# Evidence facts worth a line, and the kind a change of each is.
FACTS: dict[str, str] = {
    "cert_sha256": "cert-change",
    "cert_issuer": "cert-change",
    "cert_not_after": "cert-change",
    "tls_version": "tls-change",
    "cipher": "tls-change",
    "pasv_address": "pasv-change",
    "auth_mechanisms": "auth-change",
}
LABELS = {
    "cert_sha256": "certificate SHA-256", "cert_issuer": "certificate issuer",
    "cert_not_after": "certificate expiry", "tls_version": "TLS version",
    "cipher": "cipher", "pasv_address": "PASV address", "auth_mechanisms": "AUTH mechanisms",
}


@dataclass
class Change:
    """One difference; ``old``/``new`` are a status or an evidence value, or None."""

    kind: str
    target: str
    case: str = ""  # scenario::check-id, empty for target and evidence changes
    old: Any = None
    new: Any = None
    detail: str = ""  # the new diagnosis, or the fact that changed

    def line(self) -> str:
        where = f"{self.target} {self.case}".strip()
        if self.kind in ("regression", "fix", "status-change"):
            detail = f": {self.detail}" if self.detail else ""
            return f"{where}: {self.old} -> {self.new}{detail}"
        if self.kind in ("new-target", "removed-target", "new-check", "removed-check"):
            return where + (f" ({self.detail})" if self.detail else "")
        return f"{where}: {self.detail} {_show(self.old)} -> {_show(self.new)}"


@dataclass
class Diff:
    old_run: dict[str, Any]
    new_run: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    days_left: dict[str, int] = field(default_factory=dict)  # target -> days, new run

    def of(self, *kinds: str) -> list[Change]:
        return [c for c in self.changes if c.kind in kinds]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of(kind)) for kind in KINDS}

    def failing(self, fail_on: Iterable[str]) -> list[Change]:
        """The changes that make ``lab diff`` exit 1."""
        return self.of(*expand(fail_on))

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_run": self.old_run,
            "new_run": self.new_run,
            "counts": self.counts(),
            "changes": [asdict(c) for c in self.changes],
            "days_left": dict(self.days_left),
        }


def expand(names: Iterable[str]) -> tuple[str, ...]:
    """``regression,removed`` -> the kinds; unknown names raise ValueError naming them."""
    out: list[str] = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name in ALIASES:
            out.extend(ALIASES[name])
        elif name in KINDS:
            out.append(name)
        else:
            known = ", ".join([*KINDS, *ALIASES])
            raise ValueError(f"unknown change kind {name!r}; known: {known}")
    return tuple(dict.fromkeys(out))


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    return str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}  # JSON objects; dict is fast to test


def facts_of(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The facts ``lab diff`` follows, from one result's evidence (FTPS keeps TLS facts at
    the top level, SMTP under ``tls``; AUTH is the EHLO after STARTTLS when there is one)."""
    tls = _mapping(evidence.get("tls"))
    cert = _mapping(evidence.get("certificate"))
    out: dict[str, Any] = {
        "cert_sha256": cert.get("sha256") or evidence.get("certificate_sha256")
        or tls.get("certificate_sha256"),
        "cert_issuer": cert.get("issuer"),
        "cert_not_after": cert.get("not_after"),
        "tls_version": evidence.get("tls_version") or tls.get("tls_version"),
        "cipher": evidence.get("cipher") or tls.get("cipher"),
        "pasv_address": evidence.get("announced_address"),
    }
    for key in ("ehlo_after_tls", "ehlo"):
        ehlo = _mapping(evidence.get(key))
        if "AUTH" in ehlo:
            out["auth_mechanisms"] = sorted(str(m).upper() for m in ehlo["AUTH"] or [])
            break
    return {k: v for k, v in out.items() if v not in (None, "")}


def days_left_of(evidence: Mapping[str, Any]) -> int | None:
    """Days to the certificate's expiry as the run saw it (``expiry``, then certificate)."""
    for source in (_mapping(evidence.get("cert_expiry")), _mapping(evidence.get("certificate")),
                   evidence):
        value = source.get("days_left")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# Evidence keys any fact comes from: a result with none of them is skipped quickly.
_SOURCES = frozenset({"certificate", "certificate_sha256", "tls", "tls_version", "cipher",
                      "announced_address", "ehlo", "ehlo_after_tls", "cert_expiry",
                      "days_left"})


def target_facts(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """target -> fact -> value, the first value a result of the target recorded."""
    out: dict[str, dict[str, Any]] = {}
    for result in document.get("results") or []:
        facts = out.setdefault(result["target"], {})
        evidence = _mapping(result.get("evidence"))
        present = _SOURCES.intersection(evidence)
        if not present or (present <= {"tls_version", "cipher"} and "cipher" in facts
                           and "tls_version" in facts):
            continue  # nothing new: most results repeat the TLS facts of the first
        for key, value in facts_of(evidence).items():
            facts.setdefault(key, value)
        days = days_left_of(evidence)
        if days is not None:
            facts.setdefault("days_left", days)
    return out


def _results(document: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {
        (r["target"], f"{r.get('scenario', '')}::{r.get('check_id') or r.get('check', '')}"): r
        for r in document.get("results") or []
    }


def _status_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """``regression``, ``fix``, ``status-change`` or None for one result in both runs.

    Under ``expect: pass``/``warn`` a status going from pass or warn to fail or error is a
    regression (and back a fix); for a fault demonstration (``expect: fail``) what counts
    is whether it still met its expectation.
    """
    before, after = old.get("status"), new.get("status")
    old_ok, new_ok = old.get("as_expected", True), new.get("as_expected", True)
    if before == after and old_ok == new_ok:
        return None
    if new.get("expect", "pass") in GOOD:
        if before in GOOD and after in BAD:
            return "regression"
        if before in BAD and after in GOOD:
            return "fix"
    if old_ok and not new_ok:
        return "regression"
    if new_ok and not old_ok:
        return "fix"
    return "status-change"


def diff(
    old: Mapping[str, Any], new: Mapping[str, Any], *, expiry_warn_days: int = 30
) -> Diff:
    """Every change from ``old`` to ``new`` (both normalised), ordered by :data:`KINDS`."""
    with paused_gc():
        return _diff(old, new, expiry_warn_days)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], expiry_warn_days: int) -> Diff:
    result = Diff(old_run=dict(old.get("run") or {}), new_run=dict(new.get("run") or {}))
    old_results, new_results = _results(old), _results(new)
    old_targets = {t["id"] for t in old.get("targets") or []} | {k[0] for k in old_results}
    new_targets = {t["id"] for t in new.get("targets") or []} | {k[0] for k in new_results}
    changes: list[Change] = []
    old_counts = Counter(k[0] for k in old_results)
    new_counts = Counter(k[0] for k in new_results)
    for target in sorted(new_targets - old_targets):
        changes.append(Change("new-target", target, detail=f"{new_counts[target]} checks"))
    for target in sorted(old_targets - new_targets):
        changes.append(Change("removed-target", target, detail=f"{old_counts[target]} checks"))
    both = old_targets & new_targets
    for key in sorted(set(old_results) | set(new_results)):
        target, case = key
        if target not in both:
            continue  # reported once, as a new or removed target
        before, after = old_results.get(key), new_results.get(key)
        if before is None and after is not None:
            changes.append(Change("new-check", target, case, None, after.get("status"),
                                  str(after.get("summary") or "")))
        elif after is None and before is not None:
            changes.append(Change("removed-check", target, case, before.get("status")))
        elif before is not None and after is not None:
            kind = _status_change(before, after)
            if kind:
                changes.append(Change(kind, target, case, before.get("status"),
                                      after.get("status"), str(after.get("summary") or "")))
    old_facts, new_facts = target_facts(old), target_facts(new)
    for target in sorted(old_targets & new_targets):
        was, now = old_facts.get(target, {}), new_facts.get(target, {})
        for fact, kind in FACTS.items():
            if fact in was and fact in now and was[fact] != now[fact]:
                changes.append(Change(kind, target, "", was[fact], now[fact], LABELS[fact]))
    for target, facts in sorted(new_facts.items()):
        if "days_left" in facts:
            result.days_left[target] = facts["days_left"]
            before = old_facts.get(target, {}).get("days_left")
            if facts["days_left"] < expiry_warn_days and (
                before is None or before >= expiry_warn_days
            ):
                changes.append(Change("expiry", target, "", before, facts["days_left"],
                                      f"certificate days left (warn below {expiry_warn_days})"))
    order = {kind: index for index, kind in enumerate(KINDS)}
    changes.sort(key=lambda c: (order[c.kind], c.target, c.case))
    result.changes = changes
    return result


# -- rendering ----------------------------------------------------------------------

HEADINGS = {
    "regression": "Regressions", "removed-target": "Removed targets",
    "removed-check": "Removed checks", "cert-change": "Certificate changes",
    "expiry": "Certificates entering the expiry window", "tls-change": "TLS changes",
    "pasv-change": "PASV address changes", "auth-change": "AUTH mechanism changes",
    "status-change": "Other status changes", "fix": "Fixes", "new-target": "New targets",
    "new-check": "New checks",
}


def _headline(d: Diff) -> str:
    counts = d.counts()
    parts = [f"{counts[k]} {HEADINGS[k].lower()}" for k in KINDS if counts[k]]
    old_id = d.old_run.get("run_id") or d.old_run.get("started") or "old"
    new_id = d.new_run.get("run_id") or d.new_run.get("started") or "new"
    return f"{old_id} -> {new_id}: " + (", ".join(parts) if parts else "no changes")


def text(d: Diff) -> str:
    """Plain text for a CI log: a headline, then a section per kind, regressions first."""
    lines = [_headline(d)]
    for kind in KINDS:
        items = d.of(kind)
        if items:
            lines.append(f"{HEADINGS[kind]} ({len(items)}):")
            lines.extend(f"  {c.line()}" for c in items)
    return "\n".join(lines) + "\n"


def _md(value: str) -> str:
    """Table-cell safe: pipes and newlines would break the row; backticks the code span."""
    return value.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def markdown(d: Diff, *, limit: int = 50) -> str:
    """A merge-request comment: headline, one table per kind, long lists cut at ``limit``."""
    lines = ["### ftps-lab: " + _md(_headline(d)), ""]
    for kind in KINDS:
        items = d.of(kind)
        if not items:
            continue
        lines += [f"**{HEADINGS[kind]} ({len(items)})**", "",
                  "| target | check | was | now | detail |", "|---|---|---|---|---|"]
        for c in items[:limit]:
            lines.append(
                f"| `{_md(c.target)}` | {_md(c.case) or '—'} | {_md(_show(c.old))} | "
                f"{_md(_show(c.new))} | {_md(c.detail)} |"
            )
        if len(items) > limit:
            lines.append(f"| … | {len(items) - limit} more | | | |")
        lines.append("")
    return "\n".join(lines)


def as_json(d: Diff) -> str:
    return json.dumps(d.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
