"""``lab diff OLD.json NEW.json``: what changed since the last build; exit 1 on a regression."""

from __future__ import annotations

from pathlib import Path

import click

from harness.report import diff as diffing
from harness.report.load import ReportError, load


@click.command(
    "diff",
    epilog="""\b
Examples:
  lab diff last-green.json lab.json
  lab diff last-green.json lab.json --markdown > comment.md
  lab diff old.json new.json --fail-on regression,removed,cert-change
  lab diff old.json new.json --json | jq '.changes[] | select(.kind == "regression")'

\b
Change kinds: regression, removed-target, removed-check, cert-change, expiry,
tls-change, pasv-change, auth-change, status-change, fix, new-target, new-check;
shorthands: removed, new, evidence (cert/tls/pasv/auth), any.
Exit status: 0 nothing --fail-on counts, 1 something does, 2 bad input.
""",
)
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--markdown", "fmt", flag_value="markdown",
              help="Markdown for a merge-request comment.")
@click.option("--json", "fmt", flag_value="json", help="JSON for scripts.")
@click.option("--fail-on", default="regression", show_default=True, metavar="KINDS",
              help="comma-separated change kinds that exit 1")
@click.option("--expiry-warn-days", default=30, show_default=True, type=int,
              help="report a certificate entering this window as an expiry change")
def diff(old: Path, new: Path, fmt: str | None, fail_on: str, expiry_warn_days: int) -> None:
    """Compare two JSON reports (--lab-json): regressions first, then the rest.

    Reports of schema versions 1 to 3 are read; a newer one is refused.
    """
    try:
        kinds = diffing.expand(fail_on.split(","))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        before, after = load(old), load(new)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    result = diffing.diff(before, after, expiry_warn_days=expiry_warn_days)
    render = {"markdown": diffing.markdown, "json": diffing.as_json}.get(fmt or "", diffing.text)
    click.echo(render(result), nl=False)
    if result.failing(kinds):
        raise SystemExit(1)
