"""Shared fixtures for the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# One hypothesis profile for the whole suite, so every run and every machine tries the
# same examples: ``derandomize`` derives them from the test itself (no random seed),
# ``database`` is off (no state carried between runs), ``max_examples`` is fixed, and
# ``deadline`` is off (a loaded CI machine must not turn a slow example into a failure;
# pytest-timeout catches hangs).
HYPOTHESIS_PROFILE = "ftps-lab"
settings.register_profile(
    HYPOTHESIS_PROFILE,
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(HYPOTHESIS_PROFILE)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA file plus a loopback server certificate and key, as paths.

    Keys: ``ca``, ``cert`` (leaf + chain), ``key``.
    """
    import trustme

    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    with open(paths["cert"], "wb") as handle:
        for blob in leaf.cert_chain_pems:
            handle.write(blob.bytes())
    paths["key"].chmod(0o600)
    return paths


# --- a missing interoperability package is a failure in CI ------------------------------

# Every skip for a missing Debian package says so with this phrase, e.g.
# "vsftpd is not installed (Debian package vsftpd)".
MISSING_PACKAGE = "Debian package "


def strict_interop() -> bool:
    """True where .ci/run installs the interop packages: ``CI=true``, root, apt."""
    return (
        os.environ.get("CI", "").lower() == "true"
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get") is not None
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``CI=true`` as root, a skip for a missing package turns the test red.

    Otherwise a CI run whose ``apt-get install`` half failed would be green with the whole
    interoperability suite skipped.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or not strict_interop():
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    if MISSING_PACKAGE in reason:
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true as root, but a package this test needs is missing: {reason}. "
            ".ci/run installs the interoperability packages; see docs/ci.md."
        )
