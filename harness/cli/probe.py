"""``lab probe``: is port 25 blocked from here, and which port should mail clients use?"""

from __future__ import annotations

import json
from typing import Any

import click

import harness.probe as port_probe
from harness.checks.op25b import SubmissionFacts, diagnose, gather_submission_facts
from harness.probe import MAIL_ROLES, PortResult, PortSpec
from harness.protocols.tls import Trust
from harness.targets import Target


class PortsParam(click.ParamType):
    """``25,465,587`` or ``2525:smtp,4650:submissions`` through :func:`parse_ports`."""

    name = "ports"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[PortSpec]:
        if isinstance(value, list):
            return value
        try:
            return port_probe.parse_ports(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _diagnoses(
    results: list[PortResult], timeout: float, expect_host: str | None, sessions: bool
) -> list[dict[str, Any]]:
    """One verdict per host that had a mail port probed."""
    out: list[dict[str, Any]] = []
    for host, group in port_probe.by_host(results).items():
        if not any(r.role in MAIL_ROLES for r in group):
            continue
        facts = SubmissionFacts()
        if sessions:
            target = Target(name=host, protocol="submission", host=host, port=587,
                            trust=Trust(insecure=True), server_name=expect_host)
            facts = gather_submission_facts(target, group, timeout)
        verdict = diagnose(group, facts)
        out.append({"host": host, **verdict.to_dict(), "submission": facts.to_dict()})
    return out


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_table(results: list[PortResult], verdicts: list[dict[str, Any]]) -> str:
    """Plain columns (no colour): readable in CI logs and when pasted into a ticket."""
    rows = [("HOST", "PORT", "ROLE", "STATE", "TIME", "BANNER / DETAIL")]
    for r in results:
        rows.append((r.host, str(r.port), r.role, r.state.value, f"{r.elapsed:.2f}s",
                     _shorten(r.banner or r.detail, 90)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
             for row in rows]
    for item in verdicts:
        lines += [
            "",
            f"{item['host']}: [{item['code']}] {item['title']}",
            f"  {item['explanation']}",
            f"  fix: {item['fix']}",
        ]
    return "\n".join(line.rstrip() for line in lines)


@click.command(
    epilog="""\b
Examples:
  lab probe mail.example.net                       25, 465 and 587, with a verdict
  lab probe mail.example.net --expect-host mail.example.net
  lab probe 192.0.2.10 192.0.2.11 --ports 25,587 --timeout 2 --json
  lab probe 127.0.0.1 --ports 2525:smtp,2587:submission   roles for other port numbers
""",
)
@click.argument("hosts", nargs=-1, required=True)
@click.option("--ports", "ports", type=PortsParam(), default="25,465,587", show_default=True,
              help="Comma-separated ports; PORT:ROLE gives another number a role "
                   "(smtp, submission, submissions, tcp).")
@click.option("--timeout", type=click.FloatRange(min=0.05), default=port_probe.DEFAULT_TIMEOUT,
              show_default=True, help="Seconds for the connect, and again for the greeting.")
@click.option("--expect-host", metavar="NAME",
              help="Host name the greeting must name; another name means interception.")
@click.option("--concurrency", type=click.IntRange(min=1), default=port_probe.DEFAULT_CONCURRENCY,
              show_default=True, help="Probes in flight at once.")
@click.option("--sessions/--no-sessions", default=True, show_default=True,
              help="On open 587/465, also check STARTTLS and AUTH (EHLO only, never a login).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def probe(
    hosts: tuple[str, ...],
    ports: list[PortSpec],
    timeout: float,
    expect_host: str | None,
    concurrency: int,
    sessions: bool,
    as_json: bool,
) -> None:
    """Probe mail ports of HOST... and diagnose outbound port 25 blocking (OP25B).

    Each port is open, open-silent, intercepted, tls-error, closed, filtered,
    unreachable or error; all probes run at once, so the run takes about one timeout.
    """
    results = port_probe.probe(hosts, ports, timeout, expect_host=expect_host,
                               concurrency=concurrency)
    verdicts = _diagnoses(results, timeout, expect_host, sessions)
    if as_json:
        payload = {"results": [r.to_dict() for r in results], "verdicts": verdicts}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(render_table(results, verdicts))
