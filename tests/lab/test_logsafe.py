"""Lab log lines are escaped, and a TLS ClientHello on a plaintext port is named."""

from __future__ import annotations

import logging
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.lab.logsafe import (
    BINARY_HINT,
    CLIENT_HELLO_HINT,
    EscapeControlBytes,
    looks_like_client_hello,
    printable,
)

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def test_printable_escapes_control_bytes_and_keeps_text() -> None:
    assert printable("EHLO client") == "EHLO client"
    assert printable("\x1b]0;owned\x07EHLO") == "\\x1b]0;owned\\x07EHLO"
    assert printable("caf\u00e9\u202e") == "caf\u00e9\\u202e"


def test_the_filter_rewrites_the_record_and_names_a_client_hello() -> None:
    record = logging.LogRecord("mail.log", logging.WARNING, __file__, 1,
                               "%r unrecognised: %s", (("127.0.0.1", 1), "\x16\x03\x01\x01$"),
                               None)
    assert EscapeControlBytes().filter(record)
    message = record.getMessage()
    assert not CONTROL.search(message)
    assert message.startswith(CLIENT_HELLO_HINT)
    assert "\\x16\\x03\\x01" in message
    assert looks_like_client_hello("\x16\x03\x03") and not looks_like_client_hello("EHLO x")


def test_a_nul_byte_is_named_as_binary_data() -> None:
    record = logging.LogRecord("mail.log", logging.WARNING, __file__, 1, "unrecognised: %s",
                               ("\x00\x16\x00\x14",), None)
    EscapeControlBytes().filter(record)
    assert record.getMessage() == f"{BINARY_HINT}: unrecognised: \\x00\\x16\\x00\\x14"


def _client_hello() -> bytes:
    """The first bytes a real TLS client sends, from the ssl module itself."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_lab_serve_prints_no_raw_bytes_for_a_client_hello(tmp_path: Path) -> None:
    lab = Path(sys.executable).with_name("lab")
    command = [str(lab)] if lab.exists() else [sys.executable, "-m", "harness.cli"]
    process = subprocess.Popen([*command, "serve", "smtp", "--for", "6"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = process.stdout.readline().decode()
            found = re.match(r"submission://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port is not None, "lab serve printed no submission URL"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.settimeout(5)
            client.recv(1024)  # the 220 greeting
            client.sendall(_client_hello())
            time.sleep(0.5)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    text = err.decode("utf-8", "replace")
    assert "TLS ClientHello on a plaintext port" in text, text
    assert not CONTROL.search(text.replace("\r", "")), text
