"""The JSON report matches its shipped, versioned schema, and the schema can say no."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from report_samples import PASSWORD, synthetic_model

from harness.report import json_report

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "harness" / "schemas" / "report.schema.json"


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(json_report.render(synthetic_model(errors=True)))


def test_the_schema_ships_with_the_package() -> None:
    shipped = resources.files("harness.schemas").joinpath("report.schema.json").read_text()
    assert json.loads(shipped) == json_report.schema()
    assert json_report.schema()["properties"]["schema_version"]["const"] == 3


def test_the_report_validates_against_the_shipped_schema(document: dict[str, Any]) -> None:
    _validator().validate(document)
    json_report.validate(document)
    assert document["schema_version"] == 3


def test_each_result_says_its_skip_kind(document: dict[str, Any]) -> None:
    kinds = {r["check_id"]: r["skip_kind"] for r in document["results"]}
    assert kinds["not-applicable"] == "not-applicable"
    assert kinds["epsv"] == "could-not-run"  # unclassified: the cautious kind
    assert {kinds[c] for c in kinds if c not in ("not-applicable", "epsv")} == {None}
    totals = document["totals"]
    assert (totals["skip_not_applicable"], totals["skip_could_not_run"]) == (1, 1)


def test_the_report_carries_run_targets_and_results(document: dict[str, Any]) -> None:
    assert document["run"]["ftps_lab_version"] == "0.1.0"
    assert document["totals"]["total"] == len(document["results"]) == 10
    targets = {t["id"]: t for t in document["targets"]}
    assert targets["ftps://iis-build-42"]["groups"] == ["iis", "release-42"]
    assert targets["ftps://iis-build-42"]["labels"]["site"] == "<Default FTP Site>"
    assert targets["ftps://iis-build-42"]["counts"]["fail"] == 2
    result = next(r for r in document["results"] if r["check_id"] == "certificate-trust")
    assert result["scenario"] == "iis-site" and result["target"] == "ftps://iis-build-42"
    assert result["evidence"]["certificate"]["days_left"] == -400
    assert result["replies"][0] == "234 AUTH TLS successful."
    assert result["transcript"][0].endswith("> AUTH TLS")
    assert result["advice"].startswith("Renew") and result["as_expected"] is False
    assert document["collection_errors"][0]["nodeid"] == "scenarios/broken.yaml"


def test_a_warning_that_passed_the_run(document: dict[str, Any]) -> None:
    """Schema 3: status warn, counted on its own; outcome passed under expect: pass."""
    warn = next(r for r in document["results"] if r["check_id"] == "extensions")
    assert (warn["status"], warn["expect"], warn["outcome"], warn["as_expected"]) == (
        "warn", "pass", "passed", True
    )
    assert warn["skip_kind"] is None and warn["advice"].startswith("Offer the missing")
    assert document["totals"]["warn"] == 1 and document["totals"]["unexpected"] == 3
    targets = {t["id"]: t for t in document["targets"]}
    assert targets["submission://postfix-1"]["counts"]["warn"] == 1


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("schema_version",), 1),
        (("schema_version",), 2),
        (("results", 0, "status"), "warning"),
        (("results", 0, "skip_kind"), "not-applicable"),  # results[0] is no skip
        (("results", 4, "skip_kind"), None),  # results[4] is the epsv skip
        (("results", 4, "skip_kind"), "maybe"),
        (("results", 0, "status"), "passed"),
        (("results", 0, "outcome"), "pass"),
        (("targets", 0, "kind"), "cloud"),
        (("run", "duration"), -1),
        (("results", 0, "password"), "x"),
        (("totals", "pass"), "3"),
    ],
)
def test_the_schema_rejects_a_wrong_report(
    document: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    broken = copy.deepcopy(document)
    where: Any = broken
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(broken)


def test_a_missing_field_is_rejected(document: dict[str, Any]) -> None:
    broken = copy.deepcopy(document)
    del broken["results"][0]["advice"]
    with pytest.raises(jsonschema.ValidationError, match="advice"):
        json_report.validate(broken)
    broken = copy.deepcopy(document)
    del broken["totals"]["warn"]
    with pytest.raises(jsonschema.ValidationError, match="warn"):
        json_report.validate(broken)


def test_written_file_is_utf8_json_without_passwords(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.json"
    json_report.write(synthetic_model(), path)
    text = path.read_text(encoding="utf-8")
    json_report.validate(json.loads(text))
    assert PASSWORD not in text
