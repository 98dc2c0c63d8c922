"""Every shipped scenario, end to end through the plugin and the embedded lab.

This is what ``tox -e lab`` runs; running it here too keeps CI honest about it. The
failure-output tests check what an engineer sees when a server is wrong.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from harness.report import json_report

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


def _outcomes(run: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """pytest's final counts, e.g. ``{"passed": 47, "skipped": 38}``."""
    line = run.stdout.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", line)}


def _totals(path: Path) -> dict[str, tuple[int, ...]]:
    """Per target: (pass, warn, fail, skip, error, skip not applicable, skip could not run)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    json_report.validate(document)
    keys = ("pass", "warn", "fail", "skip", "error", "skip_not_applicable",
            "skip_could_not_run")
    totals = {t["id"]: tuple(t["counts"][k] for k in keys) for t in document["targets"]}
    totals["all"] = tuple(document["totals"][k] for k in keys)
    return totals


def test_every_shipped_scenario_passes_on_the_embedded_lab(tmp_path: Path) -> None:
    """Exact counts, so a step that starts to skip (or stops running) cannot hide.

    On the embedded lab no step skips: every scenario builds the lab servers its checks
    need (credentials, trust, passive ranges, simulated networks), steps pinned to one
    lab server (``targets:``) only run against that server, and steps for remote targets
    only (``remote_only``: op25b-diagnose's diagnose-this-network) are not collected.
    The 23 ``fail`` and 2 ``error``
    statuses are the fault demonstrations (``expect: fail``/``expect: error`` in
    faults-*.yaml, ftps-certificate-faults, ftps-behind-nat, open-relay-refused): the check
    caught the fault, so pytest counts them as passed. The 2 ``warn`` are ``extensions`` on
    the 587 and 465 lab servers: aiosmtpd offers no PIPELINING, ENHANCEDSTATUSCODES or DSN
    (RFC 6409 SHOULDs); a warning passes the run, and the summary names it.
    """
    report = tmp_path / "lab.json"
    run = _run_pytest("scenarios", "--lab-json", str(report))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert _outcomes(run) == {"passed": 117}, run.stdout[-2000:]
    assert _totals(report)["all"] == (90, 2, 23, 0, 2, 0, 0)
    summary = run.stdout[run.stdout.index("ftps-lab summary") :].splitlines()[1:]
    targets = [line for line in summary if "://" in line.split(" ")[0]]
    assert len(targets) == 33, targets
    warned = sorted(line.split()[0] for line in targets if line.endswith("  1 warning(s)"))
    assert warned == ["submission://lab-submission", "submissions://lab-submissions"], targets
    assert all(line.endswith("  ok") for line in targets if line.split()[0] not in warned)
    assert "2 warning(s) (passed; strict fails them):" in summary


def test_every_shipped_scenario_against_remote_targets_counts_each_skip(
    tmp_path: Path,
) -> None:
    """Every shipped scenario against three servers the lab did not start for it (started
    here, named by ``--lab-url``): FTPS with credentials, a submission server without
    credentials (the server has users; the URL names none), an MTA. Every skip, with its
    kind:

    ftps://127.0.0.1, 25 pass (iis-ftps-self-signed 18, ftps-policy-contrast 5,
    ftps-behind-nat 2), 16 skips, all *not applicable*:
      - faults-ftps: 10 fault demonstrations of lab servers (9 expect: fail, 1 expect: error);
      - ftps-behind-nat: pasv-address, data-session-reuse and transfers are pinned to the lab
        server ``external`` (a NAT variant), plus 1 demonstration (``private``, ``none``);
      - ftps-certificate-faults: 2 demonstrations (expired, wrong-host, ... certificates).
    smtp://127.0.0.1, 8 pass (nat-587-to-25), 7 skips, all *not applicable*:
      - faults-smtp: 4 demonstrations (3 expect: fail, 1 expect: error);
      - open-relay-refused: relay-refused (pinned to lab servers submission, mta),
        submit-message (pinned to mta), 1 demonstration (the open relay).
    submission://127.0.0.1, 14 pass and 1 warn (submission-587-starttls-auth 13 and
    op25b-diagnose's diagnose-this-network, the one step of that scenario for remote
    targets: it probes 127.0.0.1's 25 and 465 and the server's port and passes on a
    working submission path, here the server itself; the warning is ``extensions``:
    aiosmtpd lacks PIPELINING, ENHANCEDSTATUSCODES, DSN), 15 skips:
      - 13 *not applicable*: faults-smtp 4 demonstrations as above; op25b-diagnose's five
        diagnose-* steps and its submit-message, pinned to simulated networks (6);
        open-relay-refused 3 as above;
      - 2 *could not run*: auth-plain and submit-message of submission-587-starttls-auth
        need a login, and the URL names no user.
    ftps-implicit.yaml has no target here (no ftps-implicit URL), so it adds nothing.
    """
    from harness.certs import lab_pki
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser
    from harness.lab.pool import free_port_range
    from harness.lab.smtp import SMTPLabServer, SMTPServerConfig

    pki = lab_pki()
    files = pki.files("lab")
    password = "remote-Run-5120"
    ftps = FTPSServerConfig(
        certfile=files.cert, keyfile=files.key, users=[FTPUser("deploy", password)],
        passive_ports=free_port_range(4, ("127.0.0.1",)),
    )
    mail = {"cert_file": files.cert, "key_file": files.key}
    report = tmp_path / "remote.json"
    with (
        FTPSLabServer(ftps) as ftp,
        SMTPLabServer(
            SMTPServerConfig(role="submission", users={"deploy": password}, **mail)
        ).start() as submission,
        SMTPLabServer(SMTPServerConfig(role="mta", **mail)).start() as mta,
    ):
        query = f"ca_file={pki.ca_file}&server_name=localhost"
        run = _run_pytest(
            "-rs", "scenarios", "--lab-json", str(report),
            "--lab-url", f"ftps://deploy@127.0.0.1:{ftp.port}?{query}&passive_address=127.0.0.1",
            "--lab-url", f"submission://127.0.0.1:{submission.port}?{query}",
            "--lab-url", f"smtp://127.0.0.1:{mta.port}?{query}",
            env={"LAB_PASSWORD": password},
        )
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    assert _outcomes(run) == {"passed": 48, "skipped": 38}, out[-3000:]
    assert _totals(report) == {
        "ftps://127.0.0.1": (25, 0, 0, 16, 0, 16, 0),
        "smtp://127.0.0.1": (8, 0, 0, 7, 0, 7, 0),
        "submission://127.0.0.1": (14, 1, 0, 15, 0, 13, 2),
        "all": (47, 1, 0, 38, 0, 36, 2),
    }
    assert "15 skipped (13 not applicable, 2 could not run)" in out
    assert "2  could not run: no user/password configured for this target" in out
    assert password not in out


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
