"""The embedded mail lab: roles, policies, mailbox, lifecycle, and each deliberate fault."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.lab.mailbox import Mailbox, find_in_mailbox
from harness.lab.smtp import (
    LabServerError,
    LabStartError,
    SMTPLabServer,
    SMTPServerConfig,
    is_local_address,
)
from harness.protocols.smtp import relay_forms
from harness.protocols.smtp_client import SMTPClient, SMTPClosed
from harness.protocols.tls import Trust, client_context

PASSWORD = "lab-Pass-9921"
USERS = {"alice": PASSWORD}


@pytest.fixture
def lab(tls_files: dict[str, Path]) -> Any:
    """Factory: ``with lab(role=..., **faults) as server``."""

    @contextmanager
    def make(**options: Any) -> Iterator[SMTPLabServer]:
        options.setdefault("users", USERS)
        options.setdefault("cert_file", tls_files["cert"])
        options.setdefault("key_file", tls_files["key"])
        with SMTPLabServer(SMTPServerConfig(**options)) as server:
            yield server
            assert server.errors == []

    return make


@pytest.fixture
def ca(tls_files: dict[str, Path]) -> ssl.SSLContext:
    return client_context(Trust(ca_file=tls_files["ca"]))


def _client(server: SMTPLabServer, ca: ssl.SSLContext | None = None) -> SMTPClient:
    client = SMTPClient("127.0.0.1", server.port, timeout=3)
    if server.implicit_tls:
        assert ca is not None
        assert client.connect(tls_context=ca, server_hostname="localhost").code == 220
    else:
        assert client.connect().code == 220
    return client


def _tls_session(server: SMTPLabServer, ca: ssl.SSLContext) -> SMTPClient:
    client = _client(server, ca)
    client.ehlo()
    if not server.implicit_tls:
        assert client.starttls(ca, "localhost").code == 220
        client.ehlo()
    return client


# -- configuration and lifecycle -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"role": "relay"}, "unknown role"),
        ({"role": "submissions", "cert_file": None}, "needs cert_file"),
        ({"role": "submission", "key_file": None}, "STARTTLS needs"),
        ({"users": {}}, "anonymous"),
        ({"tls_min_version": "1.4"}, "tls_min_version"),
        ({"tls_max_version": "2"}, "tls_max_version"),
        ({"hostname": ""}, "getfqdn"),
    ],
)
def test_config_validation(
    tls_files: dict[str, Path], options: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {
        "users": USERS, "cert_file": tls_files["cert"], "key_file": tls_files["key"]
    }
    fields.update(options)
    with pytest.raises(ValueError, match=message):
        SMTPServerConfig(**fields).validate()


def test_with_faults(tls_files: dict[str, Path]) -> None:
    config = SMTPServerConfig(users=USERS).with_faults({"open_relay": True, "starttls": False})
    assert config.open_relay and not config.starttls and config.users == USERS
    with pytest.raises(ValueError, match="unknown SMTP lab fault"):
        config.with_faults({"open_relya": True})


def test_tls_version_bounds(lab: Any, tls_files: dict[str, Path]) -> None:
    with lab(role="submissions", tls_max_version="1.2") as server:
        client = _client(server, client_context(Trust(ca_file=tls_files["ca"])))
        assert client.tls is not None and client.tls.version == "TLSv1.2"
        client.quit()
    with lab(role="submissions", tls_min_version="1.3") as server:
        old = client_context(Trust(ca_file=tls_files["ca"]), max_version="1.2")
        with pytest.raises(ssl.SSLError):
            SMTPClient("127.0.0.1", server.port, timeout=3).connect(
                tls_context=old, server_hostname="localhost"
            )


def test_config_repr_hides_passwords_and_smtp_alias(tls_files: dict[str, Path]) -> None:
    config = SMTPServerConfig(role="smtp", users=USERS)
    assert PASSWORD not in repr(config)
    assert config.role == "mta" and not config.offers_auth and not config.requires_auth
    config.validate()  # an MTA needs neither users nor a certificate


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_ready_on_return_and_stops_fast_with_open_session(
    lab: Any, ca: ssl.SSLContext, role: str
) -> None:
    with lab(role=role) as server:
        assert server.port != 0 and server.running
        idle = _client(server, ca)  # a session left open across stop()
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 1.0
        assert not server.running
        with pytest.raises(SMTPClosed):
            idle.noop()
        idle.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=1).close()
        server.stop()  # idempotent


def test_two_servers_at_once_have_their_own_mailboxes(
    lab: Any, ca: ssl.SSLContext
) -> None:
    with lab() as first, lab(role="mta") as second:
        assert first.port != second.port
        for server, rcpt in ((first, "x@example.invalid"), (second, "postmaster@ftps-lab.test")):
            client = _tls_session(server, ca)
            if server.config.offers_auth:
                assert client.auth_plain("alice", PASSWORD).code == 235
            client.mail("alice@ftps-lab.test")
            client.rcpt(rcpt)
            message = f"Message-ID: <{server.port}@two>\r\n\r\nhi\r\n".encode()
            assert client.data(message).code == 250
            client.quit()
        assert len(first.mailbox) == len(second.mailbox) == 1
        assert first.mailbox.find(f"{second.port}@two") is None
        assert second.mailbox.find(f"{second.port}@two") is not None


def test_start_failure_is_reported(lab: Any) -> None:
    with lab() as running:
        config = SMTPServerConfig(
            users=USERS,
            port=running.port,
            cert_file=running.config.cert_file,
            key_file=running.config.key_file,
        )
        start = time.monotonic()
        with pytest.raises(LabStartError, match="did not start"):
            SMTPLabServer(config).start()
        assert time.monotonic() - start < 2


# -- submission role (587) -----------------------------------------------------------


def test_submission_policy(lab: Any, ca: ssl.SSLContext) -> None:
    with lab() as server:
        client = _client(server)
        client.ehlo()
        assert client.ehlo_info is not None
        assert client.ehlo_info.has("STARTTLS") and not client.ehlo_info.auth_mechanisms
        reply = client.command("AUTH PLAIN")
        assert (reply.code, reply.enhanced) == (530, "5.7.0")
        assert client.mail("alice@ftps-lab.test").code == 530
        assert client.starttls(ca, "localhost").code == 220
        assert client.mail("alice@ftps-lab.test").code == 503  # state reset: EHLO again
        client.ehlo()
        assert set(client.ehlo_info.auth_mechanisms) == {"PLAIN", "LOGIN"}
        reply = client.mail("alice@ftps-lab.test")
        assert (reply.code, reply.enhanced) == (530, "5.7.0")
        reply = client.auth_plain("alice", "not-the-password")
        assert (reply.code, reply.enhanced) == (535, "5.7.8")
        assert client.auth_plain("nobody", PASSWORD).code == 535
        assert client.auth_login("alice", PASSWORD).code == 235
        assert client.mail("alice@ftps-lab.test").code == 250
        assert client.rcpt("anyone@example.invalid").code == 250  # relay after AUTH
        client.quit()


def test_submissions_auth_over_implicit_tls_is_not_538(lab: Any, ca: ssl.SSLContext) -> None:
    with lab(role="submissions") as server:
        client = _client(server, ca)
        client.ehlo()
        assert client.ehlo_info is not None and not client.ehlo_info.has("STARTTLS")
        assert "PLAIN" in client.ehlo_info.auth_mechanisms
        assert client.command("STARTTLS").code == 503
        assert client.mail("alice@ftps-lab.test").code == 530
        assert client.auth_plain("alice", PASSWORD).code == 235
        assert client.mail("alice@ftps-lab.test").code == 250
        client.quit()


# -- MTA role (25) -------------------------------------------------------------------


def test_mta_accepts_local_refuses_relay_and_has_no_auth(lab: Any, ca: ssl.SSLContext) -> None:
    with lab(role="mta") as server:
        client = _client(server)
        client.ehlo()
        assert client.ehlo_info is not None and not client.ehlo_info.auth_mechanisms
        assert client.command("AUTH PLAIN").code == 503
        client.starttls(ca, "localhost")
        client.ehlo()
        assert not client.ehlo_info.auth_mechanisms
        assert client.command("AUTH PLAIN").code == 503
        assert client.mail("someone@example.invalid").code == 250
        assert client.rcpt("postmaster@FTPS-LAB.TEST").code == 250
        for form in relay_forms("victim@relay-test.invalid", "ftps-lab.test"):
            reply = client.command(f"RCPT {form.rcpt_argument}")
            assert (reply.code, reply.enhanced) == (550, "5.7.1"), form.name
        client.quit()


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("postmaster@ftps-lab.test", True),
        ("PostMaster@Ftps-Lab.Test", True),
        ("victim%relay.invalid@ftps-lab.test", False),
        ('"victim@relay.invalid"@ftps-lab.test', False),
        ("relay.invalid!victim@ftps-lab.test", False),
        ("victim@relay.invalid", False),
        ("ftps-lab.test", False),
    ],
)
def test_is_local_address(address: str, local: bool) -> None:
    assert is_local_address(address, "ftps-lab.test") is local


# -- mailbox -------------------------------------------------------------------------


def test_mailbox_keeps_exact_bytes_and_envelope(
    lab: Any, ca: ssl.SSLContext, tmp_path: Path
) -> None:
    message = (
        b"From: <alice@ftps-lab.test>\r\n"
        b"Message-ID: <Exact-1@Lab.Test>\r\n"
        b"Subject: bytes\r\n\r\n"
        b".starts with a dot\r\n"
        b"..two dots\r\n"
        b"8bit: \xc3\xa4\xff\r\n"
        b"trailing space \r\n"
    )
    with lab(mailbox_dir=tmp_path / "mail") as server:
        client = _tls_session(server, ca)
        client.auth_plain("alice", PASSWORD)
        client.mail("alice@ftps-lab.test", "BODY=8BITMIME")
        client.rcpt("one@example.invalid")
        client.rcpt("two@ftps-lab.test")
        reply = client.data(message)
        client.quit()
    stored = server.mailbox.find("<Exact-1@lab.test>")  # domain case ignored
    assert stored is not None
    assert stored.data == message
    assert reply.first.endswith(stored.id)
    assert stored.mail_from == "alice@ftps-lab.test"
    assert stored.rcpt_tos == ("one@example.invalid", "two@ftps-lab.test")
    assert stored.user == "alice" and stored.tls
    assert find_in_mailbox(server.mailbox, "Exact-1@lab.test") == message
    assert find_in_mailbox(server.mailbox, "missing@lab.test") is None
    on_disk = Mailbox.from_directory(tmp_path / "mail")
    again = on_disk.find("Exact-1@lab.test")
    assert again is not None and again.data == message and again.rcpt_tos == stored.rcpt_tos
    for path in (tmp_path / "mail").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_mailbox_wait_for_times_out_quickly() -> None:
    box = Mailbox()
    start = time.monotonic()
    assert box.wait_for("never@lab", timeout=0.2) is None
    assert time.monotonic() - start < 1
    box.deliver("a@b", ["c@d"], b"Message-ID: <x@y>\r\n\r\n")
    assert box.wait_for("x@y", timeout=0.2) is not None


# -- STARTTLS safety and the faults that break it ------------------------------------


def _inject(server: SMTPLabServer, ca: ssl.SSLContext) -> tuple[SMTPClient, Any]:
    client = _client(server)
    client.ehlo()
    client.send_raw(b"STARTTLS\r\nNOOP\r\n")
    assert client.read_reply().code == 220
    client.handshake(ca, "localhost")
    return client, client.poll_reply(0.3)


def test_starttls_injection_discarded(lab: Any, ca: ssl.SSLContext) -> None:
    with lab() as server:
        client, unsolicited = _inject(server, ca)
        assert unsolicited is None
        assert client.noop().code == 250
        client.quit()


def test_starttls_injection_fault(lab: Any, ca: ssl.SSLContext) -> None:
    with lab(vulnerable_starttls_injection=True) as server:
        client, unsolicited = _inject(server, ca)
        assert unsolicited is not None and unsolicited.code == 250
        client.quit()


@pytest.mark.parametrize("role", ["submission", "mta"])
def test_state_reset_and_its_fault(lab: Any, ca: ssl.SSLContext, role: str) -> None:
    for broken in (False, True):
        with lab(role=role, no_state_reset=broken, auth_required=False) as server:
            client = _client(server)
            client.ehlo()
            client.starttls(ca, "localhost")
            assert client.mail("a@ftps-lab.test").code == (250 if broken else 503)
            client.quit()


def test_fault_offer_auth_before_tls(lab: Any) -> None:
    with lab(offer_auth_before_tls=True) as server:
        client = _client(server)
        client.ehlo()
        assert client.ehlo_info is not None and "PLAIN" in client.ehlo_info.auth_mechanisms
        assert client.auth_plain("alice", PASSWORD).code == 235  # in clear: the fault
        client.quit()


def test_fault_starttls_off_and_close_after_starttls(lab: Any, ca: ssl.SSLContext) -> None:
    with lab(starttls=False) as server:
        client = _client(server)
        client.ehlo()
        assert client.ehlo_info is not None and not client.ehlo_info.has("STARTTLS")
        client.quit()
    with lab(close_after_starttls=True) as server:
        client = _client(server)
        client.ehlo()
        with pytest.raises((ssl.SSLError, OSError, SMTPClosed)):
            client.starttls(ca, "localhost")
        client.close()


def test_fault_relay_auth_and_delivery(lab: Any, ca: ssl.SSLContext) -> None:
    with lab(role="mta", open_relay=True) as server:
        client = _client(server)
        client.ehlo()
        client.mail("a@example.invalid")
        assert client.rcpt("victim@relay-test.invalid").code == 250
        client.quit()
    with lab(role="mta", relay_routing_loophole=True) as server:
        client = _client(server)
        client.ehlo()
        client.mail("a@example.invalid")
        assert client.rcpt("victim@relay-test.invalid").code == 550
        assert client.rcpt("victim%relay-test.invalid@ftps-lab.test").code == 250
        client.quit()
    with lab(accept_any_password=True, drop_messages=True) as server:
        client = _tls_session(server, ca)
        assert client.auth_plain("alice", "anything").code == 235
        client.mail("alice@ftps-lab.test")
        client.rcpt("x@example.invalid")
        assert client.data(b"Message-ID: <dropped@lab>\r\n\r\nx\r\n").code == 250
        client.quit()
        assert len(server.mailbox) == 0


def test_fault_greeting_and_ehlo(lab: Any) -> None:
    with lab(refuse_service=True) as server:
        client = SMTPClient("127.0.0.1", server.port, timeout=3)
        assert client.connect().code == 554
        client.close()
    with lab(ehlo_enabled=False) as server:
        client = _client(server)
        assert client.ehlo().code == 502
        assert client.command("HELO probe").code == 250
        client.quit()


def test_server_side_errors_are_raised_in_the_test() -> None:
    class BrokenMailbox(Mailbox):
        def deliver(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("disk full")

    server = SMTPLabServer(SMTPServerConfig(role="mta"), mailbox=BrokenMailbox())
    with pytest.raises(LabServerError, match="disk full"), server:
        client = _client(server)
        client.ehlo()
        client.mail("a@example.invalid")
        client.rcpt("postmaster@ftps-lab.test")
        reply = client.data(b"Subject: x\r\n\r\nx\r\n")
        assert (reply.code, reply.enhanced) == (451, "4.3.0")
        client.quit()
