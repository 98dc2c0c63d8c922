"""Real servers in their distribution's shipped configurations, secure and weak (issue 10).

Each launcher starts one server from its Debian package's own configuration files,
changed only where a deployment guide changes them (TLS on with the lab certificate,
127.0.0.1 and a free port, a test user), and yields a :class:`StockServer`: the harness
targets to judge, the Debian version, how long the start took, and the daemons to
check for leftovers and listeners. The *weak* variant of each server changes one
documented setting the way an administrator weakening it would (TLS optional,
plaintext login allowed). docs/interop.md lists every change per server.

Servers that cannot be installed next to the machine's own (they conflict) come from
:mod:`debian_cache`; every daemon runs in :mod:`stock_sandbox` namespaces, so no account,
PAM service or file outside a temporary directory is created on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from stock_sandbox import Isolated, SandboxUnavailable, missing_prerequisites

from harness.certs import LabPKI
from harness.targets import Target


@dataclass
class StockServer:
    """One running server in one configuration and what the tests need to know about it."""

    server: str
    config: str
    version: str
    targets: dict[str, Target]  # service ("ftps", "submission", "submissions") -> target
    root: Path
    daemons: list[Isolated] = field(default_factory=list)
    started_in: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)  # evidence for docs and failures

    @property
    def label(self) -> str:
        return f"{self.server}-{self.config}"

    def leftovers(self) -> list[int]:
        return sorted(pid for daemon in self.daemons for pid in daemon.leftovers)

    def listening(self) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for daemon in self.daemons:
            found |= daemon.listening()
        return found

    def logs(self) -> str:
        return "\n".join(daemon.log_tail() for daemon in self.daemons)

    def stop(self) -> None:
        """Stop the daemons in reverse start order (each records its leftovers)."""
        errors = []
        for daemon in reversed(self.daemons):
            try:
                daemon.stop()
            except RuntimeError as exc:  # something survived SIGKILL: report, go on
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))


DIRECTORY_PREFIX = "ftps-lab-stock-"
OWNER_FILE = ".owner-pid"


def _remove_stale_directories() -> None:
    """Directories of runs that were killed (their owner pid is gone): the daemons died
    with them (stock_sandbox sets PR_SET_PDEATHSIG), the files stayed."""
    for directory in Path(tempfile.gettempdir()).glob(f"{DIRECTORY_PREFIX}*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(directory, ignore_errors=True)


Launcher = Callable[[StockServer, LabPKI], None]
"""Fills in a StockServer (targets, daemons, version) by starting the daemons."""


@contextlib.contextmanager
def running(server: str, config: str, pki: LabPKI,
            launcher: Launcher) -> Iterator[StockServer]:
    """Start ``server`` in ``config`` with ``launcher``; always stop it and remove its
    directory. The directory is under the system temporary directory (not pytest's
    0700 base) because the daemons' unprivileged users must reach their files."""
    reason = missing_prerequisites()  # before anything is downloaded or written
    if reason is not None:
        raise SandboxUnavailable(reason)
    _remove_stale_directories()
    root = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{server}-{config}-"))
    root.chmod(0o755)
    (root / OWNER_FILE).write_text(f"{os.getpid()}\n")
    stock = StockServer(server=server, config=config, version="", targets={}, root=root)
    try:
        begin = time.monotonic()
        try:
            launcher(stock, pki)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                stock.stop()
            raise
        stock.started_in = time.monotonic() - begin
        yield stock
        stock.stop()
    finally:
        if any(d.process.poll() is None for d in stock.daemons):
            with contextlib.suppress(RuntimeError):
                stock.stop()
        if not os.environ.get("FTPS_LAB_KEEP_STOCK"):  # keep it to read the logs
            shutil.rmtree(root, ignore_errors=True)


def configs() -> dict[tuple[str, str], Launcher]:
    """Every (server, configuration) with its launcher (imported late: the launcher
    modules import this one)."""
    import stock_ftp
    import stock_mail

    return {**stock_ftp.LAUNCHERS, **stock_mail.LAUNCHERS}


def launch(server: str, config: str, pki: LabPKI) -> AbstractContextManager[StockServer]:
    """The running server for one row of the table (see :func:`configs`)."""
    return running(server, config, pki, configs()[(server, config)])
