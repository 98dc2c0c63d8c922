"""FTP wire format without sockets: replies, PASV/EPSV answers, FEAT, command lines.

Kept apart from the socket driver so every rule (RFC 959 multi-line replies, the
limits that protect us from a hostile server, RFC 2428 EPSV, RFC 2389 FEAT) is
unit-tested on byte fixtures, and the checks judge parsed values rather than text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from harness.protocols.replycode import ReplyCodeClass

# RFC 959 sets no limit; real servers stay far below these (long FEAT, HELP and
# multi-line banners included). A reply beyond either limit is an attack or a bug.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 500

_CODE = re.compile(rb"^([1-5][0-9][0-9])([ -]|$)")
# RFC 1123 4.1.2.6: scan the 227 text for the six numbers, parentheses are optional.
# ASCII digits only: a str pattern's \d also matches Arabic-Indic and other digits int() takes.
_PASV = re.compile(r"(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3})",
                   re.ASCII)
# RFC 2428: (<d><d><d><port><d>) with any printable delimiter, usually "|".
_EPSV = re.compile(r"\(([\x21-\x7e])\1\1(\d{1,5})\1\)", re.ASCII)


class FTPProtocolError(Exception):
    """The peer's bytes are not a well-formed FTP reply (or exceed our limits)."""


@dataclass(frozen=True)
class Reply(ReplyCodeClass):
    """One complete (possibly multi-line) FTP reply.

    ``lines`` are the lines exactly as the server sent them (without CRLF), so nothing
    the server said is lost; ``text`` is the same without the reply codes.
    """

    code: int
    lines: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        prefixes = (f"{self.code}-", f"{self.code} ")
        out = []
        for line in self.lines:
            if line.startswith(prefixes):
                out.append(line[4:])
            elif line == str(self.code):
                out.append("")
            else:
                out.append(line)
        return "\n".join(out)

    @property
    def first(self) -> str:
        return self.lines[0] if self.lines else str(self.code)

    @property
    def preliminary(self) -> bool:
        return 100 <= self.code < 200

    @property
    def negative(self) -> bool:
        return self.code >= 400

    @property
    def wire_lines(self) -> list[str]:
        return list(self.lines) if self.lines else [str(self.code)]

    def __str__(self) -> str:
        return " | ".join(self.wire_lines)


def decode_line(raw: bytes) -> str:
    """Reply bytes as text; FTP has no declared charset, UTF-8 is the common case."""
    return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


@dataclass
class ReplyParser:
    """Incremental reply reader: feed it lines, it returns a ``Reply`` when complete.

    A multi-line reply starts with ``123-`` and ends with a line starting ``123 ``
    (or a bare ``123``); lines in between may be anything (RFC 959 4.2).
    """

    max_line: int = MAX_REPLY_LINE
    max_lines: int = MAX_REPLY_LINES
    _code: int | None = field(default=None, init=False)
    _lines: list[str] = field(default_factory=list, init=False)

    def feed(self, raw: bytes) -> Reply | None:
        if len(raw.rstrip(b"\r\n")) > self.max_line:
            raise FTPProtocolError(f"reply line longer than {self.max_line} octets")
        line = decode_line(raw)
        if self._code is None:
            match = _CODE.match(raw.rstrip(b"\r\n"))
            if match is None:
                raise FTPProtocolError(f"not an FTP reply: {line[:200]!r}")
            code = int(match.group(1))
            self._lines = [line]
            if match.group(2) != b"-":
                return self._finish(code)
            self._code = code
            return None
        self._lines.append(line)
        if len(self._lines) > self.max_lines:
            raise FTPProtocolError(f"reply longer than {self.max_lines} lines")
        tag = str(self._code)
        if line == tag or line.startswith(tag + " "):
            return self._finish(self._code)
        return None

    def _finish(self, code: int) -> Reply:
        reply = Reply(code, tuple(self._lines))
        self._code = None
        self._lines = []
        return reply


def parse_reply(
    data: bytes | str, *, max_line: int = MAX_REPLY_LINE, max_lines: int = MAX_REPLY_LINES
) -> Reply:
    """Parse one complete reply from text (fixtures, tests); trailing data is an error."""
    raw = data.encode() if isinstance(data, str) else data
    parser = ReplyParser(max_line=max_line, max_lines=max_lines)
    chunks = raw.splitlines(keepends=True)
    for index, chunk in enumerate(chunks):
        reply = parser.feed(chunk)
        if reply is not None:
            if any(rest.strip() for rest in chunks[index + 1 :]):
                raise FTPProtocolError("data after the end of the reply")
            return reply
    raise FTPProtocolError("incomplete reply")


# -- passive mode -------------------------------------------------------------------


def parse_pasv(reply: Reply | str) -> tuple[str, int]:
    """The (IPv4 address, port) of a ``227`` reply, e.g. ``(10,0,0,5,195,80)``."""
    text = reply.text if isinstance(reply, Reply) else reply
    if isinstance(reply, Reply) and reply.code != 227:
        raise FTPProtocolError(f"PASV answered {reply.code}, not 227")
    match = _PASV.search(text)
    if match is None:
        raise FTPProtocolError(f"no h1,h2,h3,h4,p1,p2 in the PASV reply: {text[:200]!r}")
    numbers = [int(value) for value in match.groups()]
    if any(value > 255 for value in numbers):
        raise FTPProtocolError(f"PASV numbers out of range: {match.group(0)}")
    host = ".".join(str(value) for value in numbers[:4])
    port = numbers[4] * 256 + numbers[5]
    if port == 0:
        raise FTPProtocolError("PASV announced port 0")
    return host, port


def parse_epsv(reply: Reply | str) -> int:
    """The port of a ``229`` reply, e.g. ``Entering Extended Passive Mode (|||50000|)``."""
    text = reply.text if isinstance(reply, Reply) else reply
    if isinstance(reply, Reply) and reply.code != 229:
        raise FTPProtocolError(f"EPSV answered {reply.code}, not 229")
    match = _EPSV.search(text)
    if match is None:
        raise FTPProtocolError(f"no (|||port|) in the EPSV reply: {text[:200]!r}")
    port = int(match.group(2))
    if not 1 <= port <= 65535:
        raise FTPProtocolError(f"EPSV port out of range: {port}")
    return port


def pasv_argument(host: str, port: int) -> str:
    """The ``h1,h2,h3,h4,p1,p2`` form of an address (the inverse of :func:`parse_pasv`)."""
    address = ipaddress.IPv4Address(host)
    return ",".join([*str(address).split("."), str(port >> 8), str(port & 0xFF)])


# -- FEAT ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """The features a ``211`` FEAT reply lists (RFC 2389): keyword -> parameters."""

    lines: tuple[str, ...] = ()

    @property
    def names(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.lines:
            keyword, _, params = line.partition(" ")
            out.setdefault(keyword.upper(), params.strip())
        return out

    def has(self, feature: str) -> bool:
        """``has("EPSV")`` or, with a parameter, ``has("AUTH TLS")``."""
        keyword, _, param = feature.strip().partition(" ")
        keyword = keyword.upper()
        if not param:
            return keyword in self.names
        wanted = param.strip().upper()
        return any(
            line.partition(" ")[0].upper() == keyword and wanted in _params(line)
            for line in self.lines
        )

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """Every mechanism of every ``AUTH`` line (``AUTH TLS;TLS-C;SSL`` on IIS)."""
        found: list[str] = []
        for line in self.lines:
            if line.partition(" ")[0].upper() == "AUTH":
                found.extend(mech for mech in _params(line) if mech not in found)
        return tuple(found)

    @property
    def auth_tls(self) -> bool:
        return bool({"TLS", "TLS-C"} & set(self.auth_mechanisms))


def _params(line: str) -> list[str]:
    params = line.partition(" ")[2]
    return [part.upper() for part in re.split(r"[;,\s]+", params) if part]


def parse_feat(reply: Reply) -> Features:
    """Features of a FEAT reply; a single-line or negative reply lists none."""
    if reply.code != 211 or len(reply.lines) < 3:
        return Features()
    body = [line.strip() for line in reply.lines[1:-1]]
    return Features(tuple(line for line in body if line))


# -- commands -----------------------------------------------------------------------


def command_line(line: str) -> bytes:
    """One command as wire bytes; CR or LF inside would smuggle a second command."""
    if "\r" in line or "\n" in line:
        raise ValueError("an FTP command must not contain CR or LF")
    return line.encode("utf-8") + b"\r\n"
