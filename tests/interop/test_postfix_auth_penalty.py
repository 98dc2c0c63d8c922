"""Logins after a failed login, against Postfix + Dovecot at Dovecot's default penalty.

Dovecot delays a failed login's reply (``auth_failure_delay``, 2 s) and, per client
address, every login after it by a penalty that doubles per failure (measured here: the
login after one failure answers after about 4 s, a second wrong password after about
6 s, the login after two failures after about 8 s; a success resets it). With a 5 s
target timeout the harness used to time out on exactly those replies. Now the checks
that fail a login on purpose run last for their target, and a login that follows a
failed one waits the target's ``auth_failure_delay`` budget on top of its timeout.

Each test starts its own Postfix + Dovecot: the penalty lives in Dovecot's anvil
process and belongs to 127.0.0.1, so an instance shared with other tests would carry it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from postfix_lab import RECIPIENT, PostfixLab, missing_prerequisites, postfix_lab

from harness.certs import lab_pki
from harness.checks import authpenalty, run_check
from harness.report import json_report
from harness.results import CheckResult, Status

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

TIMEOUT = 5.0


@pytest.fixture
def postfix() -> Iterator[PostfixLab]:
    reason = missing_prerequisites()
    if reason is not None:
        pytest.skip(reason)
    authpenalty.reset()
    pki = lab_pki()
    files = pki.files("lab")
    with postfix_lab(files.cert, files.key, pki.ca_file) as lab:
        yield lab
    authpenalty.reset()


def _explain(result: CheckResult, lab: PostfixLab) -> str:
    return f"{result.describe()}\n" + "\n".join(result.transcript[-20:]) + f"\n{lab.logs()}"


def test_logins_after_failed_logins_wait_out_the_penalty(postfix: PostfixLab) -> None:
    target = replace(postfix.target("submission"), timeout=TIMEOUT)
    assert target.auth_failure_delay == 2.0  # the documented default: Dovecot's own
    first = run_check("auth-bad-password", target)
    assert first.status is Status.PASS, _explain(first, postfix)
    # The second wrong password's refusal comes after the penalty of the first failure
    # plus auth_failure_delay: past the 5 s timeout, inside the budget.
    second = run_check("auth-bad-password", target)
    assert second.status is Status.PASS, _explain(second, postfix)
    assert second.duration > TIMEOUT, "Dovecot's penalty did not apply; nothing was proven"
    assert second.replies[-1].startswith("535 5.7.8 ")
    assert any("auth_failure_delay budget" in line for line in second.transcript)
    # submit-message logs in after two failures: about 8 s, still inside the budget.
    submit = run_check("submit-message", target)
    assert submit.status is Status.PASS, _explain(submit, postfix)
    assert submit.duration > TIMEOUT
    assert submit.evidence["queue_reply"].startswith("250 2.0.0 Ok: queued as ")
    # Success resets Dovecot's penalty, and the harness's count with it.
    assert authpenalty.failures(target) == 0
    quick = run_check("auth-plain", target)
    assert quick.status is Status.PASS and quick.duration < TIMEOUT, _explain(quick, postfix)


SCENARIO = """\
scenario: penalty
description: a wrong password listed before the logins of two services of one Dovecot
protocols: [submission]
checks:
  - smtp-banner
  - auth-bad-password
  - auth-plain
  - submit-message
"""


def test_a_scenario_runs_failed_logins_last_and_every_login_passes(
    postfix: PostfixLab, tmp_path: Path
) -> None:
    """Two submission services share one Dovecot, so their failures add up: listed
    first, the second wrong password and both submissions timed out at 5 s."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "penalty.yaml").write_text(SCENARIO)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    targets = "".join(
        f"  {service}:\n"
        f"    protocol: submission\n    host: 127.0.0.1\n    port: {postfix.ports[service]}\n"
        f"    server_name: localhost\n    trust: {{ca_file: {postfix.ca_file}}}\n"
        f"    user: {postfix.user}\n    password_env: PF_PASSWORD\n    rcpt_to: {RECIPIENT}\n"
        for service in ("submission", "submission-template")
    )
    (tmp_path / "inventory.yaml").write_text(
        f"version: 1\ndefaults: {{timeout: {TIMEOUT:g}}}\ntargets:\n{targets}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", "pytest.ini",
         "--rootdir", str(tmp_path), "scenarios", "--lab-inventory", "inventory.yaml",
         "--lab-json", "r.json", "-v"],
        cwd=tmp_path, env={**env, "PF_PASSWORD": postfix.password}, capture_output=True,
        text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-4000:] + postfix.logs()
    document = json.loads((tmp_path / "r.json").read_text("utf-8"))
    json_report.validate(document)
    assert {(r["check_id"], r["status"]) for r in document["results"]} == {
        (check, "pass") for check in ("smtp-banner", "auth-bad-password", "auth-plain",
                                      "submit-message")
    }
    assert len(document["results"]) == 8
    ran = [line.split("::")[1].split(" ")[0] for line in done.stdout.splitlines()
           if line.startswith("scenarios/penalty.yaml::")]
    assert [name.split("[")[0] for name in ran[-2:]] == ["auth-bad-password"] * 2, ran
    assert postfix.password not in done.stdout
