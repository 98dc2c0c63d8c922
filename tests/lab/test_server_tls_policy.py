"""One TLS policy for every lab server: TLS 1.2+, ECDHE key exchange with AEAD suites only.

Each kind of lab server (FTPS explicit and implicit, submission STARTTLS, SMTPS 465,
MTA STARTTLS) is shown a client offering only CBC suites, which it must refuse, and is
then scanned suite by suite like testssl does, over every TLS 1.2 suite OpenSSL's
``DEFAULT`` list has (what Debian's python3 would otherwise have accepted): only
ECDHE-AEAD suites may complete. Real handshakes on loopback, with an ECDSA (the lab's)
and an RSA (IIS-style) certificate, since RSA opens the most suites.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from harness.certs import LabPKI, lab_pki
from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.protocols.tls import Trust, client_context, is_protocol_alert

TIMEOUT = 5.0
PASSWORD = "Policy-pw-4410"
KINDS = ("ftps-explicit", "ftps-implicit", "submission-starttls", "submissions-465",
         "mta-starttls")
CERTIFICATES = {"ecdsa": "lab", "rsa": "iis"}
CBC_ONLY = ("ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
            "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA")

Handshake = Callable[[ssl.SSLContext], ssl.SSLSocket]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


def _reply(reader: Any) -> bytes:
    """One whole FTP or SMTP reply (continuation lines have a '-' after the code)."""
    while True:
        line = reader.readline(4096)
        if not line or line[3:4] != b"-":
            return line


def _upgrade(address: tuple[str, int], context: ssl.SSLContext, *, implicit: bool,
             command: bytes, ready: bytes) -> ssl.SSLSocket:
    """Connect; unless implicit, read the greeting, send ``command``, expect ``ready``."""
    raw = socket.create_connection(address, timeout=TIMEOUT)
    try:
        if not implicit:
            with raw.makefile("rb") as reader:
                assert _reply(reader).startswith(b"220")
                if command.startswith(b"STARTTLS"):
                    raw.sendall(b"EHLO policy.test\r\n")
                    assert _reply(reader).startswith(b"250")
                raw.sendall(command)
                assert _reply(reader).startswith(ready)
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


@contextmanager
def _lab_server(kind: str, pki: LabPKI, certificate: str) -> Iterator[Handshake]:
    files = pki.files(certificate)
    if kind.startswith("ftps"):
        implicit = kind == "ftps-implicit"
        config = FTPSServerConfig(certfile=files.cert, keyfile=files.key, implicit=implicit,
                                  users=[("policy", PASSWORD)])
        with FTPSLabServer(config) as server:
            yield lambda context: _upgrade(server.address, context, implicit=implicit,
                                           command=b"AUTH TLS\r\n", ready=b"234")
        return
    role = {"submission-starttls": "submission", "submissions-465": "submissions",
            "mta-starttls": "mta"}[kind]
    smtp = SMTPServerConfig(role=role, users={"policy": PASSWORD}, cert_file=files.cert,
                            key_file=files.key)
    with SMTPLabServer(smtp) as mail:
        yield lambda context: _upgrade(mail.address, context, implicit=mail.implicit_tls,
                                       command=b"STARTTLS\r\n", ready=b"220")


def _tls12_client(ciphers: str) -> ssl.SSLContext:
    """An outside client (not the harness's policy): TLS 1.2 only, exactly ``ciphers``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context


def _debian_default_tls12_suites() -> list[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("DEFAULT")
    return [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]


def _forward_secret_aead(suite: str) -> bool:
    return suite.startswith("ECDHE-") and ("-GCM-" in suite or "CHACHA20-POLY1305" in suite)


@pytest.mark.parametrize("certificate", list(CERTIFICATES))
@pytest.mark.parametrize("kind", KINDS)
def test_lab_server_refuses_cbc_and_accepts_only_ecdhe_aead(
    kind: str, certificate: str, pki: LabPKI
) -> None:
    with _lab_server(kind, pki, CERTIFICATES[certificate]) as handshake:
        with pytest.raises(ssl.SSLError) as refused:
            handshake(_tls12_client(CBC_ONLY)).close()
        assert is_protocol_alert(refused.value), refused.value  # the server said no

        accepted: list[str] = []
        for suite in _debian_default_tls12_suites():
            try:
                with handshake(_tls12_client(suite)) as tls:
                    accepted.append(tls.cipher()[0])
            except ssl.SSLError:
                continue
        assert accepted, "no TLS 1.2 suite at all"
        assert all(_forward_secret_aead(suite) for suite in accepted), accepted

        with handshake(client_context(Trust(insecure=True))) as tls:
            assert tls.version() == "TLSv1.3"
        with handshake(client_context(Trust(insecure=True), max_version="1.2")) as tls:
            assert _forward_secret_aead(tls.cipher()[0]), tls.cipher()
