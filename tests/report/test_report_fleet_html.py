"""The HTML report for a fleet: verdict, problems by target, the filtered targets x checks
matrix and the certificate picture; first screens photographed in headless Chromium.

Set ``LAB_SCREENSHOT_DIR`` to keep the PNGs for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_samples import count_near, read_png
from test_report_e2e import _headless

from harness.report import html as html_report
from harness.report.fleet_html import is_problem
from harness.report.fleet_sample import fleet_model


@pytest.fixture
def browser_profile(tmp_path: Path) -> Iterator[Path]:
    profile = tmp_path / "profile"
    profile.mkdir()
    yield profile
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet500() -> str:
    return html_report.render(fleet_model(500, 40))


def test_the_first_thing_is_the_verdict_then_the_problems(fleet500: str) -> None:
    body = fleet500.split("<body>", 1)[1]
    order = [body.index(marker) for marker in (
        '<p class="verdict big">', '<section id="problems"', '<section id="fleet-matrix"',
        '<section id="certificates"', '<section id="matrix"', '<section id="targets"')]
    assert order == sorted(order)
    verdict = re.search(r'<p class="verdict big">(.*?)</p>', body).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"\u2717 \d+ result\(s\) not as expected on \d+ of 500 target\(s\); "
                        r"\d+ warning\(s\) passed \(strict would fail them\)", verdict)


def test_every_problem_is_listed_by_target_with_advice_and_evidence() -> None:
    model = fleet_model(5, 40)
    page = html_report.render(model)
    problems = page.split('<section id="problems"', 1)[1].split("</section>", 1)[0]
    expected = [i for i, r in enumerate(model.results) if is_problem(r)]
    ids = re.findall(r'<details class="result \w+" id="(r-\d+)">', problems)
    assert sorted(ids) == sorted(f"r-{i}" for i in expected)
    assert problems.count('<details class="target" open>') == 5
    assert problems.count('<span class="advice">\u2192 Fix the server configuration.') == len(ids)
    assert "<h4>Transcript</h4>" in problems  # the evidence, one click away


def test_the_matrix_has_a_row_per_target_and_filters(fleet500: str) -> None:
    matrix = fleet500.split('<section id="fleet-matrix"', 1)[1].split("</section>", 1)[0]
    assert matrix.count("<tr data-p=") == 500
    assert matrix.count('<th scope="col">') == 40
    for control in ('name="st" value="fail"', 'name="g"', 'name="p"', 'name="q"'):
        assert control in matrix
    assert '<option value="postfix">' in matrix and '<option value="submission">' in matrix


def test_a_fleet_page_stays_small_and_collapses_what_does_not_scale(fleet500: str) -> None:
    assert len(fleet500.encode()) < 5_000_000
    assert "per-scenario matrices are shown up to 40 targets" in fleet500
    assert "JSON report (<code>--lab-json</code>)" in fleet500
    assert "https://" not in fleet500 and "http://" not in fleet500


def test_certificates_on_one_axis_with_the_threshold(fleet500: str) -> None:
    svg = fleet500.split('<svg class="expiry"', 1)[1].split("</svg>", 1)[0]
    assert svg.count("<circle") == 500
    assert "warn &lt; 30" in svg and "fail &lt; 7" in svg and ">expired<" in svg
    assert re.search(r"<title>ftps://host-\d{4}: -?\d+ days</title>", svg)


def test_a_scenario_that_applies_to_nothing_is_collapsed() -> None:
    model = fleet_model(3, 8)
    for record in model.results:
        if record.scenario == "iis-ftps":
            record.status, record.skip_kind, record.outcome = "skip", "not-applicable", "skipped"
    page = html_report.render(model)
    assert ('<details class="scenario"><summary><h3>iis-ftps — nothing in it applies to these '
            "targets</h3>") in page
    assert '<details class="scenario" open><summary><h3>ftps-data</h3>' in page


def _screenshot(page: str, tmp_path: Path, name: str, profile: Path) -> Path:
    source = tmp_path / f"{name}.html"
    source.write_text(page, encoding="utf-8")
    png = tmp_path / f"{name}.png"
    _out, err = _headless(profile, f"--screenshot={png}", "--window-size=1280,900",
                          source.as_uri())
    assert png.exists(), err[-2000:]
    keep = os.environ.get("LAB_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    return png


@pytest.mark.interop
@pytest.mark.parametrize("targets", [5, 500])
def test_first_screen_shows_verdict_and_problems(
    targets: int, tmp_path: Path, browser_profile: Path
) -> None:
    png = _screenshot(html_report.render(fleet_model(targets, 40)), tmp_path,
                      f"fleet-{targets}", browser_profile)
    width, height, rows, bpp = read_png(png)
    assert (width, height) == (1280, 900)
    # The red verdict bar and the fail badges and marks of the problems are on screen.
    assert count_near(rows, bpp, html_report.COLOURS["fail"]) > 3000
    assert count_near(rows, bpp, html_report.COLOURS["warn"]) > 800
    assert count_near(rows, bpp, "#fbeee6", tolerance=3) > 30000  # the verdict's background


@pytest.mark.interop
def test_the_filter_script_runs_under_the_csp(tmp_path: Path, browser_profile: Path) -> None:
    source = tmp_path / "fleet.html"
    source.write_text(html_report.render(fleet_model(40, 12)), encoding="utf-8")
    dom, err = _headless(browser_profile, "--dump-dom",
                         source.as_uri() + "#only=error;q=submission")
    assert "of 40 targets</output>" in dom, err[-2000:]
    shown = re.findall(r'<tr data-p="(\w+)"[^>]*data-s="([^"]*)"[^>]*>', dom)
    hidden = re.findall(r'<tr data-p="\w+"[^>]*hidden=""', dom)
    visible = len(shown) - len(hidden)
    assert 0 < visible < 40 and hidden
