"""Can this target be reached at all? One TCP connect, judged in :mod:`harness.probe`'s words.

A target whose port is filtered, refused or unreachable would otherwise cost one timeout
per check and report the same cause a dozen times. The plugin asks :func:`tcp_reach` once
per remote target before its first check: an unreachable target then gets one diagnosis
(:func:`diagnosis`) and its other checks skip. The connect is the one the checks make
(``socket.create_connection``, every address of the name in turn, the target's timeout),
so the answer is the one they would have seen; the classification is the probe's
(:func:`harness.probe.judge_connect_error`), so ``lab probe`` and the reports agree.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from harness.probe import PortState, judge_connect_error


@dataclass(frozen=True)
class Reach:
    """The outcome of one connect: ``open``, ``filtered``, ``closed``, ``unreachable``
    or ``error`` (a name that does not resolve, anything else), with the probe's detail."""

    host: str
    port: int
    timeout: float
    state: PortState
    detail: str
    elapsed: float

    @property
    def reachable(self) -> bool:
        return self.state is PortState.OPEN

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "timeout": self.timeout,
            "state": self.state.value,
            "detail": self.detail,
            "elapsed": round(self.elapsed, 3),
        }


def tcp_reach(host: str, port: int, timeout: float) -> Reach:
    """Connect once (no bytes sent or read) and classify the outcome."""
    start = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, ValueError) as exc:
        state, detail = judge_connect_error(exc, timeout)
        return Reach(host, port, timeout, state, detail, time.monotonic() - start)
    sock.close()
    return Reach(host, port, timeout, PortState.OPEN, "TCP connection accepted",
                 time.monotonic() - start)


def probe_hint(host: str, port: int) -> str:
    """The command that tells filtered, refused and open apart for this port."""
    return f"see `lab probe {host} --ports {port}`"


def diagnosis(reach: Reach) -> str:
    """One line for an unreachable target, e.g. ``no answer within 3 s: filtered (a DROP
    rule, e.g. outbound port 25 blocking); see `lab probe mail.example.net --ports 25```."""
    hint = probe_hint(reach.host, reach.port)
    if reach.state is PortState.FILTERED:
        why = ("a DROP rule, e.g. outbound port 25 blocking" if reach.port == 25
               else "a DROP rule, or the host is down")
        return f"no answer within {reach.timeout:g} s: filtered ({why}); {hint}"
    if reach.state is PortState.CLOSED:
        return ("connection refused: closed (RST: nothing listens on port "
                f"{reach.port}, or a firewall REJECT with tcp-reset); {hint}")
    if reach.state is PortState.UNREACHABLE:
        return f"unreachable: {reach.detail}; {hint}"
    return f"{reach.detail}; {hint}"


def advice(reach: Reach) -> str:
    """What to do about it; the checks of the target were not run."""
    common = "None of this target's checks could run; they are skipped as could-not-run."
    if reach.state is PortState.FILTERED:
        fix = ("Check that the host is up and that no firewall between drops the port"
               + ("; if outbound port 25 is blocked (OP25B), submit on 587 with STARTTLS "
                  "or on 465" if reach.port == 25 else "")
               + ".")
    elif reach.state is PortState.CLOSED:
        fix = ("Start the service, check the port number, or open the port in the "
               "firewall that rejects it.")
    elif reach.state is PortState.UNREACHABLE:
        fix = "Check the route to the host and any firewall answering with ICMP errors."
    else:
        fix = "Check the host name (DNS) and this machine's network."
    return f"{fix} {common}"


__all__ = ["Reach", "advice", "diagnosis", "probe_hint", "tcp_reach"]
