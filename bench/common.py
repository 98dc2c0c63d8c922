"""What every benchmark figure shares: the run context, interleaved timing, rows, helpers.

A figure measures ``ours`` and its peer(s) in the same run, interleaved (the order of the
sides rotates every repetition, so slow drift of the machine hits both alike), and reports
the median of each side. Rows carry their raw samples, so the JSON output can be
re-analysed later. Nothing here talks to anything but loopback addresses.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
LOOPBACK = "127.0.0.1"
SERVER_NAME = "localhost"
SOCKET_TIMEOUT = 10.0
"""Every socket and subprocess wait in the bench is bounded by this (or a stated deadline)."""


class BenchError(RuntimeError):
    """A measurement could not be taken (a transfer failed, a hash did not match...)."""


# -- rows -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table: ours against one peer, or a reason it was skipped.

    ``better`` says which direction wins for this unit (``lower`` for times, ``higher`` for
    throughput); ``target`` is the issue's target for ``ours / peer``: at most ``target``
    when lower is better, at least ``target`` when higher is better; None for a reference
    row (a ceiling, a baseline) that has no target.
    """

    figure: str
    name: str
    ours_label: str
    peer_label: str
    unit: str
    better: str
    ours: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    target: float | None = 1.0
    target_text: str = "at least as fast as the peer"
    skip: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ours_median(self) -> float | None:
        return statistics.median(self.ours) if self.ours else None

    @property
    def peer_median(self) -> float | None:
        return statistics.median(self.peer) if self.peer else None

    @property
    def ratio(self) -> float | None:
        """ours / peer, from the medians."""
        ours, peer = self.ours_median, self.peer_median
        if ours is None or peer is None or peer == 0:
            return None
        return ours / peer

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when there is no target or no measurement."""
        ratio = self.ratio
        if ratio is None or self.target is None:
            return None
        return ratio <= self.target if self.better == "lower" else ratio >= self.target

    @property
    def verdict(self) -> str:
        if self.skip:
            return "skipped"
        if self.error:
            return "error"
        met = self.met
        if met is None:
            return "reference"
        return "met" if met else "MISSED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "name": self.name,
            "ours": self.ours_label,
            "peer": self.peer_label,
            "unit": self.unit,
            "better": self.better,
            "ours_samples": self.ours,
            "peer_samples": self.peer,
            "ours_median": self.ours_median,
            "peer_median": self.peer_median,
            "ratio": self.ratio,
            "target": self.target,
            "target_text": self.target_text,
            "verdict": self.verdict,
            "skip": self.skip,
            "error": self.error,
            "notes": self.notes,
        }


# -- the run context ------------------------------------------------------------------------


@dataclass
class Settings:
    """What the command line decided."""

    quick: bool = False
    repeat: int = 5
    warmup: int = 1
    size: int = 256 * MiB
    probe_hosts: int = 100
    probe_timeout: float = 1.0
    tmpdir: Path | None = None
    verbose: bool = False


class Context:
    """Per-run state: settings, a private work directory (removed at the end), the PKI."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = _data_dir(settings)
        self.workdir = Path(tempfile.mkdtemp(prefix="ftps-lab-bench-", dir=self.data_dir))
        self.workdir.chmod(0o700)
        self._pki: Any = None

    @property
    def quick(self) -> bool:
        return self.settings.quick

    @property
    def repeat(self) -> int:
        return self.settings.repeat

    @property
    def warmup(self) -> int:
        return self.settings.warmup

    def pki(self) -> Any:
        """The lab's certificate set, generated once per run in the work directory."""
        if self._pki is None:
            from harness.certs import lab_pki

            self._pki = lab_pki(self.workdir / "pki")
        return self._pki

    def directory(self, name: str) -> Path:
        """A fresh directory in the work directory (removed with it)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        return path

    def log(self, text: str) -> None:
        if self.settings.verbose:
            print(f"  .. {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _data_dir(settings: Settings) -> str | None:
    """Big files go to tmpfs when it has room: the figures measure protocols, not disks."""
    if settings.tmpdir is not None:
        return str(settings.tmpdir)
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        if shm.is_dir() and os.access(shm, os.W_OK):
            free = shutil.disk_usage(shm).free
            if free > 4 * settings.size + 256 * MiB:
                return str(shm)
    return None


# -- timing ---------------------------------------------------------------------------------

Measure = Callable[[], float]


def interleave(
    sides: dict[str, Measure], repeat: int, warmup: int = 0
) -> dict[str, list[float]]:
    """Run every side ``warmup`` times (discarded), then ``repeat`` times, interleaved.

    The order rotates each repetition (A B C, B C A, C A B, ...), so neither side always
    runs first on a warm cache or last on a tired machine.
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(repeat):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(sides[name]())
    return samples


def timed(function: Callable[[], object]) -> float:
    """Seconds ``function`` took."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# -- helpers --------------------------------------------------------------------------------


def which(name: str) -> str | None:
    return shutil.which(name)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def random_password() -> str:
    return secrets.token_urlsafe(18)


def write_private(path: Path, data: str | bytes) -> Path:
    """A file only we can read (netrc, combined key files), created 0600 from the start."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    return path


def netrc_file(directory: Path, host: str, user: str, password: str) -> Path:
    """curl's credentials, so no password is ever on a command line."""
    return write_private(directory / "netrc", f"machine {host} login {user} password {password}\n")


def random_file(path: Path, size: int, chunk: int = 4 * MiB) -> str:
    """``size`` random bytes in ``path``; returns their SHA-256."""
    digest = hashlib.sha256()
    left = size
    with path.open("wb") as handle:
        while left > 0:
            piece = os.urandom(min(chunk, left))
            handle.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def client_tls_context(ca_file: Path) -> ssl.SSLContext:
    """A verifying client context that trusts only the lab CA (same for both sides)."""
    return ssl.create_default_context(cafile=str(ca_file))


def run_command(
    argv: list[str], timeout: float = 60.0, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """A subprocess with a deadline; stdout/stderr captured as text."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate a child we started (by its own handle), then kill it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def wait_for_listener(host: str, port: int, deadline: float = 5.0) -> None:
    """Poll until something accepts on ``host:port`` (a subprocess server coming up)."""
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > end:
                raise BenchError(f"nothing listens on {host}:{port} after {deadline:g} s") from None
            time.sleep(0.01)


def tool_version(argv: list[str]) -> str | None:
    """First line of ``tool --version`` (or what it printed), None if it is missing."""
    if which(argv[0]) is None:
        return None
    try:
        done = run_command(argv, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _wheel_openssl() -> str | None:
    """The OpenSSL inside the cryptography wheel: what pyOpenSSL, so the FTPS lab server,
    speaks TLS with (Python's ``ssl``, curl and openssl use the system's)."""
    try:
        from cryptography.hazmat.backends.openssl import backend
    except ImportError:
        return None
    return str(backend.openssl_version_text())


def machine_facts() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, Python, OpenSSL, peers' versions, date."""
    import datetime as dt

    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "openssl": ssl.OPENSSL_VERSION,
        "openssl_pyopenssl": _wheel_openssl(),
        "packages": {
            name: package_version(name)
            for name in (
                "ftps-lab", "pyftpdlib", "pyOpenSSL", "cryptography", "aiosmtpd", "trustme",
                "pytest-localftpserver", "smtpdfix", "sslyze",
            )
        },
        "tools": {
            "curl": tool_version(["curl", "--version"]),
            "openssl": tool_version(["openssl", "version"]),
            "nmap": tool_version(["nmap", "--version"]),
            "vsftpd": "installed" if which("vsftpd") or Path("/usr/sbin/vsftpd").exists()
            else None,
        },
    }  # fmt: skip


def failure(row: Row, exc: BaseException) -> Row:
    """Record why a row could not be measured, without stopping the other figures; the
    traceback goes to stderr for whoever has to fix it."""
    row.error = f"{type(exc).__name__}: {exc}"
    print(f"# {row.name}: {row.peer_label}: measurement failed", file=sys.stderr)
    traceback.print_exception(exc, limit=6, file=sys.stderr)
    return row


@contextlib.contextmanager
def removing(path: Path) -> Iterator[Path]:
    """``path`` (file or directory) is removed when the block ends."""
    try:
        yield path
    finally:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
