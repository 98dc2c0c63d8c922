"""The login budget after failed logins: counted per host, reset by a success, capped.

The real penalty (Dovecot behind Postfix) is measured in
``tests/interop/test_postfix_auth_penalty.py``; these pin the arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from harness.checks import authpenalty
from harness.targets import Target

MAIL = Target(name="m", protocol="submission", host="Mail.Example.net.", port=587, timeout=5.0)


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    authpenalty.reset()
    yield
    authpenalty.reset()


@dataclass
class Client:
    timeout: float


def test_no_failure_no_budget_except_for_a_login_meant_to_fail() -> None:
    assert authpenalty.extra_seconds(MAIL) == 0.0
    assert authpenalty.extra_seconds(MAIL, failing=True) == 2.0  # Dovecot's default delay


def test_failures_double_the_budget_per_host_and_a_success_resets_it() -> None:
    other_port = replace(MAIL, port=465, host="mail.example.net")  # same host: same penalty
    authpenalty.record(MAIL, success=False)
    assert authpenalty.extra_seconds(other_port) == 4.0
    assert authpenalty.extra_seconds(other_port, failing=True) == 6.0
    authpenalty.record(other_port, success=False)
    assert authpenalty.failures(MAIL) == 2 and authpenalty.extra_seconds(MAIL) == 8.0
    for _ in range(5):
        authpenalty.record(MAIL, success=False)
    assert authpenalty.extra_seconds(MAIL) == 16.0  # capped: covers Dovecot's 15 s maximum
    assert authpenalty.extra_seconds(replace(MAIL, host="other.example.net")) == 0.0
    authpenalty.record(MAIL, success=True)
    assert authpenalty.failures(MAIL) == 0 and authpenalty.extra_seconds(MAIL) == 0.0


def test_the_delay_is_per_target_and_zero_turns_it_off() -> None:
    authpenalty.record(MAIL, success=False)
    assert authpenalty.extra_seconds(replace(MAIL, auth_failure_delay=1.0)) == 2.0
    assert authpenalty.extra_seconds(replace(MAIL, auth_failure_delay=0.0), failing=True) == 0.0


def test_the_budget_raises_the_timeout_inside_the_block_only() -> None:
    client = Client(timeout=5.0)
    authpenalty.record(MAIL, success=False)
    notes: list[str] = []

    class Transcript:
        def note(self, text: str) -> None:
            notes.append(text)

    with authpenalty.login_budget(client, MAIL, failing=True, transcript=Transcript()) as extra:
        assert extra == 6.0 and client.timeout == 11.0
    assert client.timeout == 5.0
    assert notes == ["login reply may take up to 11 s (timeout + auth_failure_delay budget "
                     "of 6 s)"]
    with pytest.raises(RuntimeError), authpenalty.login_budget(client, MAIL):
        raise RuntimeError("the login broke")
    assert client.timeout == 5.0
