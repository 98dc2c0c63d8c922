"""``lab diff``'s logic: every kind of change between hand-made runs, and older schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from harness.report import diff as d
from harness.report.load import ReportError, normalise

CERT = {"sha256": "AA:01", "issuer": "CN=Old CA", "not_after": "2025-01-01T00:00:00+00:00",
        "days_left": 200}


def result(target: str, check: str, status: str = "pass", *, expect: str = "pass",
           evidence: dict[str, Any] | None = None, scenario: str = "s") -> dict[str, Any]:
    failed = (status in ("fail", "error")) != (expect in ("fail", "error"))
    return {"target": target, "scenario": scenario, "check": check, "check_id": check,
            "status": status, "expect": expect, "outcome": "failed" if failed else "passed",
            "as_expected": not failed, "summary": f"{check} {status}",
            "evidence": evidence or {}, "skip_kind": None}


def document(results: list[dict[str, Any]], version: int = 3, run_id: str = "r") -> dict[str, Any]:
    targets = sorted({r["target"] for r in results})
    return {"schema_version": version, "run": {"run_id": run_id, "started": "t"},
            "targets": [{"id": t} for t in targets], "scenarios": [], "results": results,
            "totals": {}, "collection_errors": []}


def old_run() -> list[dict[str, Any]]:
    return [
        result("ftps://a", "login"),
        result("ftps://a", "transfers", "warn"),
        result("ftps://a", "certificate-lint", evidence={"certificate": CERT,
                                                         "tls_version": "TLSv1.3",
                                                         "cipher": "TLS_AES_256_GCM_SHA384"}),
        result("ftps://a", "pasv-address", evidence={"announced_address": "203.0.113.5"}),
        result("ftps://a", "gone"),
        result("ftps://a", "broken", "fail"),
        result("ftps://a", "demo", "fail", expect="fail"),
        result("ftps://a", "skipper", "pass"),
        result("submission://m", "ehlo-after-tls-lists-auth",
               evidence={"ehlo_after_tls": {"AUTH": ["PLAIN", "LOGIN"]},
                         "tls": {"tls_version": "TLSv1.3"}}),
        result("ftps://old", "login"),
    ]


def new_run() -> list[dict[str, Any]]:
    rows = copy.deepcopy(old_run())
    rows[0]["status"], rows[0]["outcome"], rows[0]["as_expected"] = "error", "failed", False
    rows[1]["status"], rows[1]["outcome"], rows[1]["as_expected"] = "fail", "failed", False
    rows[2]["evidence"]["certificate"] = {**CERT, "sha256": "BB:02", "issuer": "CN=New CA",
                                          "not_after": "2024-05-10T00:00:00+00:00",
                                          "days_left": 9}
    rows[2]["evidence"]["tls_version"] = "TLSv1.2"
    rows[2]["evidence"]["cipher"] = "ECDHE-RSA-AES128-GCM-SHA256"
    rows[3]["evidence"]["announced_address"] = "10.0.0.5"
    del rows[4]  # gone
    rows[4]["status"], rows[4]["outcome"], rows[4]["as_expected"] = "pass", "passed", True
    rows[5]["status"], rows[5]["outcome"], rows[5]["as_expected"] = "pass", "failed", False
    rows[6]["status"], rows[6]["skip_kind"] = "skip", "not-applicable"
    rows[7]["evidence"]["ehlo_after_tls"]["AUTH"] = ["PLAIN", "CRAM-MD5"]
    rows.pop(8)  # ftps://old removed
    rows += [result("ftps://a", "added"), result("ftps://new", "login")]
    return rows


@pytest.fixture()
def changes() -> d.Diff:
    return d.diff(normalise(document(old_run())), normalise(document(new_run())))


def test_every_kind_of_change_is_found(changes: d.Diff) -> None:
    kinds = {(c.kind, c.target, c.case or c.detail) for c in changes.changes}
    assert ("regression", "ftps://a", "s::login") in kinds          # pass -> error
    assert ("regression", "ftps://a", "s::transfers") in kinds      # warn -> fail
    assert ("regression", "ftps://a", "s::demo") in kinds           # caught fault now missed
    assert ("fix", "ftps://a", "s::broken") in kinds
    assert ("status-change", "ftps://a", "s::skipper") in kinds     # pass -> skip
    assert ("removed-check", "ftps://a", "s::gone") in kinds
    assert ("new-check", "ftps://a", "s::added") in kinds
    assert ("new-target", "ftps://new", "1 checks") in kinds
    assert ("removed-target", "ftps://old", "1 checks") in kinds
    facts = {c.detail for c in changes.of("cert-change")}
    assert facts == {"certificate SHA-256", "certificate issuer", "certificate expiry"}
    assert {c.detail for c in changes.of("tls-change")} == {"TLS version", "cipher"}
    (pasv,) = changes.of("pasv-change")
    assert (pasv.old, pasv.new) == ("203.0.113.5", "10.0.0.5")
    (auth,) = changes.of("auth-change")
    assert (auth.old, auth.new) == (["LOGIN", "PLAIN"], ["CRAM-MD5", "PLAIN"])
    (expiry,) = changes.of("expiry")
    assert (expiry.old, expiry.new) == (200, 9)
    assert changes.days_left["ftps://a"] == 9
    # regressions first, then in the order of KINDS
    order = [c.kind for c in changes.changes]
    assert order == sorted(order, key=d.KINDS.index) and order[0] == "regression"


def test_identical_runs_have_no_changes() -> None:
    same = normalise(document(old_run()))
    result_ = d.diff(same, same)
    assert result_.changes == [] and "no changes" in d.text(result_)


def test_fail_on_chooses_the_kinds(changes: d.Diff) -> None:
    assert changes.failing(["regression"])
    only_fix = d.diff(normalise(document([result("x", "c", "fail")])),
                      normalise(document([result("x", "c", "pass")])))
    assert not only_fix.failing(["regression"]) and only_fix.failing(["fix"])
    assert d.expand(["removed", "cert-change"]) == ("removed-target", "removed-check",
                                                    "cert-change")
    with pytest.raises(ValueError, match="unknown change kind 'regresion'"):
        d.expand(["regresion"])


def test_text_markdown_and_json(changes: d.Diff) -> None:
    text = d.text(changes)
    assert text.splitlines()[1].startswith("Regressions (3):")
    assert "ftps://a s::login: pass -> error" in text
    md = d.markdown(changes)
    assert md.startswith("### ftps-lab: ") and "| `ftps://a` | s::login | pass | error |" in md
    assert "**Certificate changes (3)**" in md
    payload = changes.to_dict()
    assert payload["counts"]["regression"] == 3 and payload["days_left"]["ftps://a"] == 9


def test_markdown_cells_cannot_break_the_table() -> None:
    evil = normalise(document([result("ftps://a|b", "c", "fail")]))
    fine = normalise(document([result("ftps://a|b", "c", "pass")]))
    md = d.markdown(d.diff(fine, evil))
    row = next(line for line in md.splitlines() if "a\\|b" in line)
    assert row.count("|") - row.count("\\|") == 6


def test_older_schema_versions_are_normalised() -> None:
    v1 = document([{**result("ftps://a", "c", "skip"), "skip_kind": None}], version=1)
    del v1["results"][0]["skip_kind"]
    doc = normalise(v1)
    assert doc["schema_version"] == 3 and doc["results"][0]["skip_kind"] == "could-not-run"
    assert doc["totals"]["skip_could_not_run"] == 1 and doc["run"]["run_id"] == "r"
    v2 = normalise(document([result("ftps://a", "c", "fail")], version=2))
    (change,) = d.diff(doc, v2).changes  # a skip that now fails is not as expected
    assert (change.kind, change.old, change.new) == ("regression", "skip", "fail")


@pytest.mark.parametrize("version", [4, None, "3"])
def test_unknown_versions_are_refused(version: object) -> None:
    with pytest.raises(ReportError, match=r"schema_version .* is not one this ftps-lab reads"):
        normalise(document([], version=version), "new.json")  # type: ignore[arg-type]


def test_not_a_report_is_refused() -> None:
    with pytest.raises(ReportError, match="not an ftps-lab JSON report"):
        normalise({"hello": 1}, "x.json")
