"""``lab diff`` and ``lab report merge|render``: thin verbs, exit codes and messages."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from harness.cli import main
from harness.report.fleet_sample import fleet_model


def write(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    return path


def regressed(document: dict) -> dict:
    """The same run with the first passing result now failing."""
    changed = json.loads(json.dumps(document))
    first = next(r for r in changed["results"] if r["status"] == "pass")
    first.update(status="fail", outcome="failed", as_expected=False, summary="now broken")
    return changed


def test_diff_exits_1_on_a_regression_in_every_format(tmp_path: Path) -> None:
    old = fleet_model(5, 6).to_dict()
    a, b = write(tmp_path / "a.json", old), write(tmp_path / "b.json", regressed(old))
    runner = CliRunner()
    same = runner.invoke(main, ["diff", str(a), str(a)])
    assert same.exit_code == 0 and "no changes" in same.output
    text = runner.invoke(main, ["diff", str(a), str(b)])
    assert text.exit_code == 1 and "Regressions (1):" in text.output
    assert "pass -> fail: now broken" in text.output
    md = runner.invoke(main, ["diff", str(a), str(b), "--markdown"])
    assert md.exit_code == 1 and md.output.startswith("### ftps-lab:")
    js = runner.invoke(main, ["diff", str(a), str(b), "--json"])
    assert js.exit_code == 1 and json.loads(js.output)["counts"]["regression"] == 1
    fixes_only = runner.invoke(main, ["diff", str(b), str(a), "--fail-on", "removed"])
    assert fixes_only.exit_code == 0 and "Fixes (1):" in fixes_only.output


def test_diff_refuses_unknown_kinds_and_versions(tmp_path: Path) -> None:
    old = fleet_model(2, 3).to_dict()
    a = write(tmp_path / "a.json", old)
    b = write(tmp_path / "b.json", {**old, "schema_version": 9})
    runner = CliRunner()
    bad_kind = runner.invoke(main, ["diff", str(a), str(a), "--fail-on", "regresion"])
    assert bad_kind.exit_code == 2 and "unknown change kind 'regresion'" in bad_kind.output
    bad_version = runner.invoke(main, ["diff", str(a), str(b)])
    assert bad_version.exit_code == 1  # click's ClickException
    assert "schema_version 9 is not one this ftps-lab reads (1, 2, 3)" in bad_version.output
    missing = runner.invoke(main, ["diff", str(a), str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def test_report_merge_and_render(tmp_path: Path) -> None:
    shards = [write(tmp_path / f"s{i}.json", fleet_model(12, 4, shard=(i, 3)).to_dict())
              for i in (1, 2, 3)]
    runner = CliRunner()
    out = runner.invoke(main, ["report", "merge", *map(str, shards), "--html",
                               str(tmp_path / "m.html"), "--junit", str(tmp_path / "m.xml"),
                               "--json", str(tmp_path / "m.json")])
    assert out.exit_code == 0, out.output
    merged = json.loads((tmp_path / "m.json").read_text())
    assert len(merged["targets"]) == 12 and merged["run"]["merged_shards"] == [1, 2, 3]
    assert len(ET.parse(tmp_path / "m.xml").getroot().findall("testsuite")) == 12
    assert "<!DOCTYPE html>" in (tmp_path / "m.html").read_text()
    refused = runner.invoke(main, ["report", "merge", str(shards[0]), str(shards[0]),
                                   "--html", str(tmp_path / "x.html")])
    assert refused.exit_code == 1 and "shard 1 given twice" in refused.output
    assert not (tmp_path / "x.html").exists()
    render = runner.invoke(main, ["report", "render", str(tmp_path / "m.json"),
                                  "--junit", str(tmp_path / "r.xml")])
    assert render.exit_code == 0 and (tmp_path / "r.xml").exists()
    nothing = runner.invoke(main, ["report", "render", str(tmp_path / "m.json")])
    assert nothing.exit_code == 2 and "nothing to write" in nothing.output
