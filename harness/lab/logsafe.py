"""Lab log lines that are safe to print: no raw control bytes reach a terminal.

A client that speaks TLS to a plaintext port (``openssl s_client`` without
``-starttls``, a mail client set to SSL on 587) sends a binary ClientHello; aiosmtpd and
pyftpdlib log the "command" they could not parse as it came. Raw bytes can move the
cursor, change the terminal's title or hide text, so every lab log record is escaped
here, and the common mistake is named.
"""

from __future__ import annotations

import logging

# The loggers of the libraries the lab runs on.
LAB_LOGGERS = ("mail.log", "pyftpdlib")
CLIENT_HELLO_HINT = "TLS ClientHello on a plaintext port (the client expects implicit TLS)"
# aiosmtpd answers a line that is not ASCII with a bare 500 and logs nothing, so the
# ClientHello's first line often goes unseen; its later lines hold NUL bytes, which no
# text command contains.
BINARY_HINT = ("binary data where a command was expected: probably the rest of a TLS "
               "ClientHello on a plaintext port (the client expects implicit TLS)")
# A TLS record: handshake (0x16), major version 3, minor 0-4; then a ClientHello (0x01).
_TLS_RECORD_PREFIXES = tuple(f"\x16\x03{chr(minor)}" for minor in range(5))


def printable(text: str) -> str:
    """``text`` with every non-printable character as ``\\xNN`` / ``\\uNNNN`` (tabs too)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def looks_like_client_hello(text: str) -> bool:
    """True when a logged "command" is the start of a TLS handshake record."""
    return any(marker in text for marker in _TLS_RECORD_PREFIXES)


class EscapeControlBytes(logging.Filter):
    """Rewrites a record's message into printable text, naming a stray ClientHello."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as usual
            return True
        escaped = printable(message)
        if looks_like_client_hello(message):
            escaped = f"{CLIENT_HELLO_HINT}: {escaped}"
        elif "\x00" in message:
            escaped = f"{BINARY_HINT}: {escaped}"
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


_FILTER = EscapeControlBytes()


def install() -> None:
    """Attach the filter to the lab's loggers (idempotent)."""
    for name in LAB_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
