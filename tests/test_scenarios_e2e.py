"""Every shipped scenario, end to end through the plugin and the embedded lab.

This is what ``tox -e lab`` runs; running it here too keeps CI honest about it. The
failure-output tests check what an engineer sees when a server is wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]


def _run_pytest(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_every_shipped_scenario_passes_on_the_embedded_lab() -> None:
    run = _run_pytest("scenarios")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_a_wrong_server_fails_with_target_step_and_reply(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "wrong.yaml").write_text(
        "scenario: wrong\n"
        "description: a server whose certificate has expired\n"
        "protocols: [ftps]\n"
        "lab:\n"
        "  - name: lax\n"
        "    server: ftps\n"
        "    certificate: expired\n"
        "checks:\n"
        "  - check: certificate-trust\n"
        "    params: {}\n"
    )
    run = _run_pytest("--rootdir", str(tmp_path), str(scenarios), cwd=tmp_path)
    assert run.returncode == 1, run.stdout
    out = run.stdout
    assert "certificate-trust[ftps://lab-lax]" in out
    assert "expired" in out and "advice" in out
    assert "target:   ftps://lab-lax" in out and "wrong.yaml:9" in out
    assert "Traceback" not in out and "harness/" not in out


def test_a_broken_scenario_names_file_line_and_field(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "broken.yaml").write_text(
        "scenario: broken\n"
        "description: a typo in a lab option\n"
        "protocols: [ftps]\n"
        "lab:\n"
        "  - name: one\n"
        "    server: ftps\n"
        "    polcy: require\n"
        "checks: [banner]\n"
    )
    run = _run_pytest("--rootdir", str(tmp_path), str(scenarios), cwd=tmp_path)
    assert run.returncode != 0
    assert "broken.yaml:7" in run.stdout and "polcy" in run.stdout
    assert "Traceback" not in run.stdout


def test_the_same_scenario_runs_against_a_remote_target_by_url(tmp_path: Path) -> None:
    """--lab-url points the scenario at a server the lab did not start (here: one we did)."""
    from harness.certs import lab_pki
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser

    pki = lab_pki()
    files = pki.files("lab")
    password = "url-Target-7731"
    config = FTPSServerConfig(
        certfile=files.cert, keyfile=files.key, users=[FTPUser("remote", password)]
    )
    with FTPSLabServer(config) as server:
        url = (
            f"ftps://remote@127.0.0.1:{server.port}?ca_file={pki.ca_file}"
            "&server_name=localhost&passive_address=127.0.0.1"
        )
        run = _run_pytest(
            str(ROOT / "scenarios" / "ftps-policy-contrast.yaml"),
            "--lab-url",
            url,
            env={"LAB_PASSWORD": password},
        )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "ftps://127.0.0.1" in out or "passed" in out
    assert password not in out
