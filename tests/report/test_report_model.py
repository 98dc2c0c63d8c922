"""The run model: records from check results, counts, the matrix, and secret scrubbing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from report_samples import (
    IIS,
    MAIL,
    PASSWORD,
    PASSWORD_B64,
    SITE,
    synthetic_entries,
    synthetic_model,
    synthetic_run_info,
)

from harness.report import write_text
from harness.report.model import (
    ResultRecord,
    RunModel,
    Scrubber,
    jsonable,
    printable,
    record_entry,
    run_info,
    scrubber_for,
    tls_version_of,
)
from harness.results import CheckResult, Status
from harness.targets import Target
from harness.transcript import REDACTED


def test_counts_per_run_and_per_target() -> None:
    model = synthetic_model()
    assert model.counts() == {
        "pass": 3, "warn": 1, "fail": 2, "skip": 2, "error": 2, "total": 10, "unexpected": 3,
        "skip_not_applicable": 1, "skip_could_not_run": 1,
    }
    by_target = model.counts_by_target()
    assert by_target[IIS.id] == {
        "pass": 1, "warn": 0, "fail": 2, "skip": 1, "error": 1, "total": 5, "unexpected": 2,
        "skip_not_applicable": 0, "skip_could_not_run": 1,
    }
    assert by_target[MAIL.id]["total"] == 5 and by_target[MAIL.id]["unexpected"] == 1
    assert by_target[MAIL.id]["warn"] == 1
    # The warning passed the run: no problem, but listed among the warnings.
    assert [r.check_id for r in model.warnings()] == ["extensions"]
    assert [t.id for t in model.targets] == [IIS.id, MAIL.id]


def test_an_expected_failure_is_a_fail_status_but_not_a_problem() -> None:
    model = synthetic_model()
    caught = next(r for r in model.results if r.check_id == "legacy-caught")
    assert (caught.status, caught.expect, caught.outcome) == ("fail", "fail", "passed")
    assert caught.as_expected
    problems = {(r.target, r.check_id) for r in model.problems()}
    assert problems == {
        (IIS.id, "certificate-trust"),
        (IIS.id, "data-session-reuse"),
        (MAIL.id, "internal"),
    }


def test_records_without_a_check_result_say_why() -> None:
    model = synthetic_model()
    internal = next(r for r in model.results if r.check_id == "internal")
    assert internal.status == "error" and internal.summary.startswith("internal error")
    skipped = next(r for r in model.results if r.check_id == "not-applicable")
    assert skipped.status == "skip" and "does not apply" in skipped.summary


def test_matrix_rows_follow_the_scenario_and_columns_the_targets() -> None:
    model = synthetic_model()
    rows, columns, cells = model.matrix(SITE.name)
    assert rows == [
        "banner", "certificate-trust", "legacy-caught", "data-session-reuse", "epsv",
        "legacy-tls-refused",
    ]
    assert columns == [IIS.id, MAIL.id]
    assert (("banner", MAIL.id)) not in cells
    record = model.results[cells[("certificate-trust", IIS.id)]]
    assert record.summary.startswith("certificate not trusted")


def test_results_are_ordered_however_they_arrive() -> None:
    forward = RunModel.build(synthetic_run_info(), synthetic_entries())
    backward = RunModel.build(synthetic_run_info(), list(reversed(synthetic_entries())))
    assert forward.to_dict() == backward.to_dict()


def test_tls_version_comes_from_evidence_top_level_or_tls() -> None:
    assert tls_version_of({"tls_version": "TLSv1.3"}) == "TLSv1.3"
    assert tls_version_of({"tls": {"tls_version": "TLSv1.2"}}) == "TLSv1.2"
    assert tls_version_of({"tls": None}) == ""
    model = synthetic_model()
    versions = {r.check_id: r.tls_version for r in model.results}
    assert versions["certificate-trust"] == "TLSv1.3" and versions["starttls"] == "TLSv1.2"


def test_describe_is_the_check_results_own_text() -> None:
    model = synthetic_model()
    record = next(r for r in model.results if r.check_id == "certificate-trust")
    text = record.describe()
    assert text.startswith("[FAIL] certificate-trust: certificate not trusted")
    assert "advice:   Renew the certificate" in text and "transcript (last lines)" in text


def test_record_round_trip_through_plain_data() -> None:
    model = synthetic_model()
    for record in model.results:
        data = json.loads(json.dumps(record.to_dict()))
        again = ResultRecord.from_dict({**data, "order": record.order})
        assert again.to_dict() == record.to_dict()


def test_jsonable_turns_evidence_into_json_types() -> None:
    value = jsonable(
        {"t": (1, 2), "b": b"\xff\x00ok", "s": {3, 1}, "st": Status.FAIL, "n": float("nan"),
         "p": Path("/x"), "lone": "a\udc80b", 7: None}
    )
    assert value == {
        "t": [1, 2], "b": "\\xff\x00ok", "s": [1, 3], "st": "fail", "n": "nan", "p": "/x",
        "lone": "a\\udc80b", "7": None,
    }
    json.dumps(value).encode("utf-8")


def test_printable_makes_control_characters_visible() -> None:
    assert printable("a\x00b\x1b[31mc\td\ne\r\x7f\x85\ufffe") == (
        "a\\x00b\\x1b[31mc\td\ne\\x0d\\x7f\\x85\\ufffe"
    )
    assert printable("é ✓ 🔒") == "é ✓ 🔒"


def test_scrubber_removes_raw_base64_and_sasl_plain_everywhere() -> None:
    plain = base64.b64encode(f"\0probe\0{PASSWORD}".encode()).decode()
    scrubber = Scrubber()
    scrubber.add(PASSWORD, "probe")
    dirty = {
        f"key {PASSWORD}": [f"a{PASSWORD}b", (PASSWORD_B64,), {"deep": f"AUTH PLAIN {plain}"}],
        "n": 3,
    }
    clean = scrubber.scrub(dirty)
    text = json.dumps(clean)
    assert PASSWORD not in text and PASSWORD_B64 not in text and plain not in text
    assert clean == {
        f"key {REDACTED}": [f"a{REDACTED}b", [REDACTED], {"deep": f"AUTH PLAIN {REDACTED}"}],
        "n": 3,
    }
    assert Scrubber().scrub(dirty) is dirty and not Scrubber([""])


def test_scrubber_for_targets_uses_their_passwords() -> None:
    targets = [
        Target(name="a", protocol="ftps", host="h", port=21, user="u", password="Pw-One-1"),
        Target(name="b", protocol="ftps", host="h", port=21, password=None),
    ]
    assert scrubber_for(targets).text("x Pw-One-1 y") == f"x {REDACTED} y"


def test_the_model_is_scrubbed_when_built_and_only_then() -> None:
    dirty = json.dumps(synthetic_model(scrub=False).to_dict())
    assert PASSWORD in dirty and PASSWORD_B64 in dirty  # the samples really do leak
    clean = json.dumps(synthetic_model().to_dict())
    assert PASSWORD not in clean and PASSWORD_B64 not in clean
    assert f"220 welcome {REDACTED} {REDACTED}" in clean


def test_record_entry_from_a_real_check_result() -> None:
    result = CheckResult(
        check="auth-tls", status=Status.PASS, summary="ok",
        evidence={"tls_version": "TLSv1.2", "certificate": {"subject": "CN=x"}},
    )
    entry = record_entry(
        nodeid="n", scenario=SITE, target=IIS, check="auth-tls", check_id="auth-tls-1.2",
        expect="pass", line=3, order=0, outcome="passed", message="", result=result,
        duration=1.5,
    )
    record = entry["record"]
    assert record["status"] == "pass" and record["tls_version"] == "TLSv1.2"
    assert record["duration"] == 1.5  # the check's own duration was 0: pytest's is used
    assert entry["target"]["id"] == IIS.id and "password" not in json.dumps(entry)


def test_run_info_describes_this_interpreter() -> None:
    info = run_info(1_700_000_000.0, 1_700_000_009.5, 0)
    assert info.started == "2023-11-14T22:13:20+00:00" and info.duration == 9.5
    assert info.python.split()[0] in ("CPython", "PyPy") and info.platform
    assert info.ftps_lab_version


def test_write_text_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "report.txt"
    write_text(path, "one ✓\n")
    write_text(path, "two\n")
    assert path.read_text(encoding="utf-8") == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["report.txt"]
    assert path.stat().st_mode & 0o777 == 0o644
