"""SMTP wire format without sockets: replies, EHLO keywords, AUTH encodings, DATA framing.

Kept apart from the socket driver so every rule (multi-line replies, limits, RFC 4616
encoding, dot-stuffing) is unit-tested on byte fixtures, and the checks judge parsed
values rather than raw text.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.protocols.replycode import ReplyCodeClass

# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers exceed it a little
# (long EHLO banners), so the default is lenient but still bounded.
MAX_REPLY_LINE = 2048
MAX_REPLY_LINES = 200

_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]?)(.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^([245])\.([0-9]{1,3})\.([0-9]{1,3})(?:\s|$)")


class SMTPProtocolError(Exception):
    """The peer's bytes are not a well-formed SMTP reply (or exceed our limits)."""


@dataclass(frozen=True)
class Reply(ReplyCodeClass):
    """One complete (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """All reply texts joined by newlines, without codes."""
        return "\n".join(self.lines)

    @property
    def first(self) -> str:
        return self.lines[0] if self.lines else ""

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code of the first line (``5.7.1``), if any."""
        match = _ENHANCED.match(self.first)
        return ".".join(match.groups()) if match else None

    @property
    def wire_lines(self) -> list[str]:
        """The reply as the server wrote it, one string per line (for reports)."""
        if not self.lines:
            return [str(self.code)]
        last = len(self.lines) - 1
        return [
            f"{self.code}{' ' if i == last else '-'}{line}" for i, line in enumerate(self.lines)
        ]

    def __str__(self) -> str:
        return " | ".join(self.wire_lines)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@dataclass
class ReplyParser:
    """Incremental parser: feed reply lines one at a time, get a :class:`Reply` when done.

    Enforces that every line of a multi-line reply carries the same code, that lines
    are bounded in length and that a reply has a bounded number of lines, so a hostile
    server cannot make the client buffer without end.
    """

    max_line: int = MAX_REPLY_LINE
    max_lines: int = MAX_REPLY_LINES
    _code: int | None = None
    _lines: list[str] = field(default_factory=list)

    def feed(self, raw: bytes) -> Reply | None:
        line = raw.rstrip(b"\r\n")
        if len(line) > self.max_line:
            raise SMTPProtocolError(f"reply line longer than {self.max_line} octets")
        match = _REPLY_LINE.match(line)
        if not match:
            raise SMTPProtocolError(f"not an SMTP reply line: {_decode(line[:80])!r}")
        code = int(match.group(1))
        separator = match.group(2)
        if separator == b"" and match.group(3):
            raise SMTPProtocolError(f"no separator after reply code: {_decode(line[:80])!r}")
        if self._code is not None and code != self._code:
            raise SMTPProtocolError(
                f"reply code changed inside a multi-line reply: {self._code} then {code}"
            )
        self._code = code
        self._lines.append(_decode(match.group(3)))
        if separator == b"-":
            if len(self._lines) >= self.max_lines:
                raise SMTPProtocolError(f"reply longer than {self.max_lines} lines")
            return None
        reply = Reply(code, tuple(self._lines))
        self._code = None
        self._lines = []
        return reply

    @property
    def pending(self) -> bool:
        """True while a multi-line reply has started but not ended."""
        return self._code is not None


def parse_replies(data: bytes, **limits: int) -> list[Reply]:
    """Parse a byte string holding complete replies (fixtures, captured traffic)."""
    parser = ReplyParser(**limits)
    replies: list[Reply] = []
    for raw in data.splitlines():
        reply = parser.feed(raw)
        if reply is not None:
            replies.append(reply)
    if parser.pending:
        raise SMTPProtocolError("multi-line reply not terminated")
    return replies


def parse_reply(data: bytes, **limits: int) -> Reply:
    """Parse exactly one reply."""
    replies = parse_replies(data, **limits)
    if len(replies) != 1:
        raise SMTPProtocolError(f"expected one reply, found {len(replies)}")
    return replies[0]


@dataclass(frozen=True)
class Ehlo:
    """What an EHLO reply announced: server name and service extensions (RFC 5321 4.1.1.1)."""

    domain: str
    greeting: str
    keywords: dict[str, tuple[str, ...]]

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    def params(self, keyword: str) -> tuple[str, ...]:
        return self.keywords.get(keyword.upper(), ())

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """SASL mechanisms from ``AUTH`` and the obsolete ``AUTH=`` form, upper-case."""
        seen: list[str] = []
        for keyword in ("AUTH", "AUTH="):
            for mech in self.params(keyword):
                if mech.upper() not in seen:
                    seen.append(mech.upper())
        return tuple(seen)

    @property
    def size_limit(self) -> int | None:
        """The SIZE value (0 means no fixed limit), or None when SIZE is absent or garbled."""
        values = self.params("SIZE")
        if not self.has("SIZE"):
            return None
        if not values:
            return 0
        value = values[0]
        # str.isdigit() is true for "²" and other non-ASCII digits int() refuses.
        return int(value) if value.isascii() and value.isdigit() else None

    def to_dict(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.keywords.items()}


def parse_ehlo(reply: Reply) -> Ehlo:
    """Extract the server name and extension keywords from a 250 EHLO reply."""
    if reply.code != 250:
        raise SMTPProtocolError(f"EHLO reply is {reply.code}, not 250")
    head = reply.first.split(None, 1)
    domain = head[0] if head else ""
    greeting = head[1] if len(head) > 1 else ""
    keywords: dict[str, tuple[str, ...]] = {}
    for line in reply.lines[1:]:
        words = line.split()
        if not words:
            continue
        keyword = words[0].upper()
        params = tuple(words[1:])
        if keyword.startswith("AUTH="):  # obsolete form some servers still add
            params = (keyword[5:], *params)
            keyword = "AUTH="
        keywords[keyword] = params
    return Ehlo(domain=domain, greeting=greeting, keywords=keywords)


def auth_plain_response(user: str, password: str, authzid: str = "") -> str:
    """The RFC 4616 PLAIN initial response: base64(authzid NUL authcid NUL passwd), UTF-8."""
    for value in (authzid, user, password):
        if "\x00" in value:
            raise ValueError("AUTH PLAIN values must not contain NUL")
    raw = f"{authzid}\x00{user}\x00{password}".encode()
    return base64.b64encode(raw).decode("ascii")


def decode_auth_plain(response: str) -> tuple[str, str, str]:
    """Inverse of :func:`auth_plain_response`: (authzid, user, password)."""
    raw = base64.b64decode(response.encode("ascii"), validate=True).decode()
    parts = raw.split("\x00")
    if len(parts) != 3:
        raise ValueError("AUTH PLAIN response must hold exactly two NUL separators")
    return parts[0], parts[1], parts[2]


def auth_login_value(value: str) -> str:
    """One AUTH LOGIN answer (user name or password): base64 of the UTF-8 value."""
    return base64.b64encode(value.encode()).decode("ascii")


def decode_challenge(reply: Reply) -> bytes:
    """The decoded 334 challenge text (AUTH LOGIN sends ``VXNlcm5hbWU6`` and the like)."""
    if reply.code != 334:
        raise SMTPProtocolError(f"expected a 334 challenge, got {reply.code}")
    try:
        return base64.b64decode(reply.first.strip().encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise SMTPProtocolError(f"334 challenge is not base64: {reply.first!r}") from exc


def normalize_message(message: bytes) -> bytes:
    """Make every line end in CRLF (bare LF or CR become CRLF) and end with CRLF.

    SMTP forbids bare line feeds in DATA; normalizing first means the bytes a check
    hashes are exactly the bytes a compliant server stores.
    """
    text = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text


def dot_stuff(message: bytes) -> bytes:
    """The DATA payload for a normalized message: leading dots doubled, ``.CRLF`` added."""
    lines = normalize_message(message).split(b"\r\n")[:-1]
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


def dot_unstuff(payload: bytes) -> bytes:
    """Inverse of :func:`dot_stuff` (what a server stores from a DATA payload)."""
    if not payload.endswith(b".\r\n"):
        raise ValueError("DATA payload does not end with CRLF.CRLF")
    lines = payload[:-3].split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def domain_of(address: str) -> str:
    """The domain part of ``local@domain`` (lower-case), or '' when there is none."""
    _, at, domain = address.strip().strip("<>").rpartition("@")
    return domain.lower() if at else ""


@dataclass(frozen=True)
class AddressForm:
    """One way of writing a relay recipient, as tried by the relay check."""

    name: str
    address: str

    @property
    def rcpt_argument(self) -> str:
        return f"TO:<{self.address}>"


def relay_forms(relay_to: str, local_domain: str) -> list[AddressForm]:
    """Recipient spellings that open relays have historically accepted.

    Besides the plain foreign address: the percent hack, a quoted local part holding a
    full address, an RFC 821 source route through our domain, and a UUCP bang path.
    """
    local, _, foreign = relay_to.rpartition("@")
    forms = [AddressForm("plain", relay_to)]
    if local and foreign and local_domain:
        forms += [
            AddressForm("percent-hack", f"{local}%{foreign}@{local_domain}"),
            AddressForm("quoted-local-part", f'"{local}@{foreign}"@{local_domain}'),
            AddressForm("source-route", f"@{local_domain}:{local}@{foreign}"),
            AddressForm("bang-path", f"{foreign}!{local}@{local_domain}"),
        ]
    return forms


def command_line(words: Iterable[str]) -> bytes:
    """Join command words into one CRLF-terminated line, refusing embedded line breaks."""
    line = " ".join(words)
    if "\r" in line or "\n" in line:
        raise ValueError("SMTP command must not contain CR or LF")
    return line.encode("utf-8") + b"\r\n"
