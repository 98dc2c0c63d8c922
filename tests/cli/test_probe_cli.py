"""``lab probe``: table and JSON output over real loopback ports, and its wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harness.cli.probe import probe
from harness.lab.portblock import Greeter, PortBlock
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="userspace 'filtered' needs Linux")


def test_probe_is_a_click_command_for_the_main_group() -> None:
    assert isinstance(probe, click.Command) and probe.name == "probe"
    from harness.cli import main

    assert main.commands.get("probe") is probe


def test_table_output_with_verdict() -> None:
    with PortBlock("refused") as refused, Greeter() as greeter:
        ports = f"{refused.port}:smtp,{greeter.port}:submission"
        result = CliRunner().invoke(probe, ["127.0.0.1", "--ports", ports, "--timeout", "1",
                                            "--no-sessions"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["HOST", "PORT", "ROLE", "STATE", "TIME", "BANNER", "/", "DETAIL"]
    assert lines[1].split()[:4] == ["127.0.0.1", str(refused.port), "smtp", "closed"]
    assert lines[2].split()[:4] == ["127.0.0.1", str(greeter.port), "submission", "open"]
    assert "220 mail.ftps-lab.test ESMTP lab greeter" in lines[2]
    assert "127.0.0.1: [port25-refused] Port 25 is refused; use 587" in result.output
    assert "fix: Port 25 refused from this network, 587 open (STARTTLS and AUTH not checked)" \
        in result.output


@linux_only
def test_json_output_with_submission_sessions(tls_files: dict[str, Path]) -> None:
    config = SMTPServerConfig(role="submission", users={"alice": "cli-Pass-1"},
                              cert_file=tls_files["cert"], key_file=tls_files["key"])
    with PortBlock("filtered") as filtered, SMTPLabServer(config) as mail:
        ports = f"{filtered.port}:smtp,{mail.port}:submission"
        result = CliRunner().invoke(probe, ["127.0.0.1", "--ports", ports, "--timeout", "0.5",
                                            "--json", "--expect-host", "mail.ftps-lab.test"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    states = [(r["port"], r["role"], r["state"]) for r in data["results"]]
    assert states == [(filtered.port, "smtp", "filtered"), (mail.port, "submission", "open")]
    assert set(data["results"][0]) == {"host", "port", "state", "banner", "detail", "elapsed",
                                       "role", "address"}
    [verdict] = data["verdicts"]
    assert verdict["host"] == "127.0.0.1"
    assert verdict["code"] == "port25-filtered" and verdict["ok"] is True
    assert verdict["submission"]["starttls"] is True
    assert verdict["submission"]["auth_after_tls"] is True
    assert "587 open with STARTTLS and AUTH" in verdict["fix"]


def test_sessions_reveal_a_greeter_without_starttls() -> None:
    with Greeter() as greeter:
        result = CliRunner().invoke(probe, ["127.0.0.1", "--ports", f"{greeter.port}:submission",
                                            "--timeout", "1", "--json"])
    data = json.loads(result.output)
    assert data["verdicts"][0]["code"] == "tls-missing"
    assert data["verdicts"][0]["submission"]["starttls"] is False


def test_plain_tcp_ports_get_no_verdict() -> None:
    with Greeter() as greeter:
        result = CliRunner().invoke(probe, ["127.0.0.1", "--ports", f"{greeter.port}",
                                            "--timeout", "1", "--json"])
    data = json.loads(result.output)
    assert data["results"][0]["role"] == "tcp" and data["results"][0]["state"] == "open"
    assert data["verdicts"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1", "--ports", "25,x"], "not a port number"),
        (["127.0.0.1", "--ports", "25:imap"], "unknown role"),
        (["127.0.0.1", "--timeout", "0"], "--timeout"),
        ([], "Missing argument"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 2
    assert message in result.output


def test_runs_as_a_module() -> None:
    """``python -m harness.probe`` is how the namespace tests run it."""
    with PortBlock("refused") as refused:
        done = subprocess.run(
            [sys.executable, "-m", "harness.probe", "127.0.0.1", "--ports",
             f"{refused.port}:smtp", "--timeout", "1", "--json"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["state"] == "closed"
