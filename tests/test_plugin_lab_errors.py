"""An error inside a lab server's own thread turns the check running then into ERROR.

A lab server that broke has not shown how the software it imitates behaves: whatever the
check concluded from its replies (here a *pass*: the server answers every command as it
should while a task it started raises in its event loop thread) is no verdict. The error
text goes into the summary, the check's own status and summary stay in the evidence, and
checks before and after it on the same server keep their verdicts.
"""

from __future__ import annotations

import json

import pytest

from harness.lab.pool import LabInstance, LabPool
from harness.report import json_report
from harness.results import CheckResult, SkipKind, Status
from harness.scenario import LabServer
from harness.targets import Target

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

SCENARIO = """\
scenario: lab-breaks
description: the lab raises in its loop thread on every EHLO; the relay checks send EHLO
protocols: [submission]
lab:
  - name: sub
    server: smtp
checks:
  - smtp-banner
  - relay-refused
  - check: relay-refused
    id: relay-expect-error
    expect: error
  - check: smtp-banner
    id: banner-after
"""

# Loaded by the pytest run under test (a subprocess): on every EHLO the lab's SMTP handler
# answers normally and leaves behind a callback that raises in the server's event loop
# thread, before the loop serves the client's next command. The banner checks send no EHLO.
CONFTEST = """\
import asyncio

from harness.lab.smtp import LabHandler

original = LabHandler.handle_EHLO


def explode():
    raise RuntimeError("lab EHLO bookkeeping exploded")


async def handle_EHLO(self, server, session, envelope, hostname, responses):
    # (aiosmtpd reads this signature: it must keep the five parameters.)
    asyncio.get_running_loop().call_soon(explode)
    return await original(self, server, session, envelope, hostname, responses)


LabHandler.handle_EHLO = handle_EHLO
"""
TARGET = "submission://lab-sub"


def test_a_lab_thread_error_makes_the_check_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    path = pytester.path / "scenarios" / "lab-breaks.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", str(path), "--lab-json", "r.json"
    )
    result.assert_outcomes(passed=2, failed=2)
    document = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    json_report.validate(document)
    results = {r["check_id"]: r for r in document["results"]}

    relay = results["relay-refused"]
    assert relay["status"] == "error" and relay["outcome"] == "failed"
    assert relay["summary"].startswith("lab server error during the check: ")
    assert "RuntimeError: lab EHLO bookkeeping exploded" in relay["summary"]
    evidence = relay["evidence"]
    assert evidence["check_status"] == "pass"  # what the check alone would have said
    assert evidence["check_summary"].startswith("relaying refused")
    assert any("lab EHLO bookkeeping exploded" in e for e in evidence["lab_server_errors"])
    # expect: error is never met by a broken lab: it is no diagnosis of the server.
    demo = results["relay-expect-error"]
    assert (demo["status"], demo["outcome"]) == ("error", "failed")
    assert "a lab server failed during the check" in demo["message"]
    # Only errors recorded while a check ran count against it.
    for check_id in ("smtp-banner", "banner-after"):
        assert results[check_id]["status"] == "pass", results[check_id]
        assert "lab_server_errors" not in results[check_id]["evidence"]

    out = result.stdout.str()
    assert f"ERROR {TARGET} lab-breaks::relay-refused: lab server error during the check: " in out
    assert "[ERROR] relay-refused: lab server error during the check" in out


class _Part:
    """A lab part with an ``errors`` list, as servers, forwarders and port blocks have."""

    def __init__(self, *errors: str) -> None:
        self.errors = list(errors)

    def stop(self) -> None:
        pass


def _pool_with(*parts: _Part) -> tuple[LabPool, LabServer]:
    server = LabServer(name="x", server="smtp", options={})
    pool = LabPool()
    target = Target(name="lab-x", protocol="submission", host="127.0.0.1", port=1)
    pool._instances[server.key()] = LabInstance(target=target, stoppers=list(parts))
    return pool, server


def test_errors_before_the_mark_do_not_count_and_later_ones_do() -> None:
    old, fresh = _Part("old trouble"), _Part()
    pool, server = _pool_with(old, fresh)
    mark = pool.error_mark(server)
    ok = CheckResult(check="banner", status=Status.PASS, summary="banner: 220 hi")
    assert pool.verify(server, ok, since=mark).status is Status.PASS
    assert "lab_server_errors" not in ok.evidence

    fresh.errors += ["loop crashed: KeyError: 'x'\nTraceback ...", "second"]
    skipped = CheckResult(check="login", status=Status.SKIP, summary="no user",
                          skip_kind=SkipKind.COULD_NOT_RUN)
    result = pool.verify(server, skipped, since=mark)
    assert result.status is Status.ERROR and result.skip_kind is None
    assert result.summary == (
        "lab server error during the check: loop crashed: KeyError: 'x' Traceback ... "
        "(+1 more); the check itself said skip: no user"
    )
    assert result.evidence["lab_server_errors"] == fresh.errors
    assert (result.evidence["check_status"], result.evidence["check_summary"]) == (
        "skip", "no user"
    )
