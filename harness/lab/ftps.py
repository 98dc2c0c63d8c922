"""Embedded FTPS lab server: pyftpdlib on loopback, one private loop thread per server.

Each :class:`FTPSLabServer` builds its OWN handler subclasses (``type(...)``) carrying its
own pyOpenSSL context, authorizer and flags, and runs its OWN ``IOLoop``: pyftpdlib keeps
configuration in class attributes and defaults to one global loop, so sharing either
would leak one server's certificate or policy into another.

The server is handed out only after a real client has read its 220 banner (through TLS
in implicit mode). Unexpected exceptions inside the server are collected in ``errors``
and re-raised by :meth:`FTPSLabServer.raise_errors` and on leaving the ``with`` block.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from pyftpdlib.servers import FTPServer

from harness.lab.ftps_handlers import (
    DataHandshake,
    LabAuthorizer,
    LabDTPHandler,
    LabFTPHandler,
    LabPassiveDTP,
    LabTLSDTPHandler,
    LabTLSHandler,
)
from harness.lab.serverthread import IOLoopThread, LabServerError, LabStartError
from harness.protocols.tlspolicy import (
    LEGACY_CIPHERS,
    SERVER_POLICY,
    SERVER_TLS12_CIPHERS,
    configure_pyopenssl,
    lab_readiness_context,
)

__all__ = [
    "FORWARD_SECRET_CIPHERS",
    "DataHandshake",
    "FTPSLabServer",
    "FTPSServerConfig",
    "FTPUser",
    "LabServerError",
    "LabStartError",
    "build_ssl_context",
]

POLICIES = ("require", "allow")
# TLS 1.2 suites with forward secrecy and AEAD only: no RSA key exchange, no CBC (the
# lab server policy, harness.protocols.tlspolicy.SERVER_POLICY).
FORWARD_SECRET_CIPHERS = SERVER_TLS12_CIPHERS
# The ``cipher_mismatch`` fault: TLS 1.2 CBC/SHA-1 suites only. The judging client's
# policy (tlspolicy.CLIENT_TLS12_CIPHERS: !SHA1) offers none of them on every
# interpreter, Debian's python3 included, and browsers and curl dropped them too, so the
# server answers the ClientHello with a handshake_failure alert.
MISMATCHED_CIPHERS = "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
# What a server that does not do explicit FTPS answers to AUTH TLS (``refuse_auth_tls``).
AUTH_TLS_REFUSALS = {
    500: '500 Command "AUTH" not understood.',
    502: "502 Command not implemented.",
    504: "504 Security mechanism not supported.",
    534: "534 Request denied for policy reasons.",
}
_MODERN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_LEGACY_VERSIONS = {"1.0": SSL.TLS1_VERSION, "1.1": SSL.TLS1_1_VERSION}
_ANONYMOUS_NAMES = ("anonymous", "ftp")
DEFAULT_PERM = "elradfmwMT"
DEFAULT_BUFFER = 256 * 1024


@dataclass(frozen=True)
class FTPUser:
    """A virtual user; ``home`` None means a fresh directory removed on stop."""

    name: str
    password: str = field(repr=False)
    home: Path | None = None
    perm: str = DEFAULT_PERM

    @classmethod
    def of(cls, value: FTPUser | tuple[Any, ...] | list[Any]) -> FTPUser:
        """Accept an ``FTPUser`` or ``(name, password[, home[, perm]])``."""
        if isinstance(value, FTPUser):
            return value
        name, password, *rest = value
        home = Path(rest[0]) if rest and rest[0] is not None else None
        perm = rest[1] if len(rest) > 1 and rest[1] else DEFAULT_PERM
        return cls(str(name), str(password), home, perm)


@dataclass
class FTPSServerConfig:
    """Everything that shapes one lab FTP(S) server.

    ``policy`` mirrors IIS: ``require`` ("Require SSL connections": TLS on control and
    data, plaintext USER answered 550, PROT C data refused) or ``allow`` ("Allow SSL
    connections": plaintext login and PROT C accepted). ``require_session_reuse`` is
    vsftpd's ``require_ssl_reuse=YES``; ``implicit`` is TLS from the first byte (IIS on
    990). ``tls=False`` is plain FTP, a benchmark baseline; ``policy`` is then moot.
    ``legacy_tls_version`` ("1.0"/"1.1") builds a server that still ACCEPTS old TLS,
    for negative tests; it overrides ``min_tls`` and the cipher list, and with
    ``max_tls`` set to a legacy version too the server speaks nothing newer.

    The fault switches below make the server misbehave on purpose, so that each check
    can be shown to catch (and name) one real-world failure: ``no_banner`` (accept, never
    greet), ``drop_control_during_transfer`` (close the control connection abruptly
    once data flows), ``stall_data`` (accept the data connection of a download, send
    nothing), ``refuse_auth_tls`` (answer AUTH with this code: 500, 502, 504 or 534),
    ``cipher_mismatch`` (TLS 1.2 with only suites modern clients no longer offer) and
    ``max_cons`` (1: every connection is answered ``421 Too many connections``).
    """

    certfile: str | Path | None = None
    keyfile: str | Path | None = None
    tls: bool = True
    policy: str = "require"
    require_session_reuse: bool = False
    implicit: bool = False
    passive_ports: tuple[int, int] | None = None
    masquerade_address: str | None = None
    users: list[FTPUser] = field(default_factory=list)
    min_tls: str = "1.2"
    max_tls: str | None = None
    legacy_tls_version: str | None = None
    session_resumption: bool = True  # False: no session cache, no tickets (a fault)
    # False: FEAT omits AUTH TLS although AUTH TLS works, as vsftpd 3.0.x does with
    # ssl_tlsv1=NO (not a fault: clients send AUTH TLS without reading FEAT).
    feat_lists_auth_tls: bool = True
    banner: str = "ftps-lab FTP server ready."
    host: str = "127.0.0.1"
    port: int = 0
    timeout: float = 30.0
    max_cons: int = 64
    auth_failed_delay: float = 0.1  # pyftpdlib waits 3 s before a 530
    dtp_in_buffer_size: int = DEFAULT_BUFFER
    dtp_out_buffer_size: int = DEFAULT_BUFFER
    # Deliberate faults (see the class docstring).
    no_banner: bool = False
    drop_control_during_transfer: bool = False
    stall_data: bool = False
    refuse_auth_tls: int | None = None
    cipher_mismatch: bool = False

    def __post_init__(self) -> None:
        self.users = [FTPUser.of(user) for user in self.users]
        if self.passive_ports is not None:
            low, high = self.passive_ports
            self.passive_ports = (int(low), int(high))

    def validate(self) -> None:
        """Refuse configurations that cannot run, before any socket is opened."""
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if self.min_tls not in _MODERN_VERSIONS:
            raise ValueError("min_tls must be '1.2' or '1.3' (use legacy_tls_version for older)")
        if self.legacy_tls_version is not None and self.legacy_tls_version not in _LEGACY_VERSIONS:
            raise ValueError("legacy_tls_version must be '1.0', '1.1' or None")
        lowest = self.legacy_tls_version or self.min_tls
        if self.max_tls is not None:
            if self.max_tls not in _MODERN_VERSIONS and (
                self.legacy_tls_version is None or self.max_tls not in _LEGACY_VERSIONS
            ):
                raise ValueError("max_tls must be '1.2', '1.3' or None (older only together "
                                 "with legacy_tls_version)")
            if self.max_tls < lowest:
                raise ValueError(f"max_tls {self.max_tls} is below min_tls {lowest}")
        if self.refuse_auth_tls is not None and self.refuse_auth_tls not in AUTH_TLS_REFUSALS:
            raise ValueError("refuse_auth_tls must be one of "
                             + ", ".join(str(code) for code in AUTH_TLS_REFUSALS))
        if self.cipher_mismatch and self.legacy_tls_version is not None:
            raise ValueError("cipher_mismatch and legacy_tls_version exclude each other")
        if self.max_cons < 1:
            raise ValueError("max_cons must be at least 1")
        if self.tls and not self.certfile:
            raise ValueError("an FTPS server needs certfile (and keyfile unless it is in certfile)")
        if not self.tls and (self.implicit or self.require_session_reuse):
            raise ValueError("implicit and require_session_reuse need tls=True")
        if self.passive_ports is not None:
            low, high = self.passive_ports
            if not 1024 <= low <= high <= 65535:
                raise ValueError(f"passive_ports {self.passive_ports} is not a range in 1024-65535")
        if not self.users:
            raise ValueError("no users configured; the lab never allows anonymous login")
        names = [user.name for user in self.users]
        if len(set(names)) != len(names):
            raise ValueError("user names must be unique")
        for user in self.users:
            if not user.name or user.name.lower() in _ANONYMOUS_NAMES:
                raise ValueError(f"user name {user.name!r} is not allowed (no anonymous access)")
            if not user.password:
                raise ValueError(f"user {user.name!r} has an empty password")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if min(self.dtp_in_buffer_size, self.dtp_out_buffer_size) < 4096:
            raise ValueError("data buffer sizes must be at least 4096 bytes")


def build_ssl_context(config: FTPSServerConfig) -> SSL.Context:
    """A fresh pyOpenSSL server context for one server (never shared).

    The session cache (with a session-id context) and stateless tickets stay on, so
    clients can resume the control session on data connections, also several times
    with one TLS 1.3 ticket.
    """
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_options(
        SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
    )
    configure_pyopenssl(ctx, SERVER_POLICY)  # then narrowed, or lowered for a legacy server
    if config.legacy_tls_version is not None:
        ctx.set_min_proto_version(_LEGACY_VERSIONS[config.legacy_tls_version])
        ctx.set_cipher_list(LEGACY_CIPHERS.encode())
    else:
        ctx.set_min_proto_version(_MODERN_VERSIONS[config.min_tls])
    if config.max_tls is not None:
        ctx.set_max_proto_version({**_LEGACY_VERSIONS, **_MODERN_VERSIONS}[config.max_tls])
    if config.cipher_mismatch:  # TLS 1.3 suites cannot be switched off, so no TLS 1.3
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(MISMATCHED_CIPHERS.encode())
    certfile = str(config.certfile)
    ctx.use_certificate_chain_file(certfile)
    ctx.use_privatekey_file(str(config.keyfile or certfile))
    ctx.check_privatekey()
    if config.session_resumption:
        ctx.set_session_id(b"ftps-lab-" + secrets.token_hex(8).encode())
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    else:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
    return ctx


class FTPSLabServer:
    """One running lab FTP(S) server; use as a context manager.

    Subclasses (fault servers) may swap the handler bases below or override
    :meth:`build_ssl_context`, :meth:`build_authorizer` or :meth:`handler_attributes`.
    """

    tls_control_handler: type[LabTLSHandler] = LabTLSHandler
    plain_control_handler: type[LabFTPHandler] = LabFTPHandler
    tls_data_handler: type[LabTLSDTPHandler] = LabTLSDTPHandler
    plain_data_handler: type[LabDTPHandler] = LabDTPHandler
    passive_handler: type[LabPassiveDTP] = LabPassiveDTP
    authorizer_class: type[LabAuthorizer] = LabAuthorizer

    def __init__(self, config: FTPSServerConfig) -> None:
        config.validate()
        self.config = config
        self.errors: list[str] = []
        self.tls_failures: list[str] = []
        self.data_handshakes: list[DataHandshake] = []
        self.users: list[FTPUser] = []
        self.port = 0
        self._homes: dict[str, Path] = {}
        self._temp_root: Path | None = None
        self._loop: IOLoopThread | None = None
        self._server: FTPServer | None = None
        self._started = False

    # -- what tests read ---------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def address(self) -> tuple[str, int]:
        return (self.config.host, self.port)

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.running

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread (kept after stop, so tests can check it has ended)."""
        return self._loop.thread if self._loop is not None else None

    @property
    def handler_class(self) -> type | None:
        """This server's own control handler subclass (None before start)."""
        return self._server.handler if self._server is not None else None

    def home(self, user: str) -> Path:
        """The home directory of ``user`` on this server."""
        try:
            return self._homes[user]
        except KeyError:
            raise KeyError(f"no user {user!r} on this server") from None

    # -- sinks the handlers report to (called in the loop thread) ------------------

    def record_error(self, text: str) -> None:
        self.errors.append(text)

    def record_tls_failure(self, text: str) -> None:
        self.tls_failures.append(text)

    def record_data_handshake(self, handshake: DataHandshake) -> None:
        self.data_handshakes.append(handshake)

    # -- construction (override points) -------------------------------------------

    def build_ssl_context(self) -> SSL.Context:
        return build_ssl_context(self.config)

    def build_authorizer(self) -> LabAuthorizer:
        authorizer = self.authorizer_class()
        for user in self.users:
            assert user.home is not None
            authorizer.add_user(user.name, user.password, str(user.home), perm=user.perm)
        return authorizer

    def handler_attributes(self) -> dict[str, Any]:
        """Class attributes of this server's control handler subclass."""
        config = self.config
        low_high = config.passive_ports
        attrs: dict[str, Any] = {
            "lab": self,
            "authorizer": self.build_authorizer(),
            "banner": config.banner,
            "timeout": config.timeout,
            "auth_failed_timeout": config.auth_failed_delay,
            "masquerade_address": config.masquerade_address,
            "masquerade_address_map": {},
            "passive_ports": list(range(low_high[0], low_high[1] + 1)) if low_high else None,
            "passive_dtp": type(
                "LabPassiveDTPFor", (self.passive_handler,), {"timeout": config.timeout}
            ),
            "no_banner": config.no_banner,
            "drop_control_during_transfer": config.drop_control_during_transfer,
            "stall_data": config.stall_data,
        }
        data_attrs = {
            "timeout": config.timeout,
            "ac_in_buffer_size": config.dtp_in_buffer_size,
            "ac_out_buffer_size": config.dtp_out_buffer_size,
        }
        if not config.tls:
            attrs["dtp_handler"] = type("LabDTPHandlerFor", (self.plain_data_handler,), data_attrs)
            return attrs
        required = config.policy == "require"
        attrs.update(
            ssl_context=self.build_ssl_context(),
            # Each control connection handshakes through a context of its own, so its
            # data connections can resume its sessions and no one else's.
            session_context_factory=staticmethod(self.build_ssl_context),
            certfile=str(config.certfile),
            keyfile=str(config.keyfile or config.certfile),
            tls_control_required=required,
            tls_data_required=required,
            implicit_tls=config.implicit,
            require_session_reuse=config.require_session_reuse,
            auth_tls_refusal=AUTH_TLS_REFUSALS.get(config.refuse_auth_tls or 0),
            dtp_handler=type("LabTLSDTPHandlerFor", (self.tls_data_handler,), data_attrs),
        )
        if not config.feat_lists_auth_tls:
            attrs["feat_lists_auth_tls"] = False
        return attrs

    def build_handler(self) -> type:
        base = self.tls_control_handler if self.config.tls else self.plain_control_handler
        return type(f"{base.__name__}For", (base,), self.handler_attributes())

    # -- lifecycle ----------------------------------------------------------------

    def _prepare_homes(self) -> None:
        needs_temp = any(user.home is None for user in self.config.users)
        if needs_temp:
            self._temp_root = Path(tempfile.mkdtemp(prefix="ftps-lab-"))
        for user in self.config.users:
            home = user.home
            if home is None:
                assert self._temp_root is not None
                home = self._temp_root / user.name
                home.mkdir()
            elif not home.is_dir():
                raise LabStartError(f"home directory of {user.name!r} does not exist: {home}")
            self._homes[user.name] = home
            self.users.append(FTPUser(user.name, user.password, home, user.perm))

    def start(self, timeout: float = 5.0) -> FTPSLabServer:
        if self._started:
            raise LabStartError("server already started (a stopped server cannot restart)")
        self._started = True
        try:
            self._prepare_homes()
            handler = self.build_handler()
            self._loop = IOLoopThread("ftps-lab", errors=self.errors)
            self._server = FTPServer(
                (self.config.host, self.config.port), handler, ioloop=self._loop.ioloop
            )
            self._server.max_cons = self.config.max_cons
            self.port = self._server.address[1]
            self._loop.name = f"ftps-lab:{self.port}"
            self._loop.start(timeout)
            self._probe(timeout)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, LabStartError):
                raise
            raise LabStartError(f"FTPS lab server did not start: {exc}") from exc
        return self

    def _probe_context(self) -> ssl.SSLContext:
        return lab_readiness_context()

    def _probe(self, timeout: float) -> None:
        """Prove the server serves: connect, read the whole 220 banner, QUIT.

        A ``no_banner`` server is proven by the connection alone; a ``max_cons: 1``
        server by its 421 refusal, which is all it ever answers.
        """
        sock = socket.create_connection(self.address, timeout=timeout)
        try:
            if self.config.implicit:
                sock = self._probe_context().wrap_socket(sock)
            if self.config.no_banner:
                return
            refusing = self.config.max_cons <= 1
            with sock.makefile("rb") as reader:
                while True:
                    line = reader.readline(4096)
                    if refusing and line.startswith(b"421 "):
                        return
                    if not line.startswith(b"220"):
                        raise LabStartError(f"server greeted with {line[:100]!r}, not 220")
                    if line[3:4] == b" ":
                        break
                sock.sendall(b"QUIT\r\n")
                reader.readline(4096)
        finally:
            sock.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Disconnect every client, end the loop thread, remove temporary homes.

        Idempotent; never raises (errors stay in ``errors``).
        """
        if self._loop is not None:
            self._loop.stop(timeout)
        if self._temp_root is not None:
            shutil.rmtree(self._temp_root, ignore_errors=True)
            self._temp_root = None

    def raise_errors(self) -> None:
        """Re-raise, in the caller's thread, what went wrong inside the server."""
        if self.errors:
            raise LabServerError("FTPS lab server errors:\n" + "\n".join(self.errors))

    def __enter__(self) -> FTPSLabServer:
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.stop()
        if exc_type is None:
            self.raise_errors()

    def __repr__(self) -> str:
        mode = "implicit" if self.config.implicit else ("explicit" if self.config.tls else "plain")
        return f"FTPSLabServer({mode}, policy={self.config.policy!r}, address={self.address!r})"
