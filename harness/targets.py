"""A target is one server endpoint the checks talk to: remote, or an embedded lab server."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.protocols.tls import Trust

FTP_PROTOCOLS = ("ftps", "ftps-implicit", "ftp")
SMTP_PROTOCOLS = ("smtp", "submission", "submissions")
PROTOCOLS = FTP_PROTOCOLS + SMTP_PROTOCOLS
# Dovecot's default auth_failure_delay; it covers Postfix's and vsftpd's 1 s too.
DEFAULT_AUTH_FAILURE_DELAY = 2.0


@dataclass
class Target:
    """Where to connect, how to trust it, who to log in as and what policy to expect.

    ``password`` is resolved from the environment variable ``password_env`` by whoever
    builds the target; it is excluded from ``repr`` so it cannot leak through pytest.
    """

    name: str
    protocol: str
    host: str
    port: int
    trust: Trust = field(default_factory=Trust)
    server_name: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    timeout: float = 10.0
    # True: this target's warnings and could-not-run skips fail the run, as --lab-strict
    # does for every target (an inventory's ``strict``, in defaults or on the target).
    strict: bool = False
    # Seconds the server delays a failed login's reply (and, doubling per failure, the
    # logins after it): Dovecot's auth_failure_delay 2 s, Postfix smtpd_error_sleep_time
    # 1 s, vsftpd delay_failed_login 1 s. Added to the timeout of those logins only.
    auth_failure_delay: float = DEFAULT_AUTH_FAILURE_DELAY
    # Certificate expiry watch (harness/checks/expiry.py): certificate-lint and
    # smtp-certificate-lint warn within the first, fail within the second.
    cert_expiry_warn_days: int = 30
    cert_expiry_fail_days: int = 7
    # FTPS expectations
    policy: str = "require"  # "require" (IIS Require SSL) or "allow"
    passive_address: str | None = None  # the address PASV must hand out
    passive_ports: tuple[int, int] | None = None
    session_reuse_required: bool | None = None  # None: only record what the server does
    # SMTP expectations
    mail_from: str = "probe@ftps-lab.test"
    rcpt_to: str = "postmaster@ftps-lab.test"
    relay_to: str = "victim@relay-test.invalid"
    # OP25B expectations for op25b-diagnose on this target: the verdicts that pass it
    # (empty: any working submission path passes), and role -> port overrides for the
    # probe (e.g. {"smtp": 2525}; 0 leaves a role out).
    op25b_expect: tuple[str, ...] = ()
    op25b_ports: dict[str, int] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def tls_name(self) -> str:
        """The name used for SNI and the host-name check."""
        return self.server_name or self.host

    @property
    def implicit_tls(self) -> bool:
        return self.protocol in ("ftps-implicit", "submissions")

    @property
    def id(self) -> str:
        """Readable test id, e.g. ``ftps://iis-build-42``."""
        return f"{self.protocol}://{self.name}"
