"""Debian packages that cannot be installed side by side, unpacked into a cache.

Debian's FTP servers conflict with one another (``ftp-server``) and so do its MTAs
(``mail-transport-agent``), but the interop suite runs vsftpd, ProFTPD and Pure-FTPd, and
Postfix, Exim and sendmail, on one machine. So every server but the installed ones is
fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache
directory, where the tests run its binaries with private configurations. The .deb files
are the distribution's own: the configuration files the tests start from are the ones
the package ships (pristine, whatever the machine's /etc says).

Cache: ``$FTPS_LAB_DEB_CACHE``, else ``/var/cache/ftps-lab/debian`` as root, else
``~/.cache/ftps-lab/debian``. A bundle is unpacked once per set of .deb files (the
directory name carries a hash of their file names) and reused; delete the cache to pick
up newer package versions. Setuid and setgid bits are stripped on unpacking: a setuid
exim4 in a cache directory would be a local root hole.

Run as a script (``python3 tests/interop/debian_cache.py``) it fetches and unpacks every
bundle, so CI can do the downloading before the tests (``.ci/run``, after
``apt-get update``). Only the standard library is used, so the system python3 will do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DOWNLOAD_TIMEOUT = 300.0
UNPACK_TIMEOUT = 120.0
MULTIARCH = "x86_64-linux-gnu"


class PackageUnavailable(RuntimeError):
    """A package could not be fetched or unpacked; the message is a skip reason that
    names it as ``(Debian package NAME)`` (tests/conftest.py fails such skips in CI)."""


@dataclass(frozen=True)
class Bundle:
    """The packages one server needs, unpacked together into one tree.

    ``packages`` hold the server; ``libraries`` are shared libraries it links that a
    minimal Debian lacks (they do not conflict with anything, so .ci/run could also
    install them; unpacking them keeps the test self-contained).
    """

    name: str
    packages: tuple[str, ...]
    libraries: tuple[str, ...] = ()

    @property
    def all_packages(self) -> tuple[str, ...]:
        return self.packages + self.libraries


# Debian 12 (bookworm) names. The library lists are what ``ldd`` reports missing on a
# machine with the README's packages installed.
BUNDLES: dict[str, Bundle] = {
    "vsftpd": Bundle("vsftpd", ("vsftpd",)),
    "proftpd": Bundle(
        "proftpd",
        ("proftpd-core", "proftpd-mod-crypto"),
        ("libhiredis0.14", "libmemcached11", "libmemcachedutil2", "libhashkit2",
         "libpcre2-posix3"),
    ),
    "pure-ftpd": Bundle("pure-ftpd", ("pure-ftpd", "pure-ftpd-common")),
    "postfix": Bundle("postfix", ("postfix",)),
    "exim4": Bundle(
        "exim4", ("exim4-daemon-light", "exim4-base", "exim4-config"), ("libidn12",)
    ),
    "sendmail": Bundle(
        "sendmail",
        ("sendmail-bin", "sendmail-base", "sendmail-cf", "sasl2-bin", "m4"),
        # The PLAIN/LOGIN plugins: only a Recommends of libsasl2-2, which .ci/run skips.
        ("libsasl2-modules",),
    ),
}


def cache_root() -> Path:
    """Where .deb files and unpacked trees live (see the module docstring)."""
    configured = os.environ.get("FTPS_LAB_DEB_CACHE")
    if configured:
        return Path(configured)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/cache/ftps-lab/debian")
    return Path.home() / ".cache" / "ftps-lab" / "debian"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One process at a time downloads and unpacks (pytest-xdist workers, parallel runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_deb(debs: Path, package: str) -> Path | None:
    found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def _download(debs: Path, packages: Sequence[str]) -> None:
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise PackageUnavailable(
            f"apt-get not found, cannot fetch (Debian package {packages[0]})"
        )
    # The _apt sandbox user cannot write a root-owned cache; say so instead of warning.
    command = [apt_get, "download", "-q", "-o", "APT::Sandbox::User=root", *packages]
    try:
        done = subprocess.run(command, cwd=debs, capture_output=True, text=True,
                              timeout=DOWNLOAD_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackageUnavailable(
            f"apt-get download failed: {exc} (Debian package {packages[0]})"
        ) from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise PackageUnavailable(
            f"apt-get download {' '.join(packages)} failed: "
            f"{detail[-1] if detail else done.returncode} (run apt-get update first?) "
            f"(Debian package {packages[0]})"
        )


def _strip_privileges(tree: Path) -> None:
    for path in tree.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        mode = path.stat().st_mode
        if mode & (stat.S_ISUID | stat.S_ISGID):
            path.chmod(mode & ~(stat.S_ISUID | stat.S_ISGID))


def unpacked(bundle: Bundle | str) -> Path:
    """The bundle's packages unpacked into one tree (downloaded and unpacked if needed).

    Raises :class:`PackageUnavailable` with a skip reason naming the package.
    """
    if isinstance(bundle, str):
        bundle = BUNDLES[bundle]
    root = cache_root()
    debs = root / "debs"
    try:
        with _locked(root):
            debs.mkdir(parents=True, exist_ok=True)
            missing = [p for p in bundle.all_packages if _cached_deb(debs, p) is None]
            if missing:
                _download(debs, missing)
            files: list[Path] = []
            for package in bundle.all_packages:
                deb = _cached_deb(debs, package)
                if deb is None:
                    raise PackageUnavailable(
                        f"apt-get download left no .deb (Debian package {package})"
                    )
                files.append(deb)
            digest = hashlib.sha256("\n".join(f.name for f in files).encode()).hexdigest()
            tree = root / "trees" / f"{bundle.name}-{digest[:12]}"
            if (tree / ".complete").exists():
                return tree
            shutil.rmtree(tree, ignore_errors=True)
            tree.mkdir(parents=True)
            for deb in files:
                done = subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)],
                                      capture_output=True, text=True,
                                      timeout=UNPACK_TIMEOUT, check=False)
                if done.returncode != 0:
                    package = deb.name.split("_", 1)[0]
                    raise PackageUnavailable(
                        f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()} "
                        f"(Debian package {package})"
                    )
            _strip_privileges(tree)
            (tree / ".complete").write_text("\n".join(f.name for f in files) + "\n")
            return tree
    except OSError as exc:
        raise PackageUnavailable(
            f"cannot use the package cache {root}: {exc} (Debian package {bundle.packages[0]})"
        ) from exc


def version_of(tree: Path, package: str) -> str:
    """The Debian version of ``package`` as unpacked in ``tree`` (from the .deb name)."""
    for line in (tree / ".complete").read_text().splitlines():
        name, _, rest = line.partition("_")
        if name == package:
            return rest.rsplit("_", 1)[0]
    raise KeyError(package)


def library_path(tree: Path) -> str:
    """``LD_LIBRARY_PATH`` for binaries run out of ``tree``."""
    return ":".join(str(tree / d) for d in (f"usr/lib/{MULTIARCH}", f"lib/{MULTIARCH}"))


def main(argv: Sequence[str]) -> int:
    """Fetch and unpack the named bundles (default: all); print one line each."""
    names = list(argv) or list(BUNDLES)
    status = 0
    for name in names:
        try:
            tree = unpacked(name)
        except PackageUnavailable as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {tree}")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
