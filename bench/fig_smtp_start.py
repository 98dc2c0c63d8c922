"""Figure: an embedded submission server from nothing to a client's STARTTLS + AUTH.

Ours is :class:`harness.lab.smtp.SMTPLabServer` in the ``submission`` role; the peer is
smtpdfix's ``SMTPDFix`` (what its ``smtpd`` fixture runs) with STARTTLS and enforced AUTH.
Both get the same certificate (so smtpdfix's own RSA certificate generation, which its
fixture does once per session, is not counted) and the same client: smtplib, EHLO,
STARTTLS verifying the lab CA, EHLO, AUTH LOGIN, QUIT (LOGIN, because smtpdfix's AUTH
PLAIN splits the response on whitespace and so refuses an RFC 4616 one). The figure is
the time until AUTH succeeded; the stop that follows is measured and given in the notes.
"""

from __future__ import annotations

import logging
import smtplib
import time

from common import (
    LOOPBACK,
    BenchError,
    Context,
    Row,
    client_tls_context,
    failure,
    free_port,
    interleave,
    random_password,
)
from fig_ftps_start import Parts

FIGURE = "smtp-start"
TITLE = "embedded submission server: start until STARTTLS + AUTH succeeds"
USER = "bench"


class _LoginDataNotice(logging.Filter):
    """aiosmtpd warns on every successful AUTH of a stock Session (smtpdfix's); the lab's
    own Session does not. Neither side's log output is what is measured."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Session.login_data is deprecated")


def starttls_auth(port: int, ca_file: object, password: str) -> None:
    """EHLO, STARTTLS (verified), EHLO, AUTH LOGIN, QUIT; raise unless each succeeds."""
    context = client_tls_context(ca_file)  # type: ignore[arg-type]
    with smtplib.SMTP(LOOPBACK, port, local_hostname="bench.ftps-lab.test", timeout=5.0) as smtp:
        smtp.ehlo()
        code, text = smtp.starttls(context=context)
        if code != 220:
            raise BenchError(f"STARTTLS answered {code} {text!r}")
        smtp.ehlo()
        smtp.user, smtp.password = USER, password
        code, text = smtp.auth("LOGIN", smtp.auth_login)
        if code != 235:
            raise BenchError(f"AUTH LOGIN answered {code} {text!r}")
        smtp.quit()


def run(ctx: Context) -> list[Row]:
    row = Row(
        figure=FIGURE,
        name=TITLE,
        ours_label="harness.lab.smtp.SMTPLabServer",
        peer_label="smtpdfix SMTPDFix (STARTTLS, AUTH)",
        unit="ms",
        better="lower",
    )
    try:
        from smtpdfix import Config, SMTPDFix
    except ImportError:
        row.skip = "smtpdfix is not installed (pip install smtpdfix)"
        return [row]
    from harness.lab.smtp import SMTPLabServer, SMTPServerConfig

    mail_log = logging.getLogger("mail.log")
    if not any(isinstance(f, _LoginDataNotice) for f in mail_log.filters):
        mail_log.addFilter(_LoginDataNotice())
    pki = ctx.pki()
    files = pki.files("lab")
    password = random_password()
    ours_parts, peer_parts = Parts(), Parts()

    def ours() -> float:
        begin = time.perf_counter()
        server = SMTPLabServer(
            SMTPServerConfig(
                role="submission",
                users={USER: password},
                cert_file=files.cert,
                key_file=files.key,
            )
        )
        server.start()
        try:
            starttls_auth(server.port, pki.ca_file, password)
        finally:
            ready = time.perf_counter()
            server.stop()
        end = time.perf_counter()
        server.raise_errors()
        ours_parts.start.append(ready - begin)
        ours_parts.stop.append(end - ready)
        return (ready - begin) * 1000.0

    def peer() -> float:
        begin = time.perf_counter()
        config = Config()
        config.host = LOOPBACK
        config.use_starttls = True
        config.ssl_cert_files = (str(files.cert), str(files.key))
        config.enforce_auth = True
        config.login_username = USER
        config.login_password = password
        fixture = SMTPDFix(hostname=LOOPBACK, port=free_port(), config=config)
        controller = fixture.__enter__()
        try:
            starttls_auth(controller.port, pki.ca_file, password)
        finally:
            ready = time.perf_counter()
            fixture.__exit__(None, None, None)
        end = time.perf_counter()
        peer_parts.start.append(ready - begin)
        peer_parts.stop.append(end - ready)
        return (ready - begin) * 1000.0

    try:
        samples = interleave({"ours": ours, "peer": peer}, ctx.repeat, ctx.warmup)
        row.ours, row.peer = samples["ours"], samples["peer"]
        what = "STARTTLS + AUTH"
        row.notes += [
            ours_parts.note("ours", ctx.repeat, what),
            peer_parts.note("peer", ctx.repeat, what),
        ]
    except Exception as exc:
        failure(row, exc)
    return [row]
