"""Where the embedded mail lab delivers: tests read messages back byte for byte.

Delivery is proven, not assumed: a check records the Message-ID and SHA-256 of what it
sent, and whoever holds the lab's :class:`Mailbox` compares them with what arrived.
Optionally every message is also written to a directory (``<id>.eml`` plus an
``<id>.json`` envelope) so another process can read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any, Protocol


def normalize_message_id(value: str) -> str:
    """Compare Message-IDs without angle brackets, surrounding space or case of the domain."""
    text = value.strip().strip("<>").strip()
    local, at, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}" if at else text


def message_id_of(data: bytes) -> str | None:
    """The Message-ID header of a raw message, or None when it has none."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(data)
    value = headers.get("Message-ID")
    return str(value).strip() if value else None


@dataclass(frozen=True)
class StoredMessage:
    """One accepted message: envelope plus the exact bytes the server received."""

    id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = field(repr=False)
    message_id: str | None = None
    peer: str = ""
    user: str | None = None
    tls: bool = False
    received_at: float = 0.0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "message_id": self.message_id,
            "peer": self.peer,
            "user": self.user,
            "tls": self.tls,
            "received_at": self.received_at,
            "sha256": self.sha256,
            "size": len(self.data),
        }


class Mailbox:
    """Thread-safe store of delivered messages (the lab writes, tests read)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._messages: list[StoredMessage] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def deliver(
        self,
        mail_from: str,
        rcpt_tos: list[str] | tuple[str, ...],
        data: bytes,
        *,
        peer: str = "",
        user: str | None = None,
        tls: bool = False,
    ) -> StoredMessage:
        message = StoredMessage(
            id=uuid.uuid4().hex[:16],
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
            data=bytes(data),
            message_id=message_id_of(data),
            peer=peer,
            user=user,
            tls=tls,
            received_at=time.time(),
        )
        if self.directory is not None:
            self._write(message)
        with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()
        return message

    def _write(self, message: StoredMessage) -> None:
        assert self.directory is not None
        for name, payload in (
            (f"{message.id}.eml", message.data),
            (f"{message.id}.json", json.dumps(message.envelope(), indent=2).encode()),
        ):
            path = self.directory / name
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)

    @classmethod
    def from_directory(cls, directory: str | Path) -> Mailbox:
        """Load what a lab (possibly in another process) wrote to ``directory``."""
        box = cls()
        found: list[StoredMessage] = []
        for meta_path in Path(directory).glob("*.json"):
            meta = json.loads(meta_path.read_text())
            data = meta_path.with_suffix(".eml").read_bytes()
            found.append(
                StoredMessage(
                    id=meta["id"],
                    mail_from=meta["mail_from"],
                    rcpt_tos=tuple(meta["rcpt_tos"]),
                    data=data,
                    message_id=meta.get("message_id"),
                    peer=meta.get("peer", ""),
                    user=meta.get("user"),
                    tls=bool(meta.get("tls")),
                    received_at=float(meta.get("received_at", 0.0)),
                )
            )
        box._messages = sorted(found, key=lambda message: message.received_at)
        return box

    @property
    def messages(self) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def find(self, message_id: str) -> StoredMessage | None:
        """The first message whose Message-ID equals ``message_id`` (brackets optional)."""
        wanted = normalize_message_id(message_id)
        with self._lock:
            for message in self._messages:
                if message.message_id and normalize_message_id(message.message_id) == wanted:
                    return message
        return None

    def wait_for(self, message_id: str, timeout: float = 2.0) -> StoredMessage | None:
        """Like :meth:`find`, but wait up to ``timeout`` seconds for the message."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(message_id)
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            with self._arrived:
                self._arrived.wait(min(remaining, 0.1))

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()


class MailboxLike(Protocol):
    def find(self, message_id: str) -> StoredMessage | None: ...


def find_in_mailbox(mailbox: MailboxLike, message_id: str) -> bytes | None:
    """The exact bytes delivered under ``message_id``, or None when nothing arrived."""
    found = mailbox.find(message_id)
    return found.data if found is not None else None
