"""``lab report merge`` on the real shards of a fleet run, and the shards it must refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from report_samples import ROOT

from harness.report import junit
from harness.report.fleet_sample import fleet_model
from harness.report.json_report import validate
from harness.report.load import ReportError, normalise
from harness.report.merge import merge


def run_shard(index: int, total: int, out: Path, run_id: str) -> dict[str, Any]:
    """The shipped scenarios, one shard, as a CI job runs it."""
    path = out / f"lab-{index}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "scenarios",
         "--lab-shard", f"{index}/{total}", "--lab-json", str(path)],
        cwd=ROOT, env={**env, "LAB_RUN_ID": run_id}, capture_output=True, text=True,
        timeout=300, check=False,
    )
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("shards")
    return [run_shard(i, 2, out, "ci-77") for i in (1, 2)]


def test_real_shards_merge_into_the_whole_run(shards: list[dict[str, Any]]) -> None:
    for index, doc in enumerate(shards, 1):
        assert doc["run"]["run_id"] == "ci-77"
        assert doc["run"]["shard"] == {"index": index, "total": 2}
    assert shards[0]["run"]["plan"] == shards[1]["run"]["plan"]
    model = merge([(f"lab-{i}.json", normalise(d)) for i, d in enumerate(shards, 1)])
    merged = model.to_dict()
    validate(merged)
    assert merged["run"]["merged_shards"] == [1, 2] and merged["run"]["shard"] is None
    assert merged["totals"]["total"] == sum(d["totals"]["total"] for d in shards)
    targets = [t["id"] for t in merged["targets"]]
    assert sorted(targets) == sorted(t["id"] for d in shards for t in d["targets"])
    assert len(targets) == len(set(targets))
    suites = junit.build(model).findall("testsuite")
    assert len(suites) == len(targets)


def test_overlapping_and_foreign_shards_are_refused(shards: list[dict[str, Any]]) -> None:
    one, two = (normalise(d) for d in shards)
    with pytest.raises(ReportError, match=r"shard 1 given twice: a.json and b.json"):
        merge([("a.json", one), ("b.json", one)])
    foreign = json.loads(json.dumps(two))
    foreign["run"]["run_id"] = "ci-78"
    with pytest.raises(ReportError, match=r"different runs \(run_id differs\): "
                                          r"a.json: ci-77; b.json: ci-78"):
        merge([("a.json", one), ("b.json", foreign)])
    overlap = json.loads(json.dumps(two))
    overlap["results"].append({**one["results"][0]})
    with pytest.raises(ReportError, match=r"1 target\(s\) in both a.json and b.json: "):
        merge([("a.json", one), ("b.json", overlap)])
    with pytest.raises(ReportError, match=r"missing shard\(s\) 2 of 2"):
        merge([("a.json", one)])
    assert merge([("a.json", one)], allow_missing=True).run.merged_shards == [1]


def test_a_fleet_of_eight_shards() -> None:
    parts = [(f"s{i}", normalise(fleet_model(60 * 8, 10, shard=(i, 8)).to_dict()))
             for i in range(1, 9)]
    model = merge(parts)
    assert len(model.targets) == 480 and len(model.results) == 4800
    other = normalise(fleet_model(60 * 8, 10, shard=(3, 8), run_id="fleet-2").to_dict())
    with pytest.raises(ReportError, match="run_id differs"):
        merge([*parts[:2], ("other", other)])


def test_run_identity_comes_from_the_ci() -> None:
    from harness.report.model import run_id

    assert run_id({"LAB_RUN_ID": "r-9", "GITHUB_RUN_ID": "1"}, "p", 0.0) == "r-9"
    assert run_id({"GITHUB_RUN_ID": "77", "GITHUB_RUN_ATTEMPT": "2"}, "p", 0.0) == "github-77-2"
    assert run_id({"CI_PIPELINE_ID": "5"}, "p", 0.0) == "gitlab-5"
    local = run_id({}, "p", 1.0)
    assert local.startswith("local-") and local != run_id({}, "p", 2.0)


def test_each_shard_validates(shards: list[dict[str, Any]]) -> None:
    for document in shards:
        validate(document)
