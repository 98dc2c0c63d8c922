"""The ``lab`` command: the same functions the pytest plugin uses, for people at a shell."""

from __future__ import annotations

import click

from harness.cli.certs import certs
from harness.cli.diff import diff
from harness.cli.iis_script import iis_script
from harness.cli.probe import probe
from harness.cli.report import report
from harness.cli.run import run
from harness.cli.serve import serve

EPILOG = """\b
Examples:
  lab run                         every scenario against the embedded lab
  lab run --lab-inventory inv.yaml --lab-target iis-build-42
  lab certs iis ftp.example.net --pfx legacy
  lab serve ftps                  an FTPS server for FileZilla, until Ctrl-C
  lab probe mail.example.net      is port 25 blocked from here?
  lab iis-script ftp.example.net  PFX + PowerShell that builds the IIS FTPS site
  lab diff last-green.json lab.json --markdown   what changed since the last build
  lab report merge out/lab-*.json --html lab.html    one report from the shards
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ftps-lab")
def main() -> None:
    """Prove FTPS servers and mail submission (OP25B) from the command line."""


main.add_command(run)
main.add_command(certs)
main.add_command(probe)
main.add_command(serve)
main.add_command(iis_script)
main.add_command(diff)
main.add_command(report)
