"""Server identification from its own lines, and advice in that server's settings."""

from __future__ import annotations

import pytest

from harness.checks import ftps_verdicts as fv
from harness.checks import identify, smtp_verdicts
from harness.protocols.smtp import parse_reply
from harness.results import CheckResult, Status


@pytest.mark.parametrize(
    ("line", "key", "version"),
    [
        ("220 Microsoft FTP Service", "iis", None),
        ("220 (vsFTPd 3.0.3)", "vsftpd", "3.0.3"),
        ("220 ProFTPD Server (Debian) [::ffff:127.0.0.1]", "proftpd", None),
        ("220 ProFTPD 1.3.8 Server (ProFTPD Default Installation) [127.0.0.1]", "proftpd",
         "1.3.8"),
        ("220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------", "pure-ftpd", None),
        ("220-FileZilla Server 1.8.0", "filezilla", "1.8.0"),
        ("220 mail.example.net ESMTP Postfix", "postfix", None),
        ("220 mail.example.net ESMTP Postfix (Debian/GNU)", "postfix", None),
        ("220 mail.example.net ESMTP Exim 4.96 Thu, 30 Nov 2023 06:05:00 +0000", "exim",
         "4.96"),
        ("220 mail.example.net ESMTP Sendmail 8.17.1.9/8.17.1.9/Debian-2+deb12u2; Thu", "sendmail",
         "8.17.1.9"),
        ("220 EX01.corp.example Microsoft ESMTP MAIL Service ready at Thu, 30 Nov 2023",
         "exchange", None),
    ],
)
def test_greetings_name_the_server(line: str, key: str, version: str | None) -> None:
    found = identify.identify([line])
    assert found is not None and found.key == key
    assert found.source == "greeting" and found.matched == line
    if version is not None:
        assert found.version is not None and found.version.startswith(version)


def test_hidden_banners_still_give_the_server_away() -> None:
    """A customised greeting hides the product; EHLO and reply texts still name it."""
    exim = identify.identify(["220 mail.example.net ESMTP",
                              "250-mail.example.net Hello probe.ftps-lab.test [192.0.2.7]",
                              "250-SIZE 52428800"])
    assert exim is not None and (exim.key, exim.source) == ("exim", "ehlo")
    sendmail = identify.identify([
        "250-mail.example.net Hello probe [192.0.2.7], pleased to meet you"])
    assert sendmail is not None and sendmail.key == "sendmail"
    exchange = identify.identify(["250-XRDST"])
    assert exchange is not None and exchange.key == "exchange"
    vsftpd = identify.identify(["220 Welcome", "530 Non-anonymous sessions must use encryption."])
    assert vsftpd is not None and (vsftpd.key, vsftpd.source) == ("vsftpd", "reply")
    postfix = identify.identify(["220 mx ESMTP", "503 5.5.1 Error: send HELO/EHLO first"])
    assert postfix is not None and postfix.key == "postfix"


def test_a_greeting_outranks_a_reply_text() -> None:
    found = identify.identify(["234 Proceed with negotiation.", "220 ProFTPD Server (x)"])
    assert found is not None and found.key == "proftpd"


def test_the_embedded_lab_is_no_server_product() -> None:
    """The lab imitates Postfix's texts where RFCs leave them open; it must not pass for
    Postfix, or its tests would read Postfix advice."""
    lab = ["220 mail.ftps-lab.test ESMTP ftps-lab", "250-mail.ftps-lab.test",
           "503 5.5.1 Error: authentication not enabled",
           "530 5.7.0 Must issue a STARTTLS command first", "503 Error: send HELO first",
           "220 ftps-lab FTP server ready.", "234 AUTH TLS successful."]
    assert identify.identify(lab) is None


def test_advice_speaks_the_servers_language() -> None:
    """The mail-before-auth advice: Postfix's master.cf for Postfix, Exim's ACL for Exim,
    the generic text (every product) for an unknown server."""
    postfix = identify.advice("smtp-mail-before-auth", "postfix")
    exim = identify.advice("smtp-mail-before-auth", "exim")
    assert postfix.startswith("Refuse MAIL before AUTH") and "Postfix: in the master.cf" in postfix
    assert "Exim" not in postfix and "$received_port" not in postfix
    assert "Exim: in the MAIL ACL" in exim and "master.cf" not in exim
    unknown = identify.advice("smtp-mail-before-auth", None)
    assert unknown == identify.generic("smtp-mail-before-auth")
    assert "Postfix" in unknown and "Exim" in unknown and "sendmail" in unknown
    # A topic without a snippet for the server falls back to the generic text.
    assert identify.advice("ftps-feat-auth-tls", "proftpd") == identify.generic(
        "ftps-feat-auth-tls")


def test_localize_swaps_generic_texts_inside_composed_advice() -> None:
    vsftpd = identify.Software("vsftpd", "3.0.3")
    composed = "Clients discover FTPS through FEAT (RFC 2389). " + fv.ADVICE_ENABLE_TLS
    text = identify.localize(composed, vsftpd)
    assert text.startswith("Clients discover FTPS through FEAT (RFC 2389). Enable explicit "
                           "FTPS: vsftpd: ssl_enable=YES")
    assert "IIS" not in text and "ProFTPD" not in text
    # The passive range quoted inside "the data port does not answer" is swapped too.
    reach = identify.localize(fv.ADVICE_PASV_REACH, identify.Software("proftpd"))
    assert "PassivePorts <low> <high>" in reach and "pasv_min_port" not in reach
    assert identify.localize(composed, None) == composed


def test_apply_records_the_server_and_localizes_the_advice() -> None:
    """What Probe.finish does: an Exim server refusing relaying no longer reads Postfix's
    smtpd_relay_restrictions."""
    result = smtp_verdicts.judge_relay([smtp_verdicts.RelayAttempt(
        "plain", "victim@relay-test.invalid", "RCPT",
        parse_reply(b"250 Accepted\r\n"))])
    assert result.status is Status.FAIL and "smtpd_relay_restrictions" in result.advice
    transcript = ["  0.001 # connect 192.0.2.1:587",
                  "  0.002 < 220 mail.example.net ESMTP Exim 4.96 Thu, 30 Nov 2023",
                  "  0.003 > EHLO probe.ftps-lab.test"]
    identify.apply(result, transcript)
    assert result.evidence["server_software"] == {
        "name": "Exim", "key": "exim", "version": "4.96",
        "matched": "220 mail.example.net ESMTP Exim 4.96 Thu, 30 Nov 2023",
        "source": "greeting"}
    assert result.advice.startswith("Refuse relaying for unauthenticated clients: Exim:")
    assert "smtpd_relay_restrictions" not in result.advice
    unknown = CheckResult("x", Status.FAIL, "", advice=fv.ADVICE_LEGACY)
    identify.apply(unknown, ["  0.1 < 220 hello"])
    assert "server_software" not in unknown.evidence and unknown.advice == fv.ADVICE_LEGACY


def test_every_snippet_names_a_known_server() -> None:
    for name, topic in identify.TOPICS.items():
        assert topic.generic and topic.lead, name
        for key in topic.servers:
            assert key in identify.NAMES, (name, key)
            assert topic.for_server(key).startswith(topic.lead), (name, key)
