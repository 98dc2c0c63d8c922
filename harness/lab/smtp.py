"""Embedded mail lab: aiosmtpd servers in the submission, submissions and MTA roles.

Each server runs on its own asyncio loop in a background thread, binds 127.0.0.1 port 0
and is only handed out after a real client has read its 220 greeting. aiosmtpd's own
``Controller`` is not used: with ``port=0`` its self-connect trigger fails.

aiosmtpd 1.4.6 needs three corrections for a faithful lab, made in :class:`LabSMTP`:

* with implicit TLS (``ssl=`` on ``create_server``) it refuses AUTH with 538, because
  only STARTTLS counts as TLS for it; the session is marked as TLS when it starts;
* AUTH before TLS is answered 538; a submission server is expected to say 530;
* it offers AUTH to any role; the MTA role must offer none.

STARTTLS injection (CVE-2011-0411) and the post-STARTTLS state reset are handled by
aiosmtpd itself (plaintext buffer cleared, session recreated after the handshake);
tests prove both. :class:`SMTPServerConfig` has switches that deliberately break each
property so that every check can be shown to fail against a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import ssl
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import (
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from harness.lab.aioloop import abort_transport, tcp_transport
from harness.lab.mailbox import Mailbox
from harness.lab.serverthread import LabServerError, LabStartError
from harness.protocols.tls import TLS_VERSIONS
from harness.protocols.tlspolicy import lab_readiness_context, lab_server_policy, policy_context

LAB_DOMAIN = "ftps-lab.test"
ROLES = ("submission", "submissions", "mta")
_ROLE_ALIASES = {"smtp": "mta"}
# The switches that make a lab server misbehave on purpose (scenario ``faults``).
FAULT_OPTIONS = (
    "starttls",
    "offer_auth_before_tls",
    "auth_required",
    "open_relay",
    "vulnerable_starttls_injection",
    "no_state_reset",
    "close_after_starttls",
    "refuse_service",
    "ehlo_enabled",
    "accept_any_password",
    "relay_routing_loophole",
    "drop_messages",
)
# Characters that turn a local part into a route to somewhere else.
_ROUTING_CHARACTERS = ("@", "%", "!", ":")


@dataclass
class SMTPServerConfig:
    """Everything that shapes one lab mail server, including deliberate faults.

    ``role`` is ``submission`` (587: STARTTLS, AUTH after TLS, AUTH required),
    ``submissions`` (465: implicit TLS, AUTH required) or ``mta`` (25: accepts mail
    for ``domain`` only, no AUTH). The fault switches default to a correct server.
    """

    role: str = "submission"
    host: str = "127.0.0.1"
    port: int = 0
    hostname: str = f"mail.{LAB_DOMAIN}"
    domain: str = LAB_DOMAIN
    users: dict[str, str] = field(default_factory=dict, repr=False)
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    tls_min_version: str = "1.2"
    tls_max_version: str | None = None
    mailbox_dir: str | Path | None = None
    data_size_limit: int = 10 * 1024 * 1024
    smtputf8: bool = True
    session_timeout: float = 30.0
    handshake_timeout: float = 5.0
    # Deliberate faults, each of which one check must catch.
    starttls: bool = True
    offer_auth_before_tls: bool = False
    auth_required: bool | None = None  # None: True for submission roles, False for mta
    open_relay: bool = False
    vulnerable_starttls_injection: bool = False
    no_state_reset: bool = False
    close_after_starttls: bool = False
    refuse_service: bool = False  # greet with 554 and hang up
    ehlo_enabled: bool = True  # False: EHLO answered 502 (HELO only)
    accept_any_password: bool = False
    relay_routing_loophole: bool = False  # trusts the domain, ignores % ! "@" in local parts
    drop_messages: bool = False  # answers 250 to DATA but stores nothing
    # Not a fault: SASL mechanisms left out of AUTH, e.g. ("PLAIN",) for a server that
    # offers LOGIN only, as Exchange and Office 365 do.
    auth_exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.role = _ROLE_ALIASES.get(self.role, self.role)

    @property
    def implicit_tls(self) -> bool:
        return self.role == "submissions"

    @property
    def offers_auth(self) -> bool:
        return self.role != "mta"

    @property
    def requires_auth(self) -> bool:
        if self.auth_required is not None:
            return self.auth_required
        return self.offers_auth

    @property
    def has_certificate(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    @property
    def offers_starttls(self) -> bool:
        return self.starttls and not self.implicit_tls and self.has_certificate

    def validate(self) -> None:
        """Refuse configurations that cannot run, before any thread starts."""
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; use one of {', '.join(ROLES)}")
        for name in ("tls_min_version", "tls_max_version"):
            value = getattr(self, name)
            if value is not None and value not in TLS_VERSIONS:
                raise ValueError(f"{name} must be one of {', '.join(TLS_VERSIONS)}")
        if self.implicit_tls and not self.has_certificate:
            raise ValueError("the submissions role needs cert_file and key_file")
        if self.role == "submission" and self.starttls and not self.has_certificate:
            raise ValueError("STARTTLS needs cert_file and key_file (or starttls=False)")
        if self.offers_auth and not self.users:
            raise ValueError("no users configured; the lab never accepts anonymous submission")
        if not self.hostname:
            raise ValueError("hostname must be set (aiosmtpd would call getfqdn())")

    def server_context(self) -> ssl.SSLContext | None:
        """The lab server TLS policy (TLS 1.2+, ECDHE with AEAD suites only), same as FTPS.

        Never the interpreter's default list (Debian's python3 would add CBC and RSA key
        exchange); ``tls_min_version`` 1.0/1.1 builds a deliberately legacy server.
        """
        if not self.has_certificate:
            return None
        policy = lab_server_policy(self.tls_min_version, self.tls_max_version)
        context = policy_context(ssl.PROTOCOL_TLS_SERVER, policy)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def with_faults(self, faults: dict[str, Any]) -> SMTPServerConfig:
        """A copy with the named fault switches set; unknown names are refused."""
        unknown = sorted(set(faults) - set(FAULT_OPTIONS))
        if unknown:
            raise ValueError(f"unknown SMTP lab fault(s): {', '.join(unknown)}")
        return replace(self, **faults)


def is_local_address(address: str, domain: str) -> bool:
    """True for ``local@domain`` with a plain local part (no route hidden inside)."""
    local, at, addr_domain = address.rpartition("@")
    if not at or addr_domain.lower().rstrip(".") != domain.lower():
        return False
    local = local.strip('"')
    return bool(local) and not any(char in local for char in _ROUTING_CHARACTERS)


class _ImplicitTLS:
    """Stands in for aiosmtpd's STARTTLS protocol object on an implicit-TLS session."""

    def __bool__(self) -> bool:
        return True


_IMPLICIT_TLS: Any = _ImplicitTLS()


class LabSession(Session):
    """aiosmtpd's Session without the deprecation log line on every successful AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class LabHandler:
    """aiosmtpd handler: relay policy, delivery into the mailbox, authentication."""

    def __init__(
        self,
        config: SMTPServerConfig,
        mailbox: Mailbox,
        errors: list[str],
        tls_failures: list[str],
    ) -> None:
        self.config = config
        self.mailbox = mailbox
        self.errors = errors
        self.tls_failures = tls_failures

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if not self.config.ehlo_enabled:
            return ["502 5.5.1 EHLO not supported"]
        session.host_name = hostname
        if not self.config.offers_auth:
            responses = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = (
            address.rpartition("@")[2].lower() == self.config.domain
            if self.config.relay_routing_loophole
            else is_local_address(address, self.config.domain)
        )
        allowed = bool(session.authenticated) or self.config.open_relay or local
        if not allowed:
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        if self.config.drop_messages:
            return "250 2.0.0 OK queued as dropped"
        peer = session.peer
        stored = self.mailbox.deliver(
            envelope.mail_from or "",
            envelope.rcpt_tos,
            envelope.original_content,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or ""),
            user=session.auth_data if isinstance(session.auth_data, str) else None,
            tls=bool(getattr(server, "_tls_protocol", None)),
        )
        return f"250 2.0.0 OK queued as {stored.id}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):  # the peer broke the handshake, not us
            cause = error.__cause__
            self.tls_failures.append(f"{type(cause).__name__}: {cause}")
            return "454 4.7.0 TLS handshake failed"
        self.errors.append(f"session error: {type(error).__name__}: {error}")
        return "451 4.3.0 Local error in processing"

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            user = auth_data.login.decode()
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        expected = self.config.users.get(user)
        given = bytes(auth_data.password)
        valid = expected is not None and hmac.compare_digest(expected.encode(), given)
        if not valid and not (self.config.accept_any_password and expected is not None):
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


class LabSMTP(SMTP):
    """aiosmtpd's SMTP with the lab's roles, TLS handling and optional faults."""

    def __init__(
        self,
        handler: LabHandler,
        *,
        config: SMTPServerConfig,
        tls_context: ssl.SSLContext | None,
        loop: asyncio.AbstractEventLoop,
        sessions: set[LabSMTP],
    ) -> None:
        super().__init__(
            handler,
            hostname=config.hostname,
            ident="ESMTP ftps-lab",
            tls_context=tls_context if config.offers_starttls else None,
            auth_required=False,  # set below, to skip aiosmtpd's warning for the fault mode
            auth_require_tls=not config.offer_auth_before_tls,
            auth_exclude_mechanism=list(config.auth_exclude),
            authenticator=handler.authenticate,
            data_size_limit=config.data_size_limit,
            enable_SMTPUTF8=config.smtputf8,
            decode_data=False,
            timeout=config.session_timeout,
            loop=loop,
        )
        self._auth_required = config.requires_auth
        self.lab_config = config
        self._sessions = sessions
        self.tcp_transport: asyncio.BaseTransport | None = None  # what stop() aborts

    def _create_session(self) -> Session:
        return LabSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        after_starttls = self.transport is not None and self._original_transport is not None
        if not after_starttls:
            super().connection_made(transport)
            self.tcp_transport = tcp_transport(transport)  # under implicit TLS, too
            self._sessions.add(self)
            if self.lab_config.implicit_tls:
                self._tls_protocol = _IMPLICIT_TLS
            return
        config = self.lab_config
        before = self.session
        leftover = bytes(self._reader._buffer) if config.vulnerable_starttls_injection else b""
        super().connection_made(transport)
        if leftover:  # the CVE-2011-0411 fault: plaintext pipelined after STARTTLS survives
            self._reader._buffer.extend(leftover)
        if config.no_state_reset and before is not None and self.session is not None:
            self.session.host_name = before.host_name
            self.session.extended_smtp = before.extended_smtp
            self.session.authenticated = before.authenticated
            self.session.auth_data = before.auth_data

    async def _handle_client(self) -> None:
        if self.lab_config.refuse_service:
            await self.push("554 5.3.2 Service refused by configuration")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        self._sessions.discard(self)
        super().connection_lost(error)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None and not arg:
            await self.push("503 5.5.1 TLS already active")
            return
        if self.lab_config.close_after_starttls and self.tls_context and not arg:
            await self.push("220 2.0.0 Ready to start TLS")
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.lab_config.offers_auth:
            await self.push("503 5.5.1 Error: authentication not enabled")
            return
        if self._auth_require_tls and not self._tls_protocol:
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
            return
        await super().smtp_AUTH(arg)


class SMTPLabServer:
    """One running lab mail server; use as a context manager.

    ``errors`` collects exceptions raised inside the server (handler errors, loop
    errors) so tests can assert there were none; ``tls_failures`` lists STARTTLS
    handshakes that clients broke off (expected when a check distrusts the certificate).
    """

    def __init__(self, config: SMTPServerConfig, mailbox: Mailbox | None = None) -> None:
        config.validate()
        self.config = config
        self.mailbox = mailbox if mailbox is not None else Mailbox(config.mailbox_dir)
        self.errors: list[str] = []
        self.tls_failures: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[LabSMTP] = set()
        self._context: ssl.SSLContext | None = None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def address(self) -> tuple[str, int]:
        return (self.config.host, self.port)

    @property
    def implicit_tls(self) -> bool:
        return self.config.implicit_tls

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> SMTPLabServer:
        if self._loop is not None:
            raise LabStartError("server already started")
        self._context = self.config.server_context()
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_loop_error)
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name=f"smtp-lab-{self.config.role}", daemon=True
        )
        self._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._open(), loop)
            self._server = future.result(timeout)
            self.port = self._server.sockets[0].getsockname()[1]
            self._wait_ready(timeout)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, LabStartError):
                raise
            raise LabStartError(f"SMTP lab ({self.config.role}) did not start: {exc}") from exc
        return self

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _open(self) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        handler = LabHandler(self.config, self.mailbox, self.errors, self.tls_failures)

        def factory() -> LabSMTP:
            return LabSMTP(
                handler,
                config=self.config,
                tls_context=self._context,
                loop=loop,
                sessions=self._sessions,
            )

        if self.config.implicit_tls:
            return await loop.create_server(
                factory,
                self.config.host,
                self.config.port,
                ssl=self._context,
                ssl_handshake_timeout=self.config.handshake_timeout,
            )
        return await loop.create_server(factory, self.config.host, self.config.port)

    def _wait_ready(self, timeout: float) -> None:
        """Prove the server works: connect like a client and read the 220 greeting."""
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(socket.create_connection(self.address, timeout=timeout))
            sock: socket.socket = raw
            if self.config.implicit_tls:
                context = lab_readiness_context()
                # it takes raw's descriptor over: left open, the server's session would wait
                # in TLS shutdown (for our close_notify) until garbage collection
                sock = stack.enter_context(context.wrap_socket(raw))
            greeting = b""
            while b"\n" not in greeting and len(greeting) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                greeting += chunk
            expected = b"554" if self.config.refuse_service else b"220"
            if not greeting.startswith(expected):
                raise LabStartError(
                    f"lab server greeted with {greeting[:100]!r}, not {expected.decode()}"
                )
            if self.config.refuse_service:
                return
            sock.sendall(b"QUIT\r\n")
            sock.recv(4096)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = context.get("message", "")
        self.errors.append(f"{text}: {type(exc).__name__}: {exc}" if exc else text)

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listener and every session, then end the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive() and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self._close_all(), loop)
            try:
                future.result(timeout)
            except Exception as exc:
                self.errors.append(f"stop: {type(exc).__name__}: {exc}")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = None
        self._thread = None
        self._server = None

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            # TCP first: it owns the socket, even when the TLS transport on top was closed
            # twice (every QUIT does that) and can no longer reach it. abort_transport()
            # skips such a TLS transport, whose abort() raises on CPython 3.11.1-3.11.3
            # (gh-98539; see harness.lab.aioloop.abort_transport).
            for transport in (session.tcp_transport, session._original_transport,
                              session.transport):
                abort_transport(transport)
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=0.5)

    def raise_errors(self) -> None:
        """Re-raise, in the caller's thread, what went wrong inside the server."""
        if self.errors:
            raise LabServerError("; ".join(self.errors))

    def __enter__(self) -> SMTPLabServer:
        if self._loop is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.stop()
        if exc_type is None:
            self.raise_errors()

    def __repr__(self) -> str:
        return f"SMTPLabServer(role={self.config.role!r}, address={self.address!r})"
