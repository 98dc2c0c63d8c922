"""``lab serve``: the embedded lab in the foreground, for FileZilla, curl or a mail client.

The servers are the same ones the scenarios use (through :class:`~harness.lab.pool.LabPool`),
so what an engineer tries by hand is what CI proves. They listen on loopback only; the
password is random per start and printed once, because a person has to type it.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
import types
from typing import Any

import click

from harness.lab.pool import LabPool
from harness.scenario import LabServer

EXAMPLES = """\b
Examples:
  lab serve ftps                       explicit FTPS, Require SSL, session reuse required
  lab serve ftps --policy allow --implicit
  lab serve smtp                       submission (587 role) and submissions (465 role)
  lab serve all --for 60               everything, stopping after a minute
"""


def lab_servers(kind: str, policy: str, implicit: bool, certificate: str) -> list[LabServer]:
    """The lab entries ``lab serve KIND`` starts, as a scenario would declare them."""
    servers: list[LabServer] = []
    if kind in ("ftps", "all"):
        options: dict[str, Any] = {
            "policy": policy,
            "require_session_reuse": True,
            "passive_ports": 8,
            "certificate": certificate,
        }
        servers.append(LabServer("ftps", "ftps", options))
        if implicit or kind == "all":
            servers.append(LabServer("ftps-implicit", "ftps", {**options, "implicit": True}))
    if kind in ("smtp", "all"):
        for role in ("submission", "submissions", "mta"):
            servers.append(LabServer(role, "smtp", {"role": role, "certificate": certificate}))
    return servers


def exposure_warning(host: str) -> str | None:
    """A warning when the lab would be reachable from other machines."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (
        f"warning: listening on {host}, not loopback: other machines can reach these lab "
        "servers, whose passwords are printed here and whose certificates are test-only"
    )


def describe(pool: LabPool, server: LabServer) -> list[str]:
    """Lines telling a person how to connect to one running server."""
    instance = pool.instance(server)
    target = instance.target
    lines = [f"{target.protocol}://{target.host}:{target.port}  ({server.name})"]
    if target.user:
        lines.append(f"    user {target.user}   password {target.password}")
    if target.passive_ports:
        low, high = target.passive_ports
        lines.append(f"    passive ports {low}-{high}, policy {target.policy}")
    certificate = server.options.get("certificate", "lab")
    lines.append(f"    certificate SHA-256 {pool.pki.fingerprint(certificate)}")
    if target.trust.ca_file:
        lines.append(f"    CA file {target.trust.ca_file}")
    mailbox = instance.details.get("mailbox")
    if mailbox is not None:
        lines.append("    mail for @ftps-lab.test is kept in memory and counted on exit")
    return lines


@click.command(epilog=EXAMPLES)
@click.argument("kind", type=click.Choice(["ftps", "smtp", "all"]))
@click.option(
    "--policy",
    type=click.Choice(["require", "allow"]),
    default="require",
    show_default=True,
    help="FTPS SSL policy (IIS: Require / Allow SSL connections)",
)
@click.option("--implicit", is_flag=True, help="also start an implicit FTPS server (port-990 mode)")
@click.option(
    "--certificate",
    type=click.Choice(["lab", "iis"]),
    default="lab",
    show_default=True,
    help="lab: signed by the lab CA; iis: single self-signed RSA",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; anything but loopback is warned about",
)
@click.option(
    "--for",
    "duration",
    type=float,
    default=None,
    metavar="SECONDS",
    help="stop after this many seconds (default: until Ctrl-C)",
)
def serve(
    kind: str, policy: str, implicit: bool, certificate: str, host: str, duration: float | None
) -> None:
    """Start the embedded lab on loopback and keep it running until Ctrl-C."""
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    warning = exposure_warning(host)
    if warning:
        click.secho(warning, fg="yellow", err=True)
    pool = LabPool(host=host)
    try:
        servers = lab_servers(kind, policy, implicit, certificate)
        for server in servers:
            for line in describe(pool, server):
                click.echo(line)
        click.echo("ready; press Ctrl-C to stop", err=True)
        stop.wait(duration)
    finally:
        delivered = sum(
            len(instance.details["mailbox"])
            for instance in pool.instances()
            if "mailbox" in instance.details
        )
        pool.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"stopped cleanly ({delivered} message(s) received)", err=True)
