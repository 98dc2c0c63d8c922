"""The benchmark scripts work: ``bench/run.py --quick`` end to end, as a subprocess.

No timing is asserted anywhere (numbers belong to the machine, see docs/performance.md).
What is proved: every figure runs; each row either measured both sides in the same run or
says why it was skipped; medians and ratios are consistent with the samples; the JSON and
Markdown outputs are written; a missing peer tool skips its row with the reason instead
of failing; and the run leaves no servers' files behind in its data directory.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "bench" / "run.py"
FIGURES = {"certs", "ftps-start", "smtp-start", "transfer", "throughput", "probe", "scenarios",
           "unreachable", "tls-facts", "reports"}  # fmt: skip
# Rows whose peer is always present where the tests run (trustme is a test dependency,
# the probe's ideal, the scenario target and the unreachable budget are numbers, and the
# unreachable figure's peer is the plugin itself): these must be measured.
ALWAYS_MEASURED = {"certs", "scenarios", "unreachable", "reports"}

pytestmark = pytest.mark.timeout(120)


def _bench(
    *args: str, data: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    data.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(RUNNER), "--quick", "--tmpdir", str(data), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
        env={key: value for key, value in {**os.environ, **(env or {})}.items()
             if not key.startswith("LAB_")},
    )  # fmt: skip


def _check_row(row: dict[str, Any]) -> None:
    assert row["better"] in ("lower", "higher"), row
    assert row["error"] is None, row
    if row["skip"]:
        assert row["verdict"] == "skipped" and len(row["skip"]) > 10, row
        assert not row["ours_samples"] and not row["peer_samples"], row
        return
    ours, peer = row["ours_samples"], row["peer_samples"]
    assert len(ours) == len(peer) == 1, row  # --quick: one run per side
    assert all(value > 0 for value in ours + peer), row
    assert row["ours_median"] == statistics.median(ours)
    assert row["peer_median"] == statistics.median(peer)
    assert row["ratio"] == pytest.approx(row["ours_median"] / row["peer_median"])
    if row["target"] is None:
        assert row["verdict"] == "reference", row
    else:
        met = (row["ratio"] <= row["target"] if row["better"] == "lower"
               else row["ratio"] >= row["target"])  # fmt: skip
        assert row["verdict"] == ("met" if met else "MISSED"), row


def test_quick_run_measures_every_figure_and_writes_json_and_markdown(tmp_path: Path) -> None:
    report_file, table_file = tmp_path / "bench.json", tmp_path / "bench.md"
    data = tmp_path / "data"
    done = _bench("--json", str(report_file), "--markdown", str(table_file), data=data)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads(report_file.read_text())
    assert report["settings"]["quick"] is True and report["settings"]["repeat"] == 1
    assert report["machine"]["cores"] and report["machine"]["python"]
    rows = report["rows"]
    assert {row["figure"] for row in rows} == FIGURES
    for row in rows:
        _check_row(row)
    measured = {row["figure"] for row in rows if not row["skip"]}
    assert measured >= ALWAYS_MEASURED
    probe = [row for row in rows if row["figure"] == "probe"]
    assert probe[0]["peer"].startswith("one probe timeout") and not probe[0]["skip"]
    assert probe[0]["peer_samples"] == [0.3]  # the quick timeout is the ideal

    # The text table on stdout and the Markdown table carry every row, with the ratio.
    assert "ours/peer" in done.stdout and "better" in done.stdout
    table = table_file.read_text()
    assert table.count("\n| ") == len(rows) + 1  # header + one line per row
    for row in rows:
        assert row["name"].replace("|", "\\|") in table

    # Servers and temporary files are gone: the data directory is empty again.
    assert list(data.iterdir()) == []


def test_missing_peer_tools_skip_their_rows_with_the_reason(tmp_path: Path) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()  # no curl, no nmap, no openssl on this PATH
    report_file = tmp_path / "bench.json"
    done = _bench("--only", "transfer,probe", "--probe-hosts", "3", "--json", str(report_file),
                  data=tmp_path / "data", env={"PATH": str(empty_path)})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(report_file.read_text())["rows"]
    by_peer = {(row["figure"], row["peer"]): row for row in rows}
    for row in rows:
        _check_row(row)
    transfer = [row for row in rows if row["figure"] == "transfer"]
    assert transfer and all("curl is not installed" in row["skip"] for row in transfer)
    nmap = [row for key, row in by_peer.items() if key[0] == "probe" and "nmap" in key[1]]
    assert nmap and "nmap is not installed" in nmap[0]["skip"]
    ideal = [row for key, row in by_peer.items() if key[0] == "probe" and "ideal" in key[1]]
    assert ideal and ideal[0]["ours_samples"] and not ideal[0]["skip"]
