"""FTP wire parsing on byte fixtures: replies, limits, PASV/EPSV, FEAT, command lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.protocols.ftp import (
    MAX_REPLY_LINE,
    Features,
    FTPProtocolError,
    Reply,
    ReplyParser,
    command_line,
    parse_epsv,
    parse_feat,
    parse_pasv,
    parse_reply,
    pasv_argument,
)

# --- replies ------------------------------------------------------------------------------


def test_single_line_reply() -> None:
    reply = parse_reply(b"220 ftps-lab ready.\r\n")
    assert reply.code == 220
    assert reply.lines == ("220 ftps-lab ready.",)
    assert reply.text == "ftps-lab ready."
    assert reply.positive and not reply.negative
    assert str(reply) == "220 ftps-lab ready."


def test_multi_line_reply_keeps_every_line_as_sent() -> None:
    raw = (
        b"230-Welcome\r\n"
        b"  free text without a code\r\n"
        b"220 a different code does not end it\r\n"
        b"230-still going\r\n"
        b"230 Login successful.\r\n"
    )
    reply = parse_reply(raw)
    assert reply.code == 230
    assert reply.lines == (
        "230-Welcome",
        "  free text without a code",
        "220 a different code does not end it",
        "230-still going",
        "230 Login successful.",
    )
    assert reply.text.splitlines() == [
        "Welcome",
        "  free text without a code",
        "220 a different code does not end it",
        "still going",
        "Login successful.",
    ]
    assert reply.wire_lines == list(reply.lines)


def test_bare_code_line_ends_a_reply_and_lf_only_is_accepted() -> None:
    assert parse_reply(b"226\n").lines == ("226",)
    reply = parse_reply(b"211-Features:\n EPSV\n211\n")
    assert reply.code == 211 and len(reply.lines) == 3
    assert reply.text == "Features:\n EPSV\n"


def test_reply_classes() -> None:
    assert parse_reply("150 Opening data connection.").preliminary
    assert parse_reply("331 Password required").intermediate
    assert parse_reply("425 Can't open data connection").transient
    assert parse_reply("534 Policy requires SSL.").permanent
    assert parse_reply("534 Policy requires SSL.").negative


def test_parser_is_incremental_and_reusable() -> None:
    parser = ReplyParser()
    assert parser.feed(b"211-Features:\r\n") is None
    assert parser.feed(b" AUTH TLS\r\n") is None
    first = parser.feed(b"211 End\r\n")
    assert first is not None and first.code == 211
    second = parser.feed(b"200 OK\r\n")
    assert second == Reply(200, ("200 OK",))


@pytest.mark.parametrize(
    "raw",
    [b"hello\r\n", b"22 short\r\n", b"600 bad class\r\n", b"220x no separator\r\n", b"\r\n"],
)
def test_garbage_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(FTPProtocolError, match="not an FTP reply"):
        ReplyParser().feed(raw)


def test_line_length_limit() -> None:
    parser = ReplyParser(max_line=100)
    assert parser.feed(b"220 " + b"x" * 96 + b"\r\n") is not None
    with pytest.raises(FTPProtocolError, match="longer than 100 octets"):
        ReplyParser(max_line=100).feed(b"220 " + b"x" * 97 + b"\r\n")
    assert MAX_REPLY_LINE >= 1024


def test_line_count_limit() -> None:
    parser = ReplyParser(max_lines=5)
    parser.feed(b"220-start\r\n")
    for _ in range(4):
        parser.feed(b"220-more\r\n")
    with pytest.raises(FTPProtocolError, match="longer than 5 lines"):
        parser.feed(b"220-one too many\r\n")


def test_parse_reply_refuses_incomplete_and_trailing_data() -> None:
    with pytest.raises(FTPProtocolError, match="incomplete"):
        parse_reply(b"220-never ends\r\n")
    with pytest.raises(FTPProtocolError, match="after the end"):
        parse_reply(b"220 one\r\n221 two\r\n")


def test_undecodable_bytes_are_replaced_not_dropped() -> None:
    reply = parse_reply(b"250 caf\xe9 \xff\r\n")
    assert reply.code == 250
    assert reply.text.startswith("caf") and "\ufffd" in reply.text


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"),
    max_size=40,
)


@given(
    code=st.integers(100, 599),
    middle=st.lists(_TEXT, max_size=8),
    last=_TEXT,
)
def test_multi_line_round_trip(code: int, middle: list[str], last: str) -> None:
    lines = [f"{code}-first", *(" " + text for text in middle), f"{code} {last}"]
    reply = parse_reply("\r\n".join(lines) + "\r\n")
    assert reply.code == code
    assert reply.lines == tuple(lines)


# --- PASV / EPSV --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("227 Entering Passive Mode (127,0,0,1,195,80).", ("127.0.0.1", 50000)),
        ("227 Entering Passive Mode (10,99,99,99,0,21)", ("10.99.99.99", 21)),
        ("227 =192,168,1,20,4,1", ("192.168.1.20", 1025)),  # RFC 1123: no parentheses
        ("227 Entering Passive Mode (203, 0, 113, 5, 255, 255)", ("203.0.113.5", 65535)),
    ],
)
def test_pasv(text: str, expected: tuple[str, int]) -> None:
    assert parse_pasv(parse_reply(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("227 Entering Passive Mode (256,0,0,1,10,10)", "out of range"),
        ("227 Entering Passive Mode (1,2,3,4,5)", "no h1"),
        ("227 Entering Passive Mode", "no h1"),
        ("227 Entering Passive Mode (127,0,0,1,0,0)", "port 0"),
        ("500 PASV not understood", "not 227"),
    ],
)
def test_pasv_errors(text: str, message: str) -> None:
    with pytest.raises(FTPProtocolError, match=message):
        parse_pasv(parse_reply(text))


@given(
    host=st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    port=st.integers(1, 65535),
)
def test_pasv_argument_round_trip(host: str, port: int) -> None:
    assert parse_pasv(f"227 Entering Passive Mode ({pasv_argument(host, port)})") == (host, port)


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("229 Entering Extended Passive Mode (|||50000|)", 50000),
        ("229 Entering Extended Passive Mode (!!!2121!)", 2121),
        ("229 EPSV ok (|||1|)", 1),
    ],
)
def test_epsv(text: str, port: int) -> None:
    assert parse_epsv(parse_reply(text)) == port


@pytest.mark.parametrize(
    "text",
    [
        "229 Entering Extended Passive Mode (|||0|)",
        "229 Entering Extended Passive Mode (|||70000|)",
        "229 Entering Extended Passive Mode (|!|5000|)",
        "229 Entering Extended Passive Mode",
        "500 EPSV not understood",
    ],
)
def test_epsv_errors(text: str) -> None:
    with pytest.raises(FTPProtocolError):
        parse_epsv(parse_reply(text))


# --- FEAT ---------------------------------------------------------------------------------

VSFTPD_FEAT = (
    "211-Features:\r\n AUTH SSL\r\n AUTH TLS\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n"
    " PBSZ\r\n PROT\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n"
)
IIS_FEAT = (
    "211-Extended features supported:\r\n LANG EN*\r\n UTF8\r\n AUTH TLS;TLS-C;SSL;TLS-P;\r\n"
    " PBSZ\r\n PROT C;P;\r\n CCC\r\n HOST\r\n SIZE\r\n MDTM\r\n REST STREAM\r\n"
    "211 END\r\n"
)
PLAIN_FEAT = "211-Features:\r\n EPSV\r\n MDTM\r\n SIZE\r\n211 End\r\n"


def test_feat_vsftpd() -> None:
    features = parse_feat(parse_reply(VSFTPD_FEAT))
    assert features.auth_tls
    assert features.auth_mechanisms == ("SSL", "TLS")
    assert features.has("AUTH TLS") and features.has("auth ssl")
    assert features.has("EPSV") and features.has("REST STREAM") and features.has("REST")
    assert not features.has("MLST")


def test_feat_iis() -> None:
    features = parse_feat(parse_reply(IIS_FEAT))
    assert features.auth_tls
    assert features.auth_mechanisms == ("TLS", "TLS-C", "SSL", "TLS-P")
    assert features.has("PROT P") and features.has("PROT C")
    assert features.names["LANG"] == "EN*"


def test_feat_without_tls_and_refused_feat() -> None:
    plain = parse_feat(parse_reply(PLAIN_FEAT))
    assert not plain.auth_tls and plain.auth_mechanisms == ()
    assert parse_feat(parse_reply("500 FEAT not understood")) == Features()
    assert parse_feat(parse_reply("211 no features")) == Features()


# --- commands -----------------------------------------------------------------------------


def test_command_line_refuses_smuggled_commands() -> None:
    assert command_line("USER lab") == b"USER lab\r\n"
    for bad in ("USER x\r\nDELE y", "RETR a\nb", "LIST \r"):
        with pytest.raises(ValueError, match="CR or LF"):
            command_line(bad)
