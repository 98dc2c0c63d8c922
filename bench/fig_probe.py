"""Figure: the OP25B probe over 100 loopback hosts x 3 mail ports, a third filtered.

Hosts are 127.77.0.1-127.77.0.N: all of 127.0.0.0/8 is loopback on Linux, so each is a
distinct address on ``lo`` with nothing else to configure. On every host the three ports
(roles smtp, submission, submissions) are, in rotation, open (a greeter answering 220;
TLS first on the submissions port), closed (a bound, non-listening socket: RST) or
filtered (a listener with a full accept queue, so the kernel drops the SYN, like a
firewall DROP). Every answer is checked against that plan.

Peers: the probe timeout itself (the ideal: the whole batch costs one timeout, since the
filtered ports cannot answer sooner), and ``nmap -Pn -sT`` given the same per-probe
timeout (min, initial and max RTT timeout all set to it) and no retransmissions (it
connects but reads no greeting) where installed.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from common import BenchError, Context, Row, failure, interleave, run_command, which

FIGURE = "probe"
TITLE = "OP25B probe of loopback hosts x 3 ports, a third filtered"
ROLES = ("smtp", "submission", "submissions")
STATES = ("open", "closed", "filtered")
NETWORK = "127.77.0."


def _hosts(count: int) -> list[str]:
    return [f"{NETWORK}{index}" for index in range(1, count + 1)]


def _ports(hosts: list[str]) -> list[int]:
    """Three port numbers free on every host (below the ephemeral range)."""
    for _ in range(200):
        ports = random.sample(range(20000, 32000), 3)
        held: list[socket.socket] = []
        try:
            for host in hosts:
                for port in ports:
                    sock = socket.socket()
                    held.append(sock)
                    sock.bind((host, port))
            return ports
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise BenchError("no three ports free on every probe address")


def plan(hosts: list[str], ports: list[int]) -> dict[tuple[str, int], str]:
    """The state each (host, port) is set up to have: open, closed, filtered in rotation."""
    return {
        (host, port): STATES[(h + p) % 3]
        for h, host in enumerate(hosts)
        for p, port in enumerate(ports)
    }


@contextmanager
def network(ctx: Context, hosts: list[str]) -> Iterator[tuple[list[int], dict[Any, str]]]:
    """Set the plan up on loopback; everything is closed when the block ends."""
    from harness.lab.portblock import Greeter, PortBlock

    ports = _ports(hosts)
    expected = plan(hosts, ports)
    tls_port = ports[ROLES.index("submissions")]
    files = ctx.pki().files("lab")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.cert), str(files.key))
    groups: dict[str, list[tuple[str, int]]] = {"plain": [], "tls": [], "closed": [],
                                                "filtered": []}  # fmt: skip
    for (host, port), state in expected.items():
        if state == "open":
            groups["tls" if port == tls_port else "plain"].append((host, port))
        else:
            groups[state].append((host, port))
    with ExitStack() as stack:
        if groups["plain"]:
            stack.enter_context(Greeter(groups["plain"], idle_timeout=5.0))
        if groups["tls"]:
            stack.enter_context(Greeter(groups["tls"], tls=context, idle_timeout=5.0))
        if groups["closed"]:
            stack.enter_context(PortBlock("refused", groups["closed"]))
        if groups["filtered"]:
            stack.enter_context(PortBlock("filtered", groups["filtered"]))
        yield ports, expected


def _nmap(hosts: list[str], ports: list[int], timeout: float) -> dict[tuple[str, int], str]:
    """nmap's verdicts from its greppable output."""
    milliseconds = f"{max(1, round(timeout * 1000))}ms"
    done = run_command(
        ["nmap", "-n", "-Pn", "-sT", "-p", ",".join(map(str, ports)), "--max-retries", "0",
         "--min-rtt-timeout", milliseconds, "--initial-rtt-timeout", milliseconds,
         "--max-rtt-timeout", milliseconds,
         "-oG", "-", *hosts],
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"nmap: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    found: dict[tuple[str, int], str] = {}
    for line in done.stdout.splitlines():
        if not line.startswith("Host:") or "Ports:" not in line:
            continue
        host = line.split()[1]
        for item in line.split("Ports:", 1)[1].split("\t", 1)[0].split(","):
            fields = item.strip().split("/")
            if len(fields) > 1 and fields[0].isdigit():
                found[(host, int(fields[0]))] = fields[1]
    return found


def _mismatches(found: dict[tuple[str, int], str], expected: dict[Any, str]) -> list[str]:
    return [
        f"{host}:{port} {found.get((host, port), 'missing')} (expected {state})"
        for (host, port), state in expected.items()
        if found.get((host, port)) != state
    ]


def run(ctx: Context) -> list[Row]:
    count = ctx.settings.probe_hosts
    timeout = ctx.settings.probe_timeout
    hosts = _hosts(count)
    name = f"OP25B probe, {count} hosts x 3 ports ({count} filtered), timeout {timeout:g} s"
    ideal = Row(FIGURE, name, "harness.probe", "one probe timeout (ideal)", "s", "lower",
                target=1.5, target_text="within 1.5x one timeout")  # fmt: skip
    nmap = Row(FIGURE, name, "harness.probe", "nmap -Pn -sT, same timeout, no retries", "s",
               "lower")  # fmt: skip
    if which("nmap") is None:
        nmap.skip = "nmap is not installed (apt install nmap)"
    from harness.probe import probe

    try:
        with network(ctx, hosts) as (ports, expected):
            specs = list(zip(ports, ROLES, strict=True))

            def ours() -> float:
                begin = time.perf_counter()
                results = probe(hosts, specs, timeout)
                elapsed = time.perf_counter() - begin
                found = {(result.host, result.port): result.state.value for result in results}
                wrong = _mismatches(found, expected)
                if wrong:
                    raise BenchError(f"probe misjudged {len(wrong)}: {', '.join(wrong[:5])}")
                return elapsed

            nmap_wrong: list[list[str]] = []

            def peer_nmap() -> float:
                begin = time.perf_counter()
                found = _nmap(hosts, ports, timeout)
                elapsed = time.perf_counter() - begin
                nmap_wrong.append(_mismatches(found, expected))
                return elapsed

            sides = {"ours": ours}
            if not nmap.skip:
                sides["nmap"] = peer_nmap
            samples = interleave(sides, ctx.repeat, ctx.warmup)
            ideal.ours = samples["ours"]
            ideal.peer = [timeout] * len(samples["ours"])
            if "nmap" in samples:
                nmap.ours, nmap.peer = samples["ours"], samples["nmap"]
                wrong = nmap_wrong[-1]
                nmap.notes.append(
                    f"nmap verdicts matching the plan: {len(expected) - len(wrong)}/"
                    f"{len(expected)}" + (f" (e.g. {wrong[0]})" if wrong else "")
                )
            ideal.notes.append(
                f"ours reads the greeting on every open port (TLS first on submissions); "
                f"all {len(expected)} verdicts matched the plan"
            )
    except Exception as exc:
        for row in (ideal, nmap):
            if not row.skip:
                failure(row, exc)
    return [ideal, nmap]
