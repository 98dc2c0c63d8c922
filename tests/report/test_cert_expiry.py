"""The certificate expiry watch: thresholds per target or in the inventory's defaults, the
verdict folded into both certificate-lint checks, and the days left in every report."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from harness.checks import expiry
from harness.inventory import load_inventory
from harness.report.diff import diff
from harness.report.load import normalise
from harness.results import CheckResult, Status
from harness.targets import Target

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)


def lint(days: int | None = None, *, not_after: str | None = None,
         check: str = "certificate-lint", status: Status = Status.PASS) -> CheckResult:
    cert: dict[str, object] = {"subject": "CN=x"}
    if days is not None:
        cert["days_left"] = days
    if not_after:
        cert["not_after"] = not_after
    return CheckResult(check=check, status=status, summary="certificate lint clean",
                       evidence={"certificate": cert})


def target(warn: int = 30, fail: int = 7) -> Target:
    return Target("t", "ftps", "h", 21, cert_expiry_warn_days=warn, cert_expiry_fail_days=fail)


@pytest.mark.parametrize(("days", "status"), [
    (400, Status.PASS), (30, Status.PASS), (29, Status.WARN), (7, Status.WARN),
    (6, Status.FAIL), (0, Status.FAIL),
])
def test_thresholds(days: int, status: Status) -> None:
    result = expiry.apply(lint(days), target())
    assert result.status is status
    assert result.evidence["cert_expiry"] == {"days_left": days, "warn_days": 30,
                                              "fail_days": 7, "verdict": status.value}
    if status is not Status.PASS:
        setting = "fail" if status is Status.FAIL else "warn"
        assert result.summary.startswith(f"certificate expires in {days} day(s), within "
                                         f"cert_expiry_{setting}_days")
        assert result.advice.startswith("Renew the certificate")


def test_smtp_days_left_from_not_after_and_targets_own_thresholds() -> None:
    result = expiry.apply(lint(not_after="2024-05-20T00:00:00+00:00",
                               check="smtp-certificate-lint"), target(60, 21), NOW)
    assert result.status is Status.FAIL and result.evidence["cert_expiry"]["days_left"] == 19


def test_expired_fail_and_other_checks_are_left_alone() -> None:
    expired = expiry.apply(lint(-3, status=Status.FAIL), target())
    assert expired.summary == "certificate lint clean"  # the lint's own verdict and advice
    assert expired.evidence["cert_expiry"]["days_left"] == -3
    other = expiry.apply(CheckResult(check="certificate-trust", status=Status.PASS, summary="",
                                     evidence={"certificate": {"days_left": 1}}), target())
    assert other.status is Status.PASS and "cert_expiry" not in other.evidence
    skipped = expiry.apply(lint(1, status=Status.SKIP), target())
    assert skipped.status is Status.SKIP


def test_inventory_defaults_and_per_target(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "defaults:\n  cert_expiry_warn_days: 45\n  cert_expiry_fail_days: 10\n"
        "targets:\n"
        "  a: {protocol: ftps, host: a.example.net}\n"
        "  b: {protocol: ftps, host: b.example.net, cert_expiry_warn_days: 60}\n"
    )
    inventory = load_inventory(path)
    a, b = inventory.target("a", {}), inventory.target("b", {})
    assert (a.cert_expiry_warn_days, a.cert_expiry_fail_days) == (45, 10)
    assert (b.cert_expiry_warn_days, b.cert_expiry_fail_days) == (60, 10)
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  c: {protocol: ftps, host: c, cert_expiry_fail_days: 40}\n")
    with pytest.raises(Exception, match="cert_expiry_fail_days"):
        load_inventory(bad).target("c", {})


def test_days_left_reach_the_diff() -> None:
    def document(days: int) -> dict[str, object]:
        evidence = {"certificate": {"days_left": days}, "cert_expiry": {"days_left": days}}
        result = {"target": "ftps://a", "scenario": "s", "check_id": "certificate-lint",
                  "status": "pass", "expect": "pass", "outcome": "passed",
                  "evidence": evidence}
        return normalise({"schema_version": 3, "run": {}, "targets": [{"id": "ftps://a"}],
                          "results": [result]})
    changes = diff(document(40), document(12))
    assert changes.days_left == {"ftps://a": 12}
    assert [c.kind for c in changes.changes] == ["expiry"]
    assert json.loads(json.dumps(changes.to_dict()))["days_left"]["ftps://a"] == 12
