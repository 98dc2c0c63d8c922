"""The suite's own CI rules (tests/conftest.py): missing packages fail, skips are summarised."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
SAMPLE = """
import pytest

def test_needs_a_package():
    pytest.skip("vsftpd is not installed (Debian package vsftpd)")

def test_needs_root():
    pytest.skip("needs root")

def test_runs():
    pass
"""


@pytest.fixture
def sample(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_sample=SAMPLE)
    return pytester


def _as_ci_root(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n, *a, **k: "/usr/bin/apt-get"
                        if n == "apt-get" else real_which(n, *a, **k))


def test_a_missing_package_fails_under_ci_as_root(
    sample: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_ci_root(monkeypatch, "true")
    result = sample.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=1, passed=1)
    result.stdout.fnmatch_lines(["*CI=true as root, but a package this test needs is missing*"])


def test_a_missing_package_only_skips_outside_ci(
    sample: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_ci_root(monkeypatch, "false")
    result = sample.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2, passed=1)
    # The plugin's summary: every reason, grouped and counted, on the last screen.
    result.stdout.fnmatch_lines([
        "*skip reasons (2 skipped)*",
        "*1  needs root",
        "*1  vsftpd is not installed (Debian package vsftpd)",
    ])
