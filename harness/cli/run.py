"""``lab run``: the scenarios through pytest, with the plugin's options."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="""\b
Examples:
  lab run                                  all scenarios in ./scenarios, embedded lab
  lab run scenarios/iis-ftps-self-signed.yaml -k transfers
  lab run --lab-inventory inventory.yaml --lab-group release-42
  lab run --lab-html out/lab.html --lab-junit out/lab.xml
""",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def run(pytest_args: tuple[str, ...]) -> None:
    """Run scenarios (default ./scenarios); other arguments go to pytest.

    Every --lab-* option of the pytest plugin works here: --lab-inventory,
    --lab-target, --lab-group, --lab-url, --lab-timeout, --lab-shard, --lab-strict,
    --lab-no-preflight, --lab-junit, --lab-json, --lab-html, --lab-full-trace (see
    `pytest --help`).
    """
    import pytest

    args = list(pytest_args)
    if not any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in args):
        args.insert(0, "scenarios")
    raise SystemExit(pytest.main(["-p", "no:cacheprovider", *args]))
