"""``lab iis-script``: a generated PFX plus the PowerShell that builds the IIS FTPS site."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from harness.certs import self_signed_iis
from harness.cli.certs import DEFAULT_PASSWORD_ENV, _stem, _write_pfx
from harness.iis_script import IISSiteSpec, render_script


def _port_range(value: str) -> tuple[int, int]:
    low, _, high = value.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LOW-HIGH, e.g. 50000-50100") from None


@click.command(
    "iis-script",
    epilog="""\b
Examples:
  lab iis-script ftp.example.net
  lab iis-script ftp.example.net --site "Build 42" --external-ip 203.0.113.10 \\
      --passive-ports 50000-50100 --user FTPUSERS --pfx-profile legacy
Copy the .pfx and the .ps1 to the server and run the script in an elevated PowerShell.
""",
)
@click.argument("hostname")
@click.option("--site", default="ftps-lab", show_default=True, help="IIS site name.")
@click.option(
    "--policy",
    type=click.Choice(["require", "allow"]),
    default="require",
    show_default=True,
    help="SSL policy for control and data channels.",
)
@click.option("--passive-ports", default="50000-50100", show_default=True, metavar="LOW-HIGH")
@click.option("--external-ip", default=None, help="Address PASV announces (server behind NAT).")
@click.option("--user", default=None, help="User or group allowed Read,Write.")
@click.option("--port", type=click.IntRange(1, 65535), default=21, show_default=True)
@click.option(
    "--pfx-profile",
    type=click.Choice(["modern", "legacy"]),
    default="modern",
    show_default=True,
    help="legacy for Windows Server 2016 and older.",
)
@click.option(
    "--password-env",
    default=DEFAULT_PASSWORD_ENV,
    show_default=True,
    metavar="NAME",
    help="Variable holding the PFX password (generated into a 0600 file if unset).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Directory for the certificate, PFX and script.",
)
def iis_script(
    hostname: str,
    site: str,
    policy: str,
    passive_ports: str,
    external_ip: str | None,
    user: str | None,
    port: int,
    pfx_profile: str,
    password_env: str,
    out: Path,
) -> None:
    """Write an IIS-style certificate, its PFX and a PowerShell script that provisions
    an FTPS site from it (import, site, SSL policy, passive range, external address)."""
    leaf = self_signed_iis(hostname)
    spec = IISSiteSpec(
        site=site,
        pfx_file="",
        policy=policy,
        port=port,
        passive_ports=_port_range(passive_ports),
        external_ip=external_ip,
        user=user,
        thumbprint=hashlib.sha1(leaf.der).hexdigest().upper(),  # IIS binds by SHA-1 thumbprint
        password_env=password_env,
    )
    try:
        spec.validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    files = _write_pfx(leaf, leaf.write(out, _stem(hostname)), pfx_profile, password_env)
    assert files.pfx is not None
    script = out / f"provision-{_stem(site)}.ps1"
    text = render_script(IISSiteSpec(**{**spec.__dict__, "pfx_file": files.pfx.name}))
    script.write_text(text, encoding="utf-8", newline="")
    click.echo(f"certificate  {files.cert}")
    click.echo(f"PKCS#12      {files.pfx}")
    click.echo(f"script       {script}")
    click.echo(f"SHA-256 pin  {leaf.fingerprint}")
    click.echo("inventory entry:")
    click.echo(f"  {_stem(site)}:")
    click.echo("    protocol: ftps")
    click.echo(f"    host: {hostname}")
    click.echo(f'    trust: {{pin_sha256: "{leaf.fingerprint}"}}')
    click.echo(f"    policy: {policy}")
    low, high = spec.passive_ports
    click.echo(f"    passive_ports: [{low}, {high}]")
    if external_ip:
        click.echo(f"    passive_address: {external_ip}")
