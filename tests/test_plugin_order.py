"""Checks that fail a login on purpose run after every other check of their target.

A server punishes a failed login (Dovecot delays the refusal and then every login from
the same address, doubling per failure; vsftpd sleeps ``delay_failed_login``), so
``auth-bad-password`` and ``plaintext-login-refused`` go last: collection reorders them,
stably, so the order is deterministic and pytest-xdist's loadgroup keeps it on the
worker that runs the target. The targets here refuse connections (nothing listens): the
order is what is tested, not the servers.
"""

from __future__ import annotations

import socket

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

MAIL = """\
scenario: mail-order
protocols: [submission]
checks:
  - smtp-banner
  - auth-bad-password
  - ehlo
  - auth-plain
  - submit-message
"""
FTPS = """\
scenario: ftps-order
protocols: [ftps]
checks:
  - banner
  - plaintext-login-refused
  - login
  - quit
"""
LATE = ("auth-bad-password", "plaintext-login-refused")
# Written by the run under test: every item as it starts, one file per xdist worker.
CONFTEST = """\
import os


def pytest_runtest_logstart(nodeid, location):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    with open(f"order-{worker}.txt", "a") as handle:
        handle.write(nodeid + "\\n")
"""


@pytest.fixture
def run_args(pytester: pytest.Pytester) -> list[str]:
    directory = pytester.path / "scenarios"
    directory.mkdir()
    (directory / "mail.yaml").write_text(MAIL)
    (directory / "ftps.yaml").write_text(FTPS)
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    return [
        "-p", "no:cacheprovider", str(directory),
        "--lab-url", f"submission://127.0.0.1:{port}?timeout=1",
        "--lab-url", f"submission://localhost:{port}?timeout=1",
        "--lab-url", f"ftps://127.0.0.1:{port}?timeout=1",
    ]


def _check(nodeid: str) -> str:
    return nodeid.split("::")[1].split("[")[0]


def _target(nodeid: str) -> str:
    """The target of a node id, with or without pytest-xdist's ``@group`` suffix."""
    return nodeid.split("[", 1)[1].split("]", 1)[0]


def _assert_late_last_per_target(order: list[str]) -> None:
    for target in {_target(n) for n in order}:
        checks = [_check(n) for n in order if _target(n) == target]
        late = [i for i, c in enumerate(checks) if c in LATE]
        others = [i for i, c in enumerate(checks) if c not in LATE]
        assert late and min(late) > max(others), (target, checks)


def test_collection_puts_failed_logins_last_and_keeps_the_rest_in_order(
    pytester: pytest.Pytester, run_args: list[str]
) -> None:
    first = pytester.runpytest_subprocess(*run_args, "--collect-only", "-q")
    again = pytester.runpytest_subprocess(*run_args, "--collect-only", "-q")
    order = [line for line in first.stdout.lines if "::" in line]
    assert order == [line for line in again.stdout.lines if "::" in line]  # deterministic
    assert len(order) == 14
    # Everything else first, in collection order; then the failed logins, in theirs.
    assert [_check(n) for n in order[-3:]] == ["plaintext-login-refused",
                                               "auth-bad-password", "auth-bad-password"]
    assert [(_check(n), _target(n)) for n in order[:11]] == [
        ("banner", "ftps://127.0.0.1"), ("login", "ftps://127.0.0.1"),
        ("quit", "ftps://127.0.0.1"),
        ("smtp-banner", "submission://127.0.0.1"), ("smtp-banner", "submission://localhost"),
        ("ehlo", "submission://127.0.0.1"), ("ehlo", "submission://localhost"),
        ("auth-plain", "submission://127.0.0.1"), ("auth-plain", "submission://localhost"),
        ("submit-message", "submission://127.0.0.1"),
        ("submit-message", "submission://localhost"),
    ]
    _assert_late_last_per_target(order)


def test_xdist_loadgroup_runs_each_target_with_its_failed_logins_last(
    pytester: pytest.Pytester, run_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # When this suite itself runs under -n, the outer worker's variables must not reach
    # the inner run's controller.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess(*run_args, "-n", "2")
    result.assert_outcomes(failed=3, skipped=11)  # one diagnosis per target, rest skip
    files = sorted(pytester.path.glob("order-gw*.txt"))
    assert files, list(pytester.path.iterdir())
    seen: set[str] = set()
    for path in files:
        order = path.read_text().split()
        targets = {_target(n) for n in order}
        assert not targets & seen  # loadgroup: a target's items on one worker
        seen |= targets
        _assert_late_last_per_target(order)
    assert len(seen) == 3


def test_failed_logins_last_is_a_stable_partition() -> None:
    from harness.plugin import FAILED_LOGIN_CHECKS, failed_logins_last

    assert set(FAILED_LOGIN_CHECKS) == set(LATE)
    assert failed_logins_last([]) == []
    plain = [object(), object()]
    assert failed_logins_last(plain) == plain  # type: ignore[arg-type]


def test_the_order_file_helpers() -> None:
    """The helpers above read node ids as pytest writes them."""
    nodeid = "scenarios/mail.yaml::auth-plain[submission://127.0.0.1]"
    assert (_check(nodeid), _target(nodeid)) == ("auth-plain", "submission://127.0.0.1")
    grouped = nodeid + "@submission://127.0.0.1"
    assert (_check(grouped), _target(grouped)) == ("auth-plain", "submission://127.0.0.1")
