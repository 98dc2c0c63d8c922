"""Server replies are attacker-controlled bytes: parse them or refuse them, clearly.

For any bytes, the FTP reply parser (multi-line replies, PASV 227, EPSV 229, FEAT) and
the SMTP reply and EHLO parsers return a parsed value or raise the module's own error
(:class:`FTPProtocolError`, :class:`SMTPProtocolError`); nothing else escapes, and
whatever is returned satisfies the invariants the checks rely on (a real reply code, a
valid IPv4 address, a port in 1-65535, a SIZE that is an int or None).
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from harness.protocols import ftp, smtp
from harness.protocols.ftp import FTPProtocolError
from harness.protocols.smtp import SMTPProtocolError

pytestmark = pytest.mark.timeout(300)

# -- byte strategies that look like replies -----------------------------------------------

_codes = st.one_of(st.integers(0, 999).map(lambda n: f"{n:03d}"), st.sampled_from(
    ["220", "221", "227", "229", "211", "250", "334", "421", "500", "530", "1", "2200", ""]))
_sep = st.sampled_from(["-", " ", "", "\t", "--", "- "])
_ends = st.sampled_from([b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b"\n\r"])
_noise = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"(127,0,0,1,195,80)", b"(|||50000|)", b"(!!!2121!)", b"AUTH TLS",
                     b"SIZE 10240000", b"SIZE \xc2\xb2", b"AUTH=PLAIN LOGIN", b"\xff\xfe",
                     b"(1,2,3,4,5)", b"(999,0,0,1,1,1)", b"(|||0|)", b"(|||99999|)", b"\x00"]),
)


@st.composite
def _reply_lines(draw: Any) -> bytes:
    """Lines shaped like FTP/SMTP replies: mostly right, sometimes subtly wrong."""
    out = b""
    for _ in range(draw(st.integers(0, 12))):
        code = draw(_codes).encode()
        out += code + draw(_sep).encode() + draw(_noise) + draw(_ends)
    return out


_reply_bytes = st.one_of(st.binary(max_size=600), _reply_lines())


# -- FTP -------------------------------------------------------------------------------


def _check_ftp_reply(reply: ftp.Reply) -> None:
    assert 100 <= reply.code <= 599
    assert reply.lines and reply.lines[0][:3] == str(reply.code)
    assert len(reply.lines) <= ftp.MAX_REPLY_LINES
    assert str(reply) and isinstance(reply.text, str) and reply.wire_lines == list(reply.lines)


@given(data=_reply_bytes)
@example(data=b"220-first\r\n220-still going\r\n220 done\r\n")
@example(data=b"220-first\r\n221 other code\r\n220\r\n")
@example(data=b"220 " + b"x" * (ftp.MAX_REPLY_LINE + 1) + b"\r\n")
@example(data=b"220-" + b"\r\n".join([b" more"] * ftp.MAX_REPLY_LINES) + b"\r\n220 end\r\n")
def test_ftp_reply_parses_or_is_refused(data: bytes) -> None:
    try:
        reply = ftp.parse_reply(data)
    except FTPProtocolError as exc:
        assert str(exc)
        return
    _check_ftp_reply(reply)


@given(lines=st.lists(st.one_of(st.binary(max_size=120), _reply_lines()), max_size=30))
def test_ftp_incremental_parser_never_escapes(lines: list[bytes]) -> None:
    """What the client does: one line at a time, until a reply completes or an error."""
    parser = ftp.ReplyParser()
    for raw in lines:
        try:
            reply = parser.feed(raw)
        except FTPProtocolError:
            return
        if reply is not None:
            _check_ftp_reply(reply)
            parser = ftp.ReplyParser()


@given(code=st.integers(100, 599), middle=st.lists(st.binary(max_size=40), max_size=20))
def test_ftp_multi_line_ends_only_at_its_own_code(code: int, middle: list[bytes]) -> None:
    """RFC 959: inside ``ddd-``...``ddd `` anything goes, other codes included."""
    body = [line.replace(b"\r", b"").replace(b"\n", b"") for line in middle]
    body = [line for line in body if not line.startswith(str(code).encode())]
    data = b"".join([f"{code}-start\r\n".encode(), *(line + b"\r\n" for line in body),
                     f"{code} end\r\n".encode()])
    reply = ftp.parse_reply(data)
    assert reply.code == code and len(reply.lines) == len(body) + 2


@given(text=st.one_of(st.text(max_size=200), _reply_lines().map(lambda b: b.decode("latin-1"))))
@example(text="227 Entering Passive Mode (\u0661\u0662\u0667,0,0,1,4,1)")
@example(text="227 (256,0,0,1,1,1)")
@example(text="227 (10,0,0,1,0,0)")
@example(text="227 =127,0,0,1,195,80")
@example(text="227 (0127,0,0,1,195,80)")
def test_pasv_gives_an_ipv4_address_and_a_port_or_refuses(text: str) -> None:
    for value in (text, ftp.Reply(227, (text,))):
        try:
            host, port = ftp.parse_pasv(value)
        except FTPProtocolError as exc:
            assert str(exc)
            continue
        assert str(ipaddress.IPv4Address(host)) == host
        assert 1 <= port <= 65535


@given(
    prefix=st.text(st.characters(blacklist_categories=("Nd",)), max_size=30),
    host=st.ip_addresses(v=4).map(str),
    port=st.integers(1, 65535),
    suffix=st.text(max_size=30),
)
def test_pasv_finds_the_numbers_in_any_text(prefix: str, host: str, port: int, suffix: str) -> None:
    """RFC 1123 4.1.2.6: the six numbers may sit anywhere in the 227 text."""
    text = f"227 {prefix}({ftp.pasv_argument(host, port)}){suffix}"
    assert ftp.parse_pasv(ftp.Reply(227, (text,))) == (host, port)


@given(text=st.one_of(st.text(max_size=200), _reply_lines().map(lambda b: b.decode("latin-1"))))
@example(text="229 (|||\u0665\u0660\u0660\u0660\u0660|)")
@example(text="229 (|||0|)")
@example(text="229 (|||65536|)")
@example(text="229 (|||123456|)")
@example(text="229 (|| |50000|)")
def test_epsv_gives_a_port_or_refuses(text: str) -> None:
    for value in (text, ftp.Reply(229, (text,))):
        try:
            port = ftp.parse_epsv(value)
        except FTPProtocolError as exc:
            assert str(exc)
            continue
        assert 1 <= port <= 65535


@given(
    delimiter=st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(
        lambda c: not c.isdigit() and c not in "()"),
    port=st.integers(1, 65535),
    noise=st.text(st.characters(blacklist_characters="()"), max_size=30),
)
def test_epsv_round_trip_with_any_delimiter(delimiter: str, port: int, noise: str) -> None:
    text = f"229 {noise}({delimiter * 3}{port}{delimiter})"
    assert ftp.parse_epsv(ftp.Reply(229, (text,))) == port


@given(data=_reply_bytes)
def test_feat_of_any_reply_is_usable(data: bytes) -> None:
    try:
        reply = ftp.parse_reply(data)
    except FTPProtocolError:
        return
    features = ftp.parse_feat(reply)
    assert isinstance(features.names, dict) and isinstance(features.auth_tls, bool)
    assert all(mech == mech.upper() for mech in features.auth_mechanisms)
    assert isinstance(features.has("AUTH TLS"), bool)
    assert isinstance(features.has(""), bool)


@given(code=st.integers(100, 599), text=st.text(max_size=40))
def test_a_reply_that_is_not_227_or_229_is_refused_by_name(code: int, text: str) -> None:
    assume(code not in (227, 229))
    with pytest.raises(FTPProtocolError, match=f"answered {code}"):
        ftp.parse_pasv(ftp.Reply(code, (f"{code} {text}",)))
    with pytest.raises(FTPProtocolError, match=f"answered {code}"):
        ftp.parse_epsv(ftp.Reply(code, (f"{code} {text}",)))


# -- SMTP ------------------------------------------------------------------------------


def _check_smtp_reply(reply: smtp.Reply) -> None:
    assert 200 <= reply.code <= 599
    assert 1 <= len(reply.lines) <= smtp.MAX_REPLY_LINES
    assert str(reply) and isinstance(reply.text, str) and len(reply.wire_lines) == len(reply.lines)
    assert reply.enhanced is None or reply.enhanced.replace(".", "").isascii()


def _check_ehlo(ehlo: smtp.Ehlo) -> None:
    assert isinstance(ehlo.domain, str) and isinstance(ehlo.greeting, str)
    size = ehlo.size_limit
    assert size is None or (isinstance(size, int) and size >= 0)
    assert all(mech == mech.upper() for mech in ehlo.auth_mechanisms)
    assert isinstance(ehlo.has("STARTTLS"), bool) and isinstance(ehlo.to_dict(), dict)


@given(data=_reply_bytes)
@example(data=b"250-mail.example\r\n250-SIZE \xc2\xb2\r\n250 AUTH PLAIN\r\n")
@example(data=b"250-mail.example\r\n250-SIZE -1\r\n250 AUTH=LOGIN\r\n")
@example(data=b"250-mail.example\r\n251 changed code\r\n")
@example(data=b"250-a\r\n" * (smtp.MAX_REPLY_LINES + 1) + b"250 z\r\n")
@example(data=b"250" + b"x" * 10 + b"\r\n")
def test_smtp_replies_parse_or_are_refused(data: bytes) -> None:
    try:
        replies = smtp.parse_replies(data)
    except SMTPProtocolError as exc:
        assert str(exc)
        return
    for reply in replies:
        _check_smtp_reply(reply)
        if reply.code == 250:
            _check_ehlo(smtp.parse_ehlo(reply))
        else:
            with pytest.raises(SMTPProtocolError):
                smtp.parse_ehlo(reply)
        with contextlib.suppress(SMTPProtocolError):
            assert isinstance(smtp.decode_challenge(reply), bytes)


_keyword = st.one_of(
    st.sampled_from(["SIZE", "AUTH", "AUTH=", "STARTTLS", "8BITMIME", "PIPELINING", "SMTPUTF8",
                     "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "X-EXPS", "size", "Auth"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x17F), min_size=1, max_size=10),
)
_param = st.one_of(
    st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "0", "10240000", "\u00b2", "\u0663",
                     "-5", "1e3", "GSSAPI", "=", ""]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), max_size=10),
)


@given(
    domain=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    lines=st.lists(st.tuples(_keyword, st.lists(_param, max_size=4),
                             st.sampled_from([" ", "  ", "\t", " \t "])), max_size=15),
)
def test_multi_line_ehlo_gives_usable_extensions(
    domain: str, lines: list[tuple[str, list[str], str]]
) -> None:
    """Any keyword list a server may announce, odd spacing and non-ASCII digits included."""
    body = [f"{keyword}{space}{space.join(params)}".rstrip() for keyword, params, space in lines]
    wire = [f"250-{domain} hello"] + [f"250-{line}" for line in body]
    wire[-1] = "250 " + wire[-1][4:]
    data = ("\r\n".join(wire) + "\r\n").encode("utf-8")
    try:
        reply = smtp.parse_reply(data)
    except SMTPProtocolError:
        return  # e.g. a keyword text that itself contains a line break
    _check_smtp_reply(reply)
    ehlo = smtp.parse_ehlo(reply)
    _check_ehlo(ehlo)
    for keyword, _params, _space in lines:
        upper = keyword.upper()
        if upper.startswith("AUTH=") or not upper.split():
            continue
        assert ehlo.has(upper.split()[0])


@given(lines=st.lists(st.one_of(st.binary(max_size=120), _reply_lines()), max_size=30))
def test_smtp_incremental_parser_never_escapes(lines: list[bytes]) -> None:
    parser = smtp.ReplyParser()
    for raw in lines:
        for piece in raw.split(b"\n"):
            try:
                reply = parser.feed(piece)
            except SMTPProtocolError:
                return
            if reply is not None:
                _check_smtp_reply(reply)


def test_size_with_a_non_ascii_digit_is_no_size() -> None:
    """Found by the properties above: "²".isdigit() is true, int("²") raises."""
    reply = smtp.parse_reply(b"250-mx\r\n250 SIZE \xc2\xb2\r\n")
    assert smtp.parse_ehlo(reply).size_limit is None


def test_pasv_and_epsv_want_ascii_digits() -> None:
    """A str pattern's \\d matches Arabic-Indic digits, which int() would accept."""
    with pytest.raises(FTPProtocolError):
        ftp.parse_pasv("227 (\u0661\u0662\u0667,0,0,1,4,1)")
    with pytest.raises(FTPProtocolError):
        ftp.parse_epsv("229 (|||\u0665\u0660\u0660\u0660\u0660|)")
