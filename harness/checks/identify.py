"""Which server software answered, and advice in that server's own settings.

An operator reading "Postfix master.cf: -o smtpd_..." for an Exim server learns nothing,
so advice is written per topic with one snippet per server product. :func:`identify`
is pure: the lines the server sent (greeting, EHLO or FEAT, reply texts) go in, the
product (and version, when the greeting says it) comes out. :func:`localize` swaps every
generic advice text of a known topic in a result's advice for the identified server's
snippet; with no server identified, or no snippet for it, the generic text stays. The
verdict functions keep producing the generic texts (:func:`generic`), so they stay
pure and the checks localize once, at the end (``Probe.finish``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

# key -> the product's name as its administrators write it.
NAMES: dict[str, str] = {
    "iis": "IIS",
    "vsftpd": "vsftpd",
    "proftpd": "ProFTPD",
    "pure-ftpd": "Pure-FTPd",
    "filezilla": "FileZilla Server",
    "postfix": "Postfix",
    "exim": "Exim",
    "sendmail": "sendmail",
    "exchange": "Exchange",
}


@dataclass(frozen=True)
class Software:
    """An identified server product, with the line that gave it away."""

    key: str
    version: str | None = None
    matched: str = ""
    source: str = "greeting"  # "greeting", "ehlo", "reply"

    @property
    def name(self) -> str:
        return NAMES[self.key]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class _Signature:
    key: str
    pattern: re.Pattern[str]
    source: str


def _sig(key: str, pattern: str, source: str) -> _Signature:
    return _Signature(key, re.compile(pattern), source)


# Greetings first (a product names itself there unless the administrator hid it), then
# EHLO lines, then reply texts only that product writes. A reply text the embedded lab
# imitates (Postfix's "Error: authentication not enabled", "Must issue a STARTTLS
# command first") is no fingerprint: the lab would pass for Postfix.
SIGNATURES: tuple[_Signature, ...] = (
    _sig("iis", r"^220[ -].*?Microsoft FTP Service", "greeting"),
    _sig("vsftpd", r"^220[ -].*?\(vsFTPd (?P<version>\d[\w.]*)\)", "greeting"),
    _sig("vsftpd", r"^220[ -].*?vsFTPd", "greeting"),
    _sig("proftpd", r"^220[ -].*?ProFTPD(?: (?P<version>\d[\w.]*))?(?: Server)?", "greeting"),
    _sig("pure-ftpd", r"^220[ -].*?Pure-FTPd", "greeting"),
    _sig("filezilla", r"^220[ -].*?FileZilla Server(?: (?P<version>\d[\w.]*))?", "greeting"),
    _sig("exchange", r"^220[ -].*?Microsoft ESMTP MAIL Service", "greeting"),
    _sig("postfix", r"^220[ -].*?ESMTP Postfix", "greeting"),
    _sig("exim", r"^220[ -].*?ESMTP Exim(?: (?P<version>\d[\w.]*))?", "greeting"),
    _sig("sendmail", r"^220[ -].*?ESMTP Sendmail(?: (?P<version>\d[\w.]*))?", "greeting"),
    _sig("exchange", r"^250[ -](?:XEXCH50|X-EXPS|X-ANONYMOUSTLS|XRDST)\b", "ehlo"),
    _sig("sendmail", r"^250[ -]\S+ Hello .*, pleased to meet you$", "ehlo"),
    _sig("exim", r"^250[ -]\S+ Hello \S+ \[[0-9A-Fa-f.:]+\]$", "ehlo"),
    _sig("vsftpd", r"^(?:530 Non-anonymous sessions must use encryption\."
                   r"|522 Data connections must be encrypted\."
                   r"|234 Proceed with negotiation\.)", "reply"),
    _sig("iis", r"^(?:534 Policy requires SSL\.|234 AUTH command ok\. Expecting TLS)", "reply"),
    _sig("proftpd", r"^550 SSL/TLS required on the control channel", "reply"),
    _sig("pure-ftpd", r"^421 Sorry, cleartext sessions .*are not accepted", "reply"),
    _sig("postfix", r"^503 5\.5\.1 Error: (?:send HELO/EHLO first|need MAIL command)", "reply"),
)
_ORDER = {"greeting": 0, "ehlo": 1, "reply": 2}


def identify(lines: Iterable[str]) -> Software | None:
    """The server product behind these reply lines, or None when nothing gives it away.

    Every line is tried against every signature; a greeting outranks an EHLO line, which
    outranks a reply text, so a hidden banner still leaves the product recognisable.
    """
    found: Software | None = None
    for line in lines:
        text = line.rstrip("\r\n")
        for signature in SIGNATURES:
            match = signature.pattern.search(text)
            if match is None:
                continue
            version = match.groupdict().get("version")
            candidate = Software(signature.key, version, text[:200], signature.source)
            if found is None or _ORDER[candidate.source] < _ORDER[found.source] or (
                candidate.key == found.key and candidate.version and not found.version
            ):
                found = candidate
            break
    return found


def received_lines(transcript: Iterable[str]) -> list[str]:
    """The server's lines from a transcript (``"  0.004 < 220 ..."`` -> ``"220 ..."``)."""
    out = []
    for line in transcript:
        _, marker, text = line.partition(" < ")
        if marker:
            out.append(text)
    return out


# -- advice per topic ------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """One piece of advice: the generic text (every product) and each product's own.

    ``generic`` is what a verdict function writes; ``lead`` starts each product's
    snippet (the why), ``servers`` holds the product's setting, ``tail`` ends it.
    """

    generic: str
    lead: str
    servers: dict[str, str] = field(default_factory=dict)
    tail: str = ""

    def for_server(self, key: str) -> str | None:
        setting = self.servers.get(key)
        if setting is None:
            return None
        return f"{self.lead} {NAMES[key]}: {setting}{self.tail}".strip()


TOPICS: dict[str, Topic] = {
    # -- FTPS ----------------------------------------------------------------------
    "ftps-enable-tls": Topic(
        generic=(
            "Enable explicit FTPS: IIS: bind a certificate in the site's FTP SSL Settings; "
            "vsftpd: ssl_enable=YES with rsa_cert_file; ProFTPD: mod_tls with TLSEngine on; "
            "pure-ftpd: --tls=1 (or 2/3) with /etc/ssl/private/pure-ftpd.pem."
        ),
        lead="Enable explicit FTPS:",
        servers={
            "iis": "bind a certificate in the site's FTP SSL Settings (SSL certificate).",
            "vsftpd": "ssl_enable=YES with rsa_cert_file (and rsa_private_key_file) in "
                      "vsftpd.conf.",
            "proftpd": "LoadModule mod_tls.c, TLSEngine on, TLSRSACertificateFile and "
                       "TLSRSACertificateKeyFile (Debian: Include /etc/proftpd/tls.conf).",
            "pure-ftpd": "--tls=1 (or 2/3; Debian: /etc/pure-ftpd/conf/TLS) with the "
                         "certificate in /etc/ssl/private/pure-ftpd.pem.",
        },
    ),
    "ftps-feat-auth-tls": Topic(
        generic=(
            "Clients that read FEAT (RFC 2389) before AUTH TLS do not learn that FTPS is "
            "offered; most send AUTH TLS anyway, which works here. List AUTH TLS in FEAT: "
            "IIS, ProFTPD (mod_tls) and pure-ftpd do once TLS is on; vsftpd 3.0.x lists it "
            "only with ssl_tlsv1=YES."
        ),
        lead="AUTH TLS works but FEAT does not list it:",
        servers={
            "vsftpd": "3.0.x lists AUTH TLS in FEAT only when ssl_tlsv1=YES (features.c), "
                      "and TLS 1.0 off (ssl_tlsv1=NO) hides it although AUTH TLS is "
                      "answered 234. ssl_tlsv1=YES lists it again but also allows TLS 1.0 "
                      "where the OpenSSL build permits it (run legacy-tls-refused after the "
                      "change); keeping TLS 1.0 off and this warning is the safer choice.",
        },
    ),
    "ftps-tls-versions": Topic(
        generic=(
            "Offer TLS 1.2/1.3 with modern ciphers: IIS: enable TLS 1.2 in SCHANNEL (IIS "
            "Crypto); vsftpd: ssl_tlsv1_2=YES and ssl_ciphers=HIGH; ProFTPD: TLSProtocol "
            "TLSv1.2 TLSv1.3; pure-ftpd: TLSCipherSuite / OpenSSL MinProtocol."
        ),
        lead="Offer TLS 1.2/1.3 with modern ciphers:",
        servers={
            "iis": "enable TLS 1.2 (Server Enabled=1 under SCHANNEL\\Protocols\\TLS 1.2, or "
                   "IIS Crypto) and reboot.",
            "vsftpd": "ssl_ciphers=HIGH, and ssl_tlsv1_2=YES where the build has the option "
                      "(Debian 12's 3.0.3 has not: TLS 1.2/1.3 come from OpenSSL).",
            "proftpd": "TLSProtocol TLSv1.2 TLSv1.3.",
            "pure-ftpd": "TLSCipherSuite (-J) and OpenSSL's MinProtocol in openssl.cnf.",
        },
    ),
    "ftps-legacy": Topic(
        generic=(
            "Disable TLS 1.0/1.1: IIS: SCHANNEL\\Protocols\\TLS 1.0 and TLS 1.1\\Server "
            "Enabled=0 (or IIS Crypto) and reboot; vsftpd: ssl_tlsv1=NO, ssl_tlsv1_1=NO, "
            "ssl_sslv3=NO; ProFTPD: TLSProtocol TLSv1.2 TLSv1.3; pure-ftpd: MinProtocol = "
            "TLSv1.2 in openssl.cnf."
        ),
        lead="Disable TLS 1.0/1.1:",
        servers={
            "iis": "SCHANNEL\\Protocols\\TLS 1.0 and TLS 1.1\\Server Enabled=0 (or IIS "
                   "Crypto), then reboot.",
            "vsftpd": "ssl_tlsv1=NO and ssl_sslv3=NO (and ssl_tlsv1_1=NO where the build "
                      "has the option).",
            "proftpd": "TLSProtocol TLSv1.2 TLSv1.3.",
            "pure-ftpd": "MinProtocol = TLSv1.2 in openssl.cnf.",
        },
    ),
    "ftps-require-control": Topic(
        generic=(
            "Refuse logins without TLS: IIS: FTP SSL Settings > 'Require SSL connections' "
            "(or Advanced > Control Channel: Require); vsftpd: force_local_logins_ssl=YES; "
            "ProFTPD: TLSRequired on (or ctrl); pure-ftpd: --tls=2 (or 3)."
        ),
        lead="Refuse logins without TLS:",
        servers={
            "iis": "FTP SSL Settings > 'Require SSL connections' (or Advanced > Control "
                   "Channel: Require).",
            "vsftpd": "force_local_logins_ssl=YES.",
            "proftpd": "TLSRequired on (or ctrl).",
            "pure-ftpd": "--tls=2 (or 3).",
        },
    ),
    "ftps-allow-control": Topic(
        generic=(
            "The target is expected to ALLOW plaintext login but the server refuses it: IIS: "
            "'Allow SSL connections'; vsftpd: force_local_logins_ssl=NO; ProFTPD: "
            "TLSRequired off; pure-ftpd: --tls=1. Or set the target's policy to 'require'."
        ),
        lead="The target is expected to ALLOW plaintext login but the server refuses it:",
        servers={
            "iis": "FTP SSL Settings > 'Allow SSL connections'.",
            "vsftpd": "force_local_logins_ssl=NO.",
            "proftpd": "TLSRequired off.",
            "pure-ftpd": "--tls=1.",
        },
        tail=" Or set the target's policy to 'require'.",
    ),
    "ftps-require-data": Topic(
        generic=(
            "Refuse unprotected data connections: IIS: FTP SSL Settings > 'Require SSL "
            "connections' (or Advanced > Data Channel: Require); vsftpd: "
            "force_local_data_ssl=YES; ProFTPD: TLSRequired on (or data); pure-ftpd: --tls=3."
        ),
        lead="Refuse unprotected data connections:",
        servers={
            "iis": "FTP SSL Settings > 'Require SSL connections' (or Advanced > Data Channel: "
                   "Require).",
            "vsftpd": "force_local_data_ssl=YES.",
            "proftpd": "TLSRequired on (or data).",
            "pure-ftpd": "--tls=3.",
        },
    ),
    "ftps-allow-data": Topic(
        generic=(
            "The target is expected to ALLOW PROT C but the server refuses it: IIS: Advanced "
            "SSL Policy > Data Channel: Allow; vsftpd: force_local_data_ssl=NO; ProFTPD: "
            "TLSRequired ctrl; pure-ftpd: --tls=1 or 2. Or set the target's policy to "
            "'require'."
        ),
        lead="The target is expected to ALLOW PROT C but the server refuses it:",
        servers={
            "iis": "Advanced SSL Policy > Data Channel: Allow.",
            "vsftpd": "force_local_data_ssl=NO.",
            "proftpd": "TLSRequired ctrl.",
            "pure-ftpd": "--tls=1 or 2.",
        },
        tail=" Or set the target's policy to 'require'.",
    ),
    "ftps-pasv-address": Topic(
        generic=(
            "Set the external address the server announces in PASV: IIS: FTP Firewall "
            "Support > 'External IP Address of Firewall'; vsftpd: pasv_address=<public IP> "
            "(and pasv_addr_resolve=NO); ProFTPD: MasqueradeAddress <public IP>; pure-ftpd: "
            "-P <public IP> (ForcePassiveIP). Or correct the target's passive_address."
        ),
        lead="Set the external address the server announces in PASV:",
        servers={
            "iis": "FTP Firewall Support > 'External IP Address of Firewall'.",
            "vsftpd": "pasv_address=<public IP> (and pasv_addr_resolve=NO).",
            "proftpd": "MasqueradeAddress <public IP>.",
            "pure-ftpd": "-P <public IP> (ForcePassiveIP).",
        },
        tail=" Or correct the target's passive_address.",
    ),
    "ftps-pasv-ports": Topic(
        generic=(
            "Restrict and forward the passive port range: IIS: FTP Firewall Support > 'Data "
            "Channel Port Range' (server level); vsftpd: pasv_min_port/pasv_max_port; "
            "ProFTPD: PassivePorts; pure-ftpd: -p <low>:<high>. Open the same range on every "
            "firewall and NAT in between."
        ),
        lead="Restrict and forward the passive port range:",
        servers={
            "iis": "FTP Firewall Support > 'Data Channel Port Range' (server level).",
            "vsftpd": "pasv_min_port/pasv_max_port.",
            "proftpd": "PassivePorts <low> <high>.",
            "pure-ftpd": "-p <low>:<high> (PassivePortRange).",
        },
        tail=" Open the same range on every firewall and NAT in between.",
    ),
    "ftps-reuse-support": Topic(
        generic=(
            "Let data connections resume the control session: keep the TLS session cache and "
            "tickets enabled (ProFTPD: TLSSessionCache; vsftpd and IIS do by default); check "
            "that no proxy or load balancer terminates the data connection separately."
        ),
        lead="Let data connections resume the control session:",
        servers={
            "proftpd": "TLSSessionCache, and no TLSOptions that switch tickets off.",
            "pure-ftpd": "no run-time option controls its session cache (src/tls.c sets it "
                         "up itself); transfers still work with a full handshake on each "
                         "data connection. Check that no proxy or load balancer terminates "
                         "the data connection separately.",
        },
    ),
    "ftps-reuse-require": Topic(
        generic=(
            "Require session reuse so a third party cannot hijack the data connection: "
            "vsftpd: require_ssl_reuse=YES; ProFTPD: remove 'TLSOptions "
            "NoSessionReuseRequired'; FileZilla Server: 'Require TLS session resumption on "
            "data connection'. IIS cannot enforce it."
        ),
        lead="Require session reuse so a third party cannot hijack the data connection:",
        servers={
            "vsftpd": "require_ssl_reuse=YES.",
            "proftpd": "remove 'TLSOptions NoSessionReuseRequired'.",
            "filezilla": "'Require TLS session resumption on data connection'.",
            "pure-ftpd": "only at build time (ONLY_ACCEPT_REUSED_SSL_SESSIONS in src/tls.c, "
                         "off by default).",
            "iis": "it cannot enforce it; restrict the passive range to the clients' "
                   "addresses on the firewall instead.",
        },
    ),
    "ftps-login": Topic(
        generic=(
            "Check the account: IIS: FTP Authentication (Basic enabled) and FTP Authorization "
            "Rules for the user, plus NTFS rights on the folder; vsftpd: local_enable=YES and "
            "userlist/chroot settings; ProFTPD: <Limit LOGIN> and AuthOrder; pure-ftpd: "
            "pure-pw useradd + pure-pw mkdb."
        ),
        lead="Check the account:",
        servers={
            "iis": "FTP Authentication (Basic enabled) and FTP Authorization Rules for the "
                   "user, plus NTFS rights on the folder.",
            "vsftpd": "local_enable=YES, the userlist and chroot settings, and the PAM "
                      "service (pam_service_name).",
            "proftpd": "<Limit LOGIN> and AuthOrder.",
            "pure-ftpd": "pure-pw useradd + pure-pw mkdb (or the authentication backend "
                         "it was started with).",
        },
    ),
    "ftps-renew": Topic(
        generic=(
            "Renew the certificate and bind the new one (IIS: FTP SSL Settings > SSL "
            "Certificate; vsftpd: rsa_cert_file; ProFTPD: TLSRSACertificateFile; pure-ftpd: "
            "/etc/ssl/private/pure-ftpd.pem)."
        ),
        lead="Renew the certificate and bind the new one:",
        servers={
            "iis": "FTP SSL Settings > SSL Certificate.",
            "vsftpd": "rsa_cert_file (then restart vsftpd).",
            "proftpd": "TLSRSACertificateFile (or TLSECCertificateFile).",
            "pure-ftpd": "/etc/ssl/private/pure-ftpd.pem.",
        },
    ),
    "cert-install": Topic(
        generic=(
            "Install a new certificate and bind it: IIS Manager > site > FTP SSL Settings > "
            "SSL Certificate; vsftpd rsa_cert_file/rsa_private_key_file; ProFTPD "
            "TLSRSACertificateFile/TLSECCertificateFile; pure-ftpd "
            "/etc/ssl/private/pure-ftpd.pem."
        ),
        lead="Install a new certificate and bind it:",
        servers={
            "iis": "IIS Manager > site > FTP SSL Settings > SSL Certificate.",
            "vsftpd": "rsa_cert_file/rsa_private_key_file.",
            "proftpd": "TLSRSACertificateFile/TLSECCertificateFile.",
            "pure-ftpd": "/etc/ssl/private/pure-ftpd.pem.",
            "postfix": "smtpd_tls_chain_files (or smtpd_tls_cert_file/smtpd_tls_key_file), "
                       "then postfix reload.",
            "exim": "tls_certificate/tls_privatekey (Debian: MAIN_TLS_CERTIFICATE, "
                    "MAIN_TLS_PRIVATEKEY).",
            "sendmail": "confSERVER_CERT/confSERVER_KEY in sendmail.mc.",
            "exchange": "Import-ExchangeCertificate, then Enable-ExchangeCertificate "
                        "-Services SMTP.",
        },
    ),
    "ftps-421": Topic(
        generic=(
            "421: the server refuses service (too many connections, host not allowed, "
            "shutting down); check connection limits (IIS: Connections > Max Connections; "
            "vsftpd: max_clients/max_per_ip; ProFTPD: MaxClients; pure-ftpd: -c/-C) and IP "
            "restrictions."
        ),
        lead="421: the server refuses service (too many connections, host not allowed, "
             "shutting down); check connection limits and IP restrictions.",
        servers={
            "iis": "Connections > Max Connections, and IP Address and Domain Restrictions.",
            "vsftpd": "max_clients/max_per_ip, and tcp_wrappers.",
            "proftpd": "MaxClients, MaxClientsPerHost.",
            "pure-ftpd": "-c (MaxClientsNumber) and -C (MaxClientsPerIP).",
        },
    ),
    # -- SMTP ----------------------------------------------------------------------
    "smtp-starttls": Topic(
        generic=(
            "Configure a certificate and enable STARTTLS: Postfix: smtpd_tls_chain_files "
            "and smtpd_tls_security_level = may (encrypt on the submission service); Exim: "
            "tls_certificate, tls_privatekey and tls_advertise_hosts = * (Debian: "
            "MAIN_TLS_ENABLE = yes); sendmail: confSERVER_CERT and confSERVER_KEY in "
            "sendmail.mc; Exchange: a certificate enabled for SMTP "
            "(Enable-ExchangeCertificate -Services SMTP)."
        ),
        lead="Configure a certificate and enable STARTTLS:",
        servers={
            "postfix": "smtpd_tls_chain_files (or smtpd_tls_cert_file/smtpd_tls_key_file) "
                       "and smtpd_tls_security_level = may (encrypt on the submission "
                       "service in master.cf).",
            "exim": "tls_certificate, tls_privatekey and tls_advertise_hosts = * (Debian: "
                    "MAIN_TLS_ENABLE = yes, MAIN_TLS_CERTIFICATE, MAIN_TLS_PRIVATEKEY).",
            "sendmail": "define(`confSERVER_CERT', ...) and define(`confSERVER_KEY', ...) "
                        "in sendmail.mc, then rebuild sendmail.cf.",
            "exchange": "Enable-ExchangeCertificate -Services SMTP with a certificate for "
                        "the connector's FQDN.",
        },
    ),
    "smtp-auth-after-tls": Topic(
        generic=(
            "Offer AUTH only after STARTTLS (Postfix: smtpd_tls_auth_only = yes; Exim: "
            "server_advertise_condition = ${if def:tls_in_cipher} on the PLAIN and LOGIN "
            "authenticators; sendmail: define(`confAUTH_OPTIONS', `A p'); Exchange: "
            "AuthMechanism with BasicAuthRequireTLS; aiosmtpd: auth_require_tls=True)."
        ),
        lead="Offer AUTH only after STARTTLS:",
        servers={
            "postfix": "smtpd_tls_auth_only = yes (main.cf, or -o in the master.cf "
                       "submission service).",
            "exim": "server_advertise_condition = ${if def:tls_in_cipher} on the PLAIN and "
                    "LOGIN authenticators (Debian: remove AUTH_SERVER_ALLOW_NOTLS_PASSWORDS).",
            "sendmail": "define(`confAUTH_OPTIONS', `A p') in sendmail.mc (p: no plaintext "
                        "mechanisms without TLS).",
            "exchange": "Set-ReceiveConnector -AuthMechanism Tls,BasicAuth,"
                        "BasicAuthRequireTLS.",
        },
    ),
    "smtp-mail-before-auth": Topic(
        generic=(
            "Refuse MAIL before AUTH on the submission port with 530 5.7.0 (RFC 6409 sec. "
            "4.3, RFC 4954 sec. 6): Postfix master.cf submission service: -o "
            "smtpd_sender_restrictions=permit_sasl_authenticated,reject -o "
            "smtpd_delay_reject=no -o reject_code=530 (with the default "
            "smtpd_delay_reject=yes Postfix refuses only at RCPT); Exim: in the MAIL ACL, "
            "deny condition = ${if eq{$received_port}{587}} !authenticated = * message = "
            "530 5.7.0 Authentication required; sendmail: M=Ea on the submission "
            "DAEMON_OPTIONS; Exchange: no anonymous permission on the client receive "
            "connector."
        ),
        lead="Refuse MAIL before AUTH with 530 5.7.0 (RFC 6409 sec. 4.3, RFC 4954 sec. 6):",
        servers={
            "postfix": "in the master.cf submission service, -o "
                       "smtpd_sender_restrictions=permit_sasl_authenticated,reject -o "
                       "smtpd_delay_reject=no (with the default smtpd_delay_reject=yes "
                       "Postfix refuses only at RCPT) and -o reject_code=530 (Postfix "
                       "rejects with 554 by default).",
            "exim": "in the MAIL ACL (acl_smtp_mail; Debian: acl_check_mail), first: deny "
                    "condition = ${if eq{$received_port}{587}} !authenticated = * message = "
                    "530 5.7.0 Authentication required (Debian's configuration uses one ACL "
                    "for every port, so 587 takes what 25 takes).",
            "sendmail": "M=Ea on the submission DAEMON_OPTIONS ('a' requires AUTH), as "
                        "Debian's sendmail.mc ships it.",
            "exchange": "remove AnonymousUsers from the client receive connector's "
                        "PermissionGroups.",
        },
    ),
    "smtp-helo-required": Topic(
        generic=(
            "Hardening, not required: make the server refuse MAIL without EHLO/HELO "
            "(Postfix: smtpd_helo_required = yes; Exim: in the MAIL ACL, deny condition = "
            "${if !def:sender_helo_name} message = 503 5.5.1 send HELO/EHLO first; "
            "sendmail: needmailhelo in confPRIVACY_FLAGS). Then MAIL after STARTTLS without "
            "a new EHLO shows whether the pre-TLS EHLO was forgotten (RFC 3207 sec. 4.2)."
        ),
        lead="Hardening, not required: refuse MAIL without EHLO/HELO, so that MAIL after "
             "STARTTLS without a new EHLO shows whether the pre-TLS EHLO was forgotten "
             "(RFC 3207 sec. 4.2).",
        servers={
            "postfix": "smtpd_helo_required = yes (main.cf, or -o in the master.cf service).",
            "exim": "in the MAIL ACL, deny condition = ${if !def:sender_helo_name} message = "
                    "503 5.5.1 send HELO/EHLO first.",
            "sendmail": "add needmailhelo to confPRIVACY_FLAGS (PrivacyOptions).",
        },
    ),
    "smtp-relay": Topic(
        generic=(
            "Refuse relaying for unauthenticated clients (Postfix: smtpd_relay_restrictions "
            "= permit_sasl_authenticated, reject_unauth_destination; allow_percent_hack = "
            "no; Exim: relay_from_hosts only your own networks, and the RCPT ACL's require "
            "domains = +local_domains : +relay_to_domains; sendmail: no "
            "FEATURE(`promiscuous_relay') and RELAY in the access database only for your "
            "networks; Exchange: no ms-Exch-SMTP-Accept-Any-Recipient for anonymous users)."
        ),
        lead="Refuse relaying for unauthenticated clients:",
        servers={
            "postfix": "smtpd_relay_restrictions = permit_sasl_authenticated, "
                       "reject_unauth_destination; mynetworks only your own networks; "
                       "allow_percent_hack = no.",
            "exim": "relay_from_hosts only your own networks, and in the RCPT ACL require "
                    "domains = +local_domains : +relay_to_domains.",
            "sendmail": "no FEATURE(`promiscuous_relay') or FEATURE(`relay_entire_domain'); "
                        "RELAY in the access database only for your own networks.",
            "exchange": "remove ms-Exch-SMTP-Accept-Any-Recipient from Anonymous Logon on "
                        "the receive connectors.",
        },
    ),
    "smtp-extensions": Topic(
        generic=(
            "Offer the missing extensions; they are on by default in the common servers, so "
            "look for what removes them: Postfix: smtpd_discard_ehlo_keywords (main.cf, or "
            "-o in the master.cf service); Exim: pipelining_advertise_hosts, accept_8bitmime; "
            "Exchange: the receive connector's EnhancedStatusCodesEnabled, PipeliningEnabled, "
            "EightBitMimeEnabled, DeliveryStatusNotificationEnabled; or a proxy in front "
            "that filters EHLO."
        ),
        lead="Offer the missing extensions:",
        servers={
            "postfix": "they are on by default; look at smtpd_discard_ehlo_keywords (main.cf, "
                       "or -o in the master.cf service) and at a proxy in front that filters "
                       "EHLO.",
            "exim": "DSN: dsn_advertise_hosts = * (unset by default); PIPELINING: "
                    "pipelining_advertise_hosts; 8BITMIME: accept_8bitmime; Exim does not "
                    "implement ENHANCEDSTATUSCODES, so that one stays missing.",
            "exchange": "the receive connector's EnhancedStatusCodesEnabled, "
                        "PipeliningEnabled, EightBitMimeEnabled, "
                        "DeliveryStatusNotificationEnabled.",
        },
    ),
    "smtp-etrn": Topic(
        generic=(
            "Do not offer ETRN on a submission port (RFC 6409 sec. 7: MUST NOT): Postfix: "
            "-o smtpd_discard_ehlo_keywords=etrn and -o smtpd_etrn_restrictions=reject on the "
            "master.cf submission service; sendmail: M=E on the submission DAEMON_OPTIONS."
        ),
        lead="Do not offer ETRN on a submission port (RFC 6409 sec. 7: MUST NOT):",
        servers={
            "postfix": "-o smtpd_discard_ehlo_keywords=etrn and -o "
                       "smtpd_etrn_restrictions=reject on the master.cf submission service "
                       "(Postfix offers ETRN on every smtpd by default).",
            "sendmail": "M=E on the submission DAEMON_OPTIONS.",
        },
    ),
    "smtp-auth-missing": Topic(
        generic=(
            "A submission server MUST support AUTH (RFC 6409 sec. 4.3 and 7, RFC 4954): "
            "enable SASL inside TLS on this port (Postfix master.cf: -o "
            "smtpd_sasl_auth_enable=yes; Exim: an authenticator with "
            "server_advertise_condition = ${if def:tls_in_cipher}; Exchange: the client "
            "receive connector with Basic authentication after TLS)."
        ),
        lead="A submission server MUST support AUTH (RFC 6409 sec. 4.3 and 7, RFC 4954): "
             "enable SASL inside TLS on this port:",
        servers={
            "postfix": "-o smtpd_sasl_auth_enable=yes on the master.cf submission service, "
                       "with smtpd_sasl_type/smtpd_sasl_path (e.g. dovecot, private/auth).",
            "exim": "a plaintext (PLAIN/LOGIN) or dovecot authenticator with "
                    "server_advertise_condition = ${if def:tls_in_cipher}.",
            "sendmail": "SASL (Cyrus saslauthd) with confAUTH_MECHANISMS and "
                        "TRUST_AUTH_MECH, e.g. `LOGIN PLAIN'.",
            "exchange": "the client receive connector with Basic authentication after TLS.",
        },
    ),
    "smtp-auth-login-only": Topic(
        generic=(
            "Offer AUTH PLAIN (RFC 4616, the standard mechanism) next to LOGIN: Postfix with "
            "Dovecot: auth_mechanisms = plain login; Exim: a plaintext authenticator with "
            "public_name = PLAIN; sendmail: PLAIN in confAUTH_MECHANISMS and TRUST_AUTH_MECH. "
            "Clients that use LOGIN keep working."
        ),
        lead="Offer AUTH PLAIN (RFC 4616, the standard mechanism) next to LOGIN:",
        servers={
            "postfix": "with Dovecot SASL, auth_mechanisms = plain login in dovecot.conf.",
            "exim": "a plaintext authenticator with public_name = PLAIN.",
            "sendmail": "PLAIN in confAUTH_MECHANISMS and TRUST_AUTH_MECH.",
            "exchange": "Exchange receive connectors offer LOGIN (Basic) but no PLAIN; "
                        "nothing to change, clients use LOGIN.",
        },
    ),
}


def generic(topic: str) -> str:
    """The advice of ``topic`` in every product's words (what verdict functions write)."""
    return TOPICS[topic].generic


def advice(topic: str, software: Software | str | None) -> str:
    """The advice of ``topic`` for this server: its own snippet, else the generic text."""
    key = software.key if isinstance(software, Software) else software
    if key is not None:
        specific = TOPICS[topic].for_server(key)
        if specific is not None:
            return specific
    return TOPICS[topic].generic


def localize(text: str, software: Software | None) -> str:
    """``text`` with every generic topic text in it replaced by the server's own snippet.

    Longer generic texts are replaced first, so a topic quoted inside another
    (the passive range inside "the data port does not answer") is not split.
    """
    if software is None or not text:
        return text
    for topic in sorted(TOPICS.values(), key=lambda t: len(t.generic), reverse=True):
        if topic.generic in text:
            specific = topic.for_server(software.key)
            if specific is not None:
                text = text.replace(topic.generic, specific)
    return text


def apply(result: Any, transcript: Iterable[str], extra: Iterable[str] = ()) -> None:
    """Identify the server from a check's transcript (and ``extra`` lines such as the
    banner); record ``server_software`` and localize the advice. Mutates ``result``."""
    lines = [*extra, *received_lines(transcript)]
    software = identify(lines)
    if software is None:
        return
    result.evidence["server_software"] = software.to_dict()
    result.advice = localize(result.advice, software)


__all__ = [
    "NAMES",
    "SIGNATURES",
    "TOPICS",
    "Software",
    "Topic",
    "advice",
    "apply",
    "generic",
    "identify",
    "localize",
    "received_lines",
]
