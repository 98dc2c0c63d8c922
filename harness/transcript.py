"""Session transcripts that never contain a secret.

Every protocol driver writes what it sends and receives here. Secrets are removed at
the moment a line is recorded (not when a report is written), so no later consumer —
pytest output, JUnit, JSON, HTML, logs — can leak them.
"""

from __future__ import annotations

import base64
import re
import time

REDACTED = "********"

# Commands whose argument is a credential whatever its value.
_SECRET_COMMANDS = re.compile(r"^(PASS|AUTH\s+PLAIN|AUTH\s+LOGIN)(\s+)(\S.*)$", re.IGNORECASE)


def secret_forms(secret: str) -> list[str]:
    """The ways a secret can appear on the wire: raw and base64 (SMTP AUTH LOGIN)."""
    if not secret:
        return []
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode()]


class Transcript:
    """Ordered, redacted log of one session (``>`` sent, ``<`` received, ``#`` note)."""

    def __init__(self, secrets: list[str] | None = None, *, limit: int = 2000) -> None:
        self._secrets: list[str] = []
        self._lines: list[str] = []
        self._start = time.monotonic()
        self._limit = limit
        for secret in secrets or []:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        """Register a value that must never be recorded (password, AUTH blob)."""
        for form in secret_forms(secret):
            if form and form not in self._secrets:
                self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _add(self, prefix: str, text: str) -> None:
        if len(self._lines) >= self._limit:
            return
        stamp = time.monotonic() - self._start
        self._lines.append(f"{stamp:7.3f} {prefix} {self.redact(text)}")

    def sent(self, line: str) -> None:
        match = _SECRET_COMMANDS.match(line.strip())
        if match:
            line = f"{match.group(1)}{match.group(2)}{REDACTED}"
        self._add(">", line.rstrip("\r\n"))

    def sent_secret(self, label: str = "") -> None:
        """Record that a credential line went out without recording it."""
        self._add(">", f"{label} {REDACTED}".strip())

    def received(self, line: str) -> None:
        self._add("<", line.rstrip("\r\n"))

    def note(self, text: str) -> None:
        self._add("#", text)

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    def __str__(self) -> str:
        return "\n".join(self._lines)
