"""One diagnosis per unreachable target, within one timeout plus a second.

Before the first check of a remote target the plugin connects once with the target's
timeout. A refused, filtered or unreachable port gives one ERROR, in the words of
``harness.probe``'s classification, and every other check of the target skips (could not
run) naming it; without that, each check would wait out its own timeout and report the
same cause again.

Two ways to make a port unreachable, both real kernel behaviour: on loopback without
root (a bound, non-listening socket answers RST; a listener with a full accept queue
drops SYNs, like a DROP rule: ``harness.lab.portblock``), and, as root, a network
namespace with genuine DROP (25) and REJECT (465) rules, where the run itself happens
inside the client namespace.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.lab.portblock import (
    NETNS_SKIP_REASON,
    NetnsError,
    NetnsLab,
    PortBlock,
    bind_socket,
    netns_unavailable,
)
from harness.report import json_report

pytest_plugins = ["pytester"]
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (TCP_INFO)")
pytestmark = pytest.mark.timeout(120)

TIMEOUT = 1.0
SMTP_SCENARIO = """\
scenario: mail-reach
description: ten mail checks against a target that cannot be reached
protocols: [smtp, submission, submissions]
checks:
  - smtp-banner
  - ehlo
  - starttls
  - smtp-certificate-trust
  - auth-not-before-tls
  - auth-bad-password
  - relay-refused
  - extensions
  - auth-plain
  - submit-message
"""
FTPS_SCENARIO = """\
scenario: ftps-reach
description: eight FTPS checks against a target that cannot be reached
protocols: [ftps]
checks:
  - banner
  - auth-tls
  - certificate-trust
  - legacy-tls-refused
  - login
  - plaintext-login-refused
  - pasv-address
  - transfers
"""


def _write(directory: Path) -> Path:
    scenarios = directory / "scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    (scenarios / "mail.yaml").write_text(SMTP_SCENARIO)
    (scenarios / "ftps.yaml").write_text(FTPS_SCENARIO)
    (directory / "pytest.ini").write_text("[pytest]\n")
    return scenarios


def _by_target(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in document["results"]:
        grouped.setdefault(result["target"], []).append(result)
    return grouped


def _assert_one_diagnosis(results: list[dict[str, Any]], words: str) -> None:
    """One ERROR naming the cause in the probe's words; the rest skip, naming it."""
    errors = [r for r in results if r["status"] == "error"]
    assert len(errors) == 1, [(r["check_id"], r["status"], r["summary"]) for r in results]
    error = errors[0]
    assert words in error["summary"], error["summary"]
    assert "see `lab probe " in error["summary"]
    assert error["evidence"]["check_run"] is False
    case = f"{error['scenario']}::{error['check_id']}"
    skipped = [r for r in results if r is not error]
    assert skipped and all(
        (r["status"], r["skip_kind"], r["outcome"]) == ("skip", "could-not-run", "skipped")
        and r["summary"].startswith(f"target unreachable: see {case} (")
        for r in skipped
    ), [(r["check_id"], r["status"], r["summary"]) for r in skipped]
    # The target cost one timeout plus a second, not one timeout per check.
    assert sum(r["duration"] for r in results) <= TIMEOUT + 1.0


@linux_only
def test_refused_and_filtered_targets_on_loopback(pytester: pytest.Pytester) -> None:
    scenarios = _write(pytester.path)
    refused = bind_socket("127.0.0.1", 0)  # bound, not listening: the kernel answers RST
    with refused, PortBlock("filtered", [("127.0.0.2", 0)]) as block:
        closed_port = refused.getsockname()[1]
        urls = [
            f"submission://127.0.0.1:{closed_port}?timeout={TIMEOUT:g}",
            f"ftps://127.0.0.2:{block.port}?timeout={TIMEOUT:g}",
        ]
        start = time.monotonic()
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", str(scenarios), "--lab-json", "r.json",
            *(arg for url in urls for arg in ("--lab-url", url)),
        )
        took = time.monotonic() - start
    result.assert_outcomes(failed=2, skipped=16)
    document = json.loads((pytester.path / "r.json").read_text("utf-8"))
    json_report.validate(document)
    targets = _by_target(document)
    _assert_one_diagnosis(
        targets["submission://127.0.0.1"],
        "connection refused: closed (RST: nothing listens on port "
        f"{closed_port}, or a firewall REJECT with tcp-reset); see `lab probe 127.0.0.1 "
        f"--ports {closed_port}`",
    )
    _assert_one_diagnosis(
        targets["ftps://127.0.0.2"],
        "no answer within 1 s: filtered (a DROP rule, or the host is down)",
    )
    # The whole session, collection and interpreter start included: far below the
    # 18 timeouts it used to cost.
    assert document["run"]["duration"] <= 2 * (TIMEOUT + 1.0) + 3.0, document["run"]
    assert took < 18 * TIMEOUT
    # pytest's own words carry the diagnosis and the skip reason too.
    text = result.stdout.str()
    assert "check ended error, expected pass" in text
    assert "could not run: target unreachable: see ftps-reach::banner (filtered)" in text


@linux_only
def test_without_the_preflight_every_check_waits_for_its_own_timeout(
    pytester: pytest.Pytester,
) -> None:
    """``--lab-no-preflight``: the old behaviour, one error per check (the bench's "before")."""
    scenarios = _write(pytester.path)
    (scenarios / "mail.yaml").unlink()
    with PortBlock("filtered", [("127.0.0.2", 0)]) as block:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", str(scenarios), "--lab-json", "r.json",
            "--lab-url", f"ftps://127.0.0.2:{block.port}?timeout=0.5", "--lab-no-preflight",
        )
    document = json.loads((pytester.path / "r.json").read_text("utf-8"))
    statuses = [r["status"] for r in document["results"]]
    # Each check that connects diagnosed the same port (the three that need a login
    # skip first: no credentials in the URL).
    assert statuses.count("error") == 5 and statuses.count("skip") == 3, statuses
    assert sum(r["duration"] for r in document["results"]) >= 5 * 0.5
    result.assert_outcomes(failed=statuses.count("error"), skipped=statuses.count("skip"))


# -- a real firewall, as root -------------------------------------------------------------

_REASON = netns_unavailable()


@pytest.mark.netns
@pytest.mark.skipif(_REASON is not None, reason=_REASON or NETNS_SKIP_REASON)
def test_drop_on_25_and_reject_on_465_in_a_network_namespace(tmp_path: Path) -> None:
    lab = NetnsLab()
    try:
        lab.start()
    except NetnsError as exc:
        if "Operation not permitted" in str(exc) or "Permission denied" in str(exc):
            pytest.skip(f"{NETNS_SKIP_REASON}: {exc}")
        raise
    with lab:
        lab.block(25, "drop")
        lab.block(465, "reject")
        scenarios = _write(tmp_path)
        server = lab.server_address
        report = tmp_path / "r.json"
        start = time.monotonic()
        done = lab.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c",
             str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(scenarios),
             "--lab-json", str(report),
             "--lab-url", f"smtp://{server}:25?timeout={TIMEOUT:g}",
             "--lab-url", f"submissions://{server}:465?timeout={TIMEOUT:g}"],
            timeout=60,
        )
        took = time.monotonic() - start
        rules = lab.rules()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads(report.read_text("utf-8"))
    json_report.validate(document)
    targets = _by_target(document)
    assert set(targets) == {f"smtp://{server}", f"submissions://{server}"}, rules
    _assert_one_diagnosis(
        targets[f"smtp://{server}"],
        "no answer within 1 s: filtered (a DROP rule, e.g. outbound port 25 blocking); "
        f"see `lab probe {server} --ports 25`",
    )
    _assert_one_diagnosis(
        targets[f"submissions://{server}"],
        "connection refused: closed (RST: nothing listens on port 465, or a firewall "
        f"REJECT with tcp-reset); see `lab probe {server} --ports 465`",
    )
    assert document["run"]["duration"] <= 2 * (TIMEOUT + 1.0) + 3.0, document["run"]
    assert took < 20 * TIMEOUT


@linux_only
def test_op25b_diagnose_is_the_diagnosis_when_it_runs_first(pytester: pytest.Pytester) -> None:
    """op25b-diagnose probes the ports itself and its verdict names the block; the
    target's other checks skip naming it, and the preflight costs no second timeout."""
    scenarios = pytester.path / "scenarios"
    scenarios.mkdir()
    (scenarios / "op25b.yaml").write_text(
        "scenario: op25b-first\nprotocols: [smtp]\nchecks:\n"
        "  - op25b-diagnose\n  - smtp-banner\n  - ehlo\n  - starttls\n"
    )
    with PortBlock("filtered", [("127.0.0.2", 0)]) as block:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", str(scenarios), "--lab-json", "r.json",
            "--lab-url", f"smtp://127.0.0.2:{block.port}?timeout={TIMEOUT:g}",
        )
    result.assert_outcomes(failed=1, skipped=3)
    document = json.loads((pytester.path / "r.json").read_text("utf-8"))
    results = {r["check_id"]: r for r in document["results"]}
    diagnose = results.pop("op25b-diagnose")
    # Nothing answers on 127.0.0.2: the filtered "port 25" and the refused 587 and 465.
    assert diagnose["status"] == "fail" and diagnose["summary"].startswith("all-blocked: ")
    for record in results.values():
        assert record["summary"] == "target unreachable: see op25b-first::op25b-diagnose " \
            "(filtered)", record
    assert sum(r["duration"] for r in document["results"]) <= TIMEOUT + 1.0
