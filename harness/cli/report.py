"""``lab report merge|render``: reports from saved JSON runs, without running anything."""

from __future__ import annotations

from pathlib import Path

import click

from harness.report import html, json_report, junit, write_text
from harness.report.load import ReportError, load
from harness.report.merge import merge as merge_shards
from harness.report.model import RunModel

OUT = click.Path(dir_okay=False, path_type=Path)


def _write(model: RunModel, html_file: Path | None, junit_file: Path | None,
           json_file: Path | None) -> None:
    outputs = [(html_file, html.render), (junit_file, junit.render),
               (json_file, json_report.render)]
    if not any(path for path, _ in outputs):
        raise click.UsageError("nothing to write: give --html, --junit and/or --json")
    for path, render in outputs:
        if path:
            write_text(path, render(model))
            click.echo(f"wrote {path}", err=True)


@click.group("report")
def report() -> None:
    """Merge the shards of a run, or re-render a saved run."""


@report.command(epilog="""\b
Examples:
  lab report merge out/lab-*.json --html out/lab.html --junit out/lab.xml --json out/lab.json
  lab report merge lab-1.json lab-3.json --allow-missing --html partial.html

\b
Refused, naming the files: shards with different run ids (set LAB_RUN_ID, or let
GitHub Actions / GitLab supply theirs), different plans or shard totals, a shard
given twice, a target in two shards, or a missing shard (unless --allow-missing).
""")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_file", type=OUT, help="write the HTML report here")
@click.option("--junit", "junit_file", type=OUT, help="write JUnit XML here")
@click.option("--json", "json_file", type=OUT, help="write the merged JSON report here")
@click.option("--allow-missing", is_flag=True, help="merge although some shards are missing")
def merge(shards: tuple[Path, ...], html_file: Path | None, junit_file: Path | None,
          json_file: Path | None, allow_missing: bool) -> None:
    """One report from the JSON shards (--lab-shard I/N) of one run."""
    try:
        documents = [(str(path), load(path)) for path in shards]
        model = merge_shards(documents, allow_missing=allow_missing)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    _write(model, html_file, junit_file, json_file)


@report.command(epilog="""\b
Examples:
  lab report render last-green.json --html last-green.html
  lab report render old-v2.json --json now-v3.json
""")
@click.argument("run", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_file", type=OUT, help="write the HTML report here")
@click.option("--junit", "junit_file", type=OUT, help="write JUnit XML here")
@click.option("--json", "json_file", type=OUT, help="write the JSON report (current schema) here")
def render(run: Path, html_file: Path | None, junit_file: Path | None,
           json_file: Path | None) -> None:
    """Re-render a saved JSON report (any schema version 1-3) as HTML, JUnit or JSON."""
    try:
        model = RunModel.from_document(load(run))
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    _write(model, html_file, junit_file, json_file)
