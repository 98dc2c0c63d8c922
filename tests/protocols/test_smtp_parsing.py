"""Pure SMTP wire-format rules: replies, EHLO keywords, AUTH encodings, DATA framing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.protocols.smtp import (
    Reply,
    ReplyParser,
    SMTPProtocolError,
    auth_login_value,
    auth_plain_response,
    command_line,
    decode_auth_plain,
    decode_challenge,
    domain_of,
    dot_stuff,
    dot_unstuff,
    normalize_message,
    parse_ehlo,
    parse_replies,
    parse_reply,
    relay_forms,
)

POSTFIX_EHLO = (
    b"250-mail.example.org\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-VRFY\r\n"
    b"250-ETRN\r\n"
    b"250-STARTTLS\r\n"
    b"250-AUTH PLAIN LOGIN\r\n"
    b"250-AUTH=PLAIN LOGIN\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n"
    b"250-DSN\r\n"
    b"250-SMTPUTF8\r\n"
    b"250 CHUNKING\r\n"
)


def test_single_line_reply() -> None:
    reply = parse_reply(b"220 mail.example.org ESMTP Postfix\r\n")
    assert reply.code == 220
    assert reply.lines == ("mail.example.org ESMTP Postfix",)
    assert reply.positive and not reply.permanent
    assert reply.wire_lines == ["220 mail.example.org ESMTP Postfix"]


def test_multi_line_reply_is_one_reply() -> None:
    reply = parse_reply(POSTFIX_EHLO)
    assert reply.code == 250
    assert len(reply.lines) == 13
    assert reply.wire_lines[0] == "250-mail.example.org"
    assert reply.wire_lines[-1] == "250 CHUNKING"


def test_bare_code_and_lf_only_lines_are_accepted() -> None:
    replies = parse_replies(b"250\n354 go ahead\n")
    assert [r.code for r in replies] == [250, 354]
    assert replies[0].lines == ("",)


def test_enhanced_status_code() -> None:
    assert parse_reply(b"550 5.7.1 Relaying denied\r\n").enhanced == "5.7.1"
    assert parse_reply(b"535 5.7.8 Authentication credentials invalid\r\n").enhanced == "5.7.8"
    assert parse_reply(b"503 Error: send HELO first\r\n").enhanced is None


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"25 short\r\n",
        b"250OK\r\n",
        b"650 bad class\r\n",
        b"250-first\r\n550 other code\r\n",
    ],
)
def test_malformed_replies_are_refused(data: bytes) -> None:
    with pytest.raises(SMTPProtocolError):
        parse_replies(data)


def test_unterminated_multi_line_reply_is_refused() -> None:
    with pytest.raises(SMTPProtocolError, match="not terminated"):
        parse_replies(b"250-one\r\n250-two\r\n")


def test_line_and_line_count_limits() -> None:
    with pytest.raises(SMTPProtocolError, match="longer than 64"):
        parse_reply(b"250 " + b"x" * 100 + b"\r\n", max_line=64)
    many = b"".join(b"250-line\r\n" for _ in range(10)) + b"250 end\r\n"
    with pytest.raises(SMTPProtocolError, match="10 lines"):
        parse_reply(many, max_lines=10)
    assert len(parse_reply(many, max_lines=11).lines) == 11


def test_parser_is_incremental_and_reusable() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250-a\r\n") is None
    assert parser.pending
    assert parser.feed(b"250 b\r\n") == Reply(250, ("a", "b"))
    assert not parser.pending
    assert parser.feed(b"221 bye\r\n") == Reply(221, ("bye",))


def test_parse_ehlo_keywords() -> None:
    ehlo = parse_ehlo(parse_reply(POSTFIX_EHLO))
    assert ehlo.domain == "mail.example.org"
    assert ehlo.has("starttls") and ehlo.has("PIPELINING") and ehlo.has("SMTPUTF8")
    assert ehlo.size_limit == 10240000
    assert ehlo.auth_mechanisms == ("PLAIN", "LOGIN")
    assert not ehlo.has("XCLIENT")
    assert ehlo.to_dict()["SIZE"] == ["10240000"]


def test_parse_ehlo_old_auth_form_and_size_without_value() -> None:
    ehlo = parse_ehlo(parse_reply(b"250-host greets you\r\n250-AUTH=LOGIN\r\n250 SIZE\r\n"))
    assert ehlo.greeting == "greets you"
    assert ehlo.auth_mechanisms == ("LOGIN",)
    assert ehlo.size_limit == 0


def test_parse_ehlo_needs_250() -> None:
    with pytest.raises(SMTPProtocolError):
        parse_ehlo(parse_reply(b"502 5.5.1 no EHLO\r\n"))


def test_auth_plain_matches_rfc4616_example() -> None:
    # RFC 4616 section 4: authcid "tim", password "tanstaaftanstaaf"
    blob = auth_plain_response("tim", "tanstaaftanstaaf")
    assert base64.b64decode(blob) == b"\x00tim\x00tanstaaftanstaaf"
    assert blob == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
    assert decode_auth_plain(blob) == ("", "tim", "tanstaaftanstaaf")
    with_authzid = auth_plain_response("tim", "pw", authzid="Ursel")
    assert base64.b64decode(with_authzid) == b"Ursel\x00tim\x00pw"


def test_auth_plain_refuses_nul_and_encodes_utf8() -> None:
    with pytest.raises(ValueError):
        auth_plain_response("a\x00b", "pw")
    assert base64.b64decode(auth_plain_response("jörg", "pässwort")) == (
        "\x00jörg\x00pässwort".encode()
    )


def test_auth_login_values_and_challenge() -> None:
    assert auth_login_value("user") == "dXNlcg=="
    assert decode_challenge(parse_reply(b"334 VXNlcm5hbWU6\r\n")) == b"Username:"
    with pytest.raises(SMTPProtocolError):
        decode_challenge(parse_reply(b"334 not base64!\r\n"))


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=30)


@given(_TEXT, _TEXT)
def test_auth_plain_round_trip(user: str, password: str) -> None:
    assert decode_auth_plain(auth_plain_response(user, password)) == ("", user, password)


def test_dot_stuffing() -> None:
    message = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nend"
    payload = dot_stuff(message)
    assert payload == b"Subject: x\r\n\r\n..leading dot\r\n...two\r\nend\r\n.\r\n"
    assert dot_unstuff(payload) == normalize_message(message)


def test_normalize_message_turns_bare_lf_and_cr_into_crlf() -> None:
    assert normalize_message(b"a\nb\rc\r\nd") == b"a\r\nb\r\nc\r\nd\r\n"


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                max_size=10))
def test_dot_stuff_round_trip(lines: list[bytes]) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    payload = dot_stuff(message)
    assert b"\r\n.\r\n" in b"\r\n" + payload
    assert payload.count(b"\r\n.\r\n") + payload.startswith(b".\r\n") == 1
    assert dot_unstuff(payload) == normalize_message(message)


def test_relay_forms() -> None:
    forms = {form.name: form.address for form in relay_forms("victim@relay.invalid", "lab.test")}
    assert forms == {
        "plain": "victim@relay.invalid",
        "percent-hack": "victim%relay.invalid@lab.test",
        "quoted-local-part": '"victim@relay.invalid"@lab.test',
        "source-route": "@lab.test:victim@relay.invalid",
        "bang-path": "relay.invalid!victim@lab.test",
    }
    assert [f.name for f in relay_forms("victim@relay.invalid", "")] == ["plain"]


def test_domain_of_and_command_line() -> None:
    assert domain_of("<Postmaster@FTPS-Lab.Test>") == "ftps-lab.test"
    assert domain_of("postmaster") == ""
    assert command_line(["MAIL", "FROM:<a@b>"]) == b"MAIL FROM:<a@b>\r\n"
    with pytest.raises(ValueError):
        command_line(["RCPT TO:<a@b>\r\nDATA"])
