"""Failed logins cost time at the server; give the logins that pay for them time to answer.

Servers slow down on purpose after a wrong password: Dovecot delays the failure reply by
``auth_failure_delay`` (2 s) and then every further login from the same address by a
penalty that doubles per failure (observed with Dovecot 2.3 behind Postfix: 4 s after one
failure, 8 s after two, up to 15 s; a successful login resets it); vsftpd sleeps
``delay_failed_login`` (1 s), Postfix ``smtpd_error_sleep_time`` (1 s) once a client has
made enough errors. A check that logs in after a failed login would see that as a
timeout, and a check that fails a login on purpose waits for the delayed refusal.

So every login goes through :func:`login_budget`: the target's ``auth_failure_delay``
(default 2 s) is added to the timeout of a login reply that is expected to fail, and
``auth_failure_delay * 2**n`` (n: failed logins to that host since its last successful
one, in this process, capped at 2**3) to every login after a failure. The budget only
raises a timeout: a server that answers at once is not waited for. Penalties belong to
the client address at the server, across its ports, so failures are counted per host.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from harness.targets import Target

MAX_DOUBLINGS = 3  # 2 s * 2**3 = 16 s covers Dovecot's 15 s maximum penalty

_failures: dict[str, int] = {}
_lock = threading.Lock()


class _HasTimeout(Protocol):
    timeout: float


def _key(target: Target) -> str:
    return target.host.lower().rstrip(".")


def failures(target: Target) -> int:
    """Failed logins to the target's host since its last successful one (this process)."""
    with _lock:
        return _failures.get(_key(target), 0)


def record(target: Target, *, success: bool) -> None:
    """Count a refused login, or forget the failures after a successful one (as Dovecot's
    penalty does)."""
    with _lock:
        if success:
            _failures.pop(_key(target), None)
        else:
            _failures[_key(target)] = _failures.get(_key(target), 0) + 1


def reset() -> None:
    """Forget every failure (tests)."""
    with _lock:
        _failures.clear()


def extra_seconds(target: Target, *, failing: bool = False) -> float:
    """How much longer than the timeout this login's reply may take.

    ``failing``: the login is expected to be refused (a wrong password on purpose), so
    the server's delay of the refusal itself is added too.
    """
    delay = max(0.0, float(target.auth_failure_delay))
    count = failures(target)
    extra = delay * 2 ** min(count, MAX_DOUBLINGS) if count else 0.0
    return extra + (delay if failing else 0.0)


@contextmanager
def login_budget(client: _HasTimeout, target: Target, *, failing: bool = False,
                 transcript: Any = None) -> Iterator[float]:
    """Raise ``client.timeout`` by :func:`extra_seconds` for the login inside the block."""
    extra = extra_seconds(target, failing=failing)
    if extra and transcript is not None:
        transcript.note(
            f"login reply may take up to {client.timeout + extra:g} s "
            f"(timeout + auth_failure_delay budget of {extra:g} s)"
        )
    old = client.timeout
    client.timeout = old + extra
    try:
        yield extra
    finally:
        client.timeout = old


__all__ = ["extra_seconds", "failures", "login_budget", "record", "reset"]
