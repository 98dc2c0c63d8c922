"""A fleet run: the shipped scenarios against an inventory of servers, as an operator would.

Six embedded servers with different policies and certificates are started here, as
"remote" targets the plugin knows nothing about: FTPS ``require`` with session reuse
required and a passive range (lab CA), FTPS ``allow`` (lab CA), implicit FTPS with the
IIS-style self-signed certificate trusted by its pin, and mail in the submission (587),
submissions (465) and MTA (25) roles. As root, a real vsftpd (:mod:`interop.vsftpd_lab`)
and a real Postfix submission service (:mod:`interop.postfix_lab`) join the fleet when
the interop tests of this module are selected.

An inventory naming them all (passwords only in the subprocess environment) is written,
and ``python -m pytest scenarios --lab-inventory ...`` runs every shipped scenario
against it twice: serially and with ``-n 2 --dist loadgroup``. Both runs must agree item
for item, and the three reports must say what pytest said. Which checks pass on which
server is asserted with the reason, so a check that starts passing for the wrong reason
(or a fleet member that silently drops out) fails here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml
from interop import postfix_lab, vsftpd_lab

from harness.certs import LabPKI, lab_pki
from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser
from harness.lab.mailbox import Mailbox
from harness.lab.pool import free_port_range
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.report import json_report
from harness.scenario import Scenario, load_scenario

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
RUN_TIMEOUT = 60.0
LAB_DOMAIN = "ftps-lab.test"
RCPT_TO = f"postmaster@{LAB_DOMAIN}"

# One progress line per item: "path::id[target] PASSED [ 10%]" serially,
# "[gw0] [ 10%] PASSED path::id[target]@target" under pytest-xdist (loadgroup's suffix).
SERIAL_LINE = re.compile(r"^(scenarios/\S+) (PASSED|FAILED|SKIPPED|ERROR)\b", re.M)
XDIST_LINE = re.compile(
    r"^\[gw\d+\] \[\s*\d+%\] (PASSED|FAILED|SKIPPED|ERROR) (scenarios/[^\s@]+)", re.M
)
OUTCOME_WORDS = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped", "ERROR": "error"}

# Why a check may skip against a correctly configured server. Anything else is a finding.
EXPLAINED_SKIPS = (
    # The lab's fault demonstrations (expect: fail/error) describe its broken servers.
    re.compile(
        r"^expect: (fail|error) demonstrates a fault of lab server\(s\) .+; "
        r"not applied to remote targets$"
    ),
    # Steps pinned to named lab servers (one simulated network's OP25B verdict, one NAT
    # variant) say nothing about a remote target.
    re.compile(r"^\S+ is about lab server\(s\) .+ only; not applied to remote targets$"),
    # Implicit FTPS is TLS from the first byte: nothing to send before it.
    re.compile(r"^implicit FTPS has no plaintext phase$"),
)


# --- the fleet ------------------------------------------------------------------------------


@dataclass
class Member:
    """One inventory target and the server behind it."""

    name: str
    protocol: str
    port: int
    fields: dict[str, Any]  # inventory fields besides protocol, host and port
    kind: str = "embedded"  # embedded | vsftpd | postfix
    password: str | None = field(default=None, repr=False)
    mailbox: Mailbox | None = None

    @property
    def id(self) -> str:
        return f"{self.protocol}://{self.name}"

    @property
    def user(self) -> str | None:
        return self.fields.get("user")

    @property
    def password_env(self) -> str:
        return "FLEET_PW_" + re.sub(r"\W", "_", self.name.upper())

    def inventory_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"protocol": self.protocol, "host": "127.0.0.1", "port": self.port}
        entry.update(self.fields)
        if self.password is not None:
            entry["password_env"] = self.password_env
        return entry


@dataclass
class Run:
    """One ``pytest scenarios`` subprocess and the reports it wrote."""

    directory: Path
    process: subprocess.CompletedProcess[str] = field(repr=False)

    @property
    def junit(self) -> Path:
        return self.directory / "lab.xml"

    @property
    def json(self) -> Path:
        return self.directory / "lab.json"

    @property
    def html(self) -> Path:
        return self.directory / "lab.html"

    @cached_property
    def document(self) -> dict[str, Any]:
        return json.loads(self.json.read_text(encoding="utf-8"))

    @cached_property
    def outcomes(self) -> dict[str, str]:
        """nodeid -> passed/failed/skipped/error, from pytest's own progress lines."""
        out = self.process.stdout
        found = [(node, word) for node, word in SERIAL_LINE.findall(out)]
        found += [(node, word) for word, node in XDIST_LINE.findall(out)]
        outcomes = {node: OUTCOME_WORDS[word] for node, word in found}
        assert len(outcomes) == len(found), "an item was reported twice"
        return outcomes

    def results(self) -> dict[str, dict[str, Any]]:
        return {r["nodeid"]: r for r in self.document["results"]}

    def texts(self) -> dict[str, str]:
        """Everything this run left behind that a person or a CI system reads."""
        texts = {p.name: p.read_text(encoding="utf-8") for p in (self.junit, self.json, self.html)}
        texts["stdout"], texts["stderr"] = self.process.stdout, self.process.stderr
        return texts


@dataclass
class Fleet:
    """The running servers, their inventory and the two runs against it."""

    directory: Path
    inventory: Path
    members: list[Member]
    passwords: dict[str, str] = field(repr=False)  # variable -> password
    missing: dict[str, str]  # vsftpd/postfix -> why it is not in the fleet
    serial: Run | None = field(default=None, repr=False)
    parallel: Run | None = field(default=None, repr=False)
    postfix: postfix_lab.PostfixLab | None = field(default=None, repr=False)
    vsftpd_user: vsftpd_lab.SystemUser | None = None

    @property
    def runs(self) -> tuple[Run, Run]:
        assert self.serial is not None and self.parallel is not None
        return self.serial, self.parallel

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
        return {**clean, **self.passwords}


def _embedded_members(stack: contextlib.ExitStack, pki: LabPKI, ca: str) -> list[Member]:
    """The six embedded servers, each with its own user and random password."""
    lab, iis = pki.files("lab"), pki.files("iis")
    passive = free_port_range(8, ("127.0.0.1",))
    members: list[Member] = []

    def ftps(name: str, protocol: str, config: FTPSServerConfig, fields: dict[str, Any]) -> None:
        password = config.users[0].password
        server = stack.enter_context(FTPSLabServer(config))
        members.append(Member(name, protocol, server.port, fields, password=password))

    def mail(name: str, protocol: str, config: SMTPServerConfig, fields: dict[str, Any]) -> None:
        server = stack.enter_context(SMTPLabServer(config))
        password = next(iter(config.users.values()), None)
        members.append(
            Member(name, protocol, server.port, fields, password=password, mailbox=server.mailbox)
        )

    ca_trust = {"ca_file": ca}
    ftp_user = "deploy"
    ftps("ftps-require", "ftps", FTPSServerConfig(
        certfile=lab.cert, keyfile=lab.key, policy="require", require_session_reuse=True,
        passive_ports=passive, users=[FTPUser(ftp_user, secrets.token_urlsafe(18))],
    ), {
        "trust": ca_trust, "user": ftp_user, "policy": "require",
        "passive_address": "127.0.0.1", "passive_ports": list(passive),
        "session_reuse_required": True, "groups": ["ftp", "strict"],
        "labels": {"software": "pyftpdlib", "site": "Require SSL"},
    })  # fmt: skip
    ftps("ftps-allow", "ftps", FTPSServerConfig(
        certfile=lab.cert, keyfile=lab.key, policy="allow",
        users=[FTPUser(ftp_user, secrets.token_urlsafe(18))],
    ), {
        "trust": ca_trust, "user": ftp_user, "policy": "allow",
        "passive_address": "127.0.0.1", "session_reuse_required": False,
        "groups": ["ftp"], "labels": {"software": "pyftpdlib", "site": "Allow SSL"},
    })  # fmt: skip
    ftps("iis-implicit", "ftps-implicit", FTPSServerConfig(
        certfile=iis.cert, keyfile=iis.key, implicit=True, require_session_reuse=True,
        users=[FTPUser(ftp_user, secrets.token_urlsafe(18))],
    ), {
        "trust": {"pin_sha256": pki.fingerprint("iis")}, "user": ftp_user,
        "policy": "require", "passive_address": "127.0.0.1",
        "session_reuse_required": True, "groups": ["ftp", "strict", "iis"],
        "labels": {"software": "pyftpdlib", "site": "IIS port 990"},
    })  # fmt: skip
    mail_user = "probe"
    for name, role, protocol in (
        ("mail-587", "submission", "submission"),
        ("mail-465", "submissions", "submissions"),
    ):
        mail(name, protocol, SMTPServerConfig(
            role=role, users={mail_user: secrets.token_urlsafe(18)},
            cert_file=lab.cert, key_file=lab.key,
        ), {
            "trust": ca_trust, "user": mail_user, "rcpt_to": RCPT_TO,
            "groups": ["mail"], "labels": {"software": "aiosmtpd", "role": role},
        })  # fmt: skip
    mail("mta-25", "smtp", SMTPServerConfig(role="mta", cert_file=lab.cert, key_file=lab.key), {
        "trust": ca_trust, "rcpt_to": RCPT_TO, "groups": ["mail"],
        "labels": {"software": "aiosmtpd", "role": "mta"},
    })  # fmt: skip
    return members


def _interop_selected(request: pytest.FixtureRequest) -> bool:
    """Real servers join the fleet only when this module's interop tests will run."""
    return any(
        getattr(item, "module", None) is request.module and item.get_closest_marker("interop")
        for item in request.session.items
    )


def _add_vsftpd(
    stack: contextlib.ExitStack, fleet: Fleet, pki: LabPKI, directory: Path, ca: str
) -> None:
    reason = vsftpd_lab.missing_prerequisites()
    if reason is not None:
        fleet.missing["vsftpd"] = reason
        return
    try:
        user = stack.enter_context(vsftpd_lab.system_user())
        server = stack.enter_context(vsftpd_lab.running_vsftpd(directory, pki))
    except vsftpd_lab.VsftpdUnavailable as exc:
        fleet.missing["vsftpd"] = str(exc)
        return
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        # Installed but broken: the interop test fails with this, the rest still runs.
        fleet.missing["vsftpd"] = f"FAILED to start: {exc}"
        return
    fleet.vsftpd_user = user
    fleet.members.append(Member("vsftpd", "ftps", server.port, {
        "trust": {"ca_file": ca}, "user": user.name, "policy": "require",
        "passive_address": "127.0.0.1", "passive_ports": list(server.passive_ports),
        "session_reuse_required": True, "groups": ["ftp", "strict", "real"],
        "labels": {"software": "vsftpd", "banner": server.banner},
    }, kind="vsftpd", password=user.password))  # fmt: skip


def _add_postfix(stack: contextlib.ExitStack, fleet: Fleet, pki: LabPKI, ca: str) -> None:
    reason = postfix_lab.missing_prerequisites()
    if reason is not None:
        fleet.missing["postfix"] = reason
        return
    files = pki.files("lab")
    try:
        lab = stack.enter_context(postfix_lab.postfix_lab(files.cert, files.key, pki.ca_file))
    except (postfix_lab.LabStartError, OSError, subprocess.SubprocessError) as exc:
        fleet.missing["postfix"] = f"FAILED to start: {exc}"
        return
    fleet.postfix = lab
    fleet.members.append(Member("postfix", "submission", lab.ports["submission"], {
        "trust": {"ca_file": ca}, "user": lab.user, "rcpt_to": postfix_lab.RECIPIENT,
        "groups": ["mail", "real"], "labels": {"software": "postfix+dovecot"},
    }, kind="postfix", password=lab.password))  # fmt: skip


def write_inventory(path: Path, members: list[Member]) -> None:
    """The inventory an operator would keep: names, endpoints, trust, expectations."""
    document = {
        "version": 1,
        "defaults": {"timeout": 5, "server_name": "localhost"},
        "targets": {member.name: member.inventory_entry() for member in members},
    }
    path.write_text(
        "# The fleet of tests/test_fleet.py; passwords are in the environment only.\n"
        + yaml.safe_dump(document, sort_keys=False)
    )


def run_scenarios(fleet: Fleet, name: str, *extra: str) -> Run:
    """The shipped scenarios against the fleet, as CI would run them, every report on."""
    directory = fleet.directory / name
    directory.mkdir()
    process = subprocess.run(
        [sys.executable, "-m", "pytest", str(SCENARIOS),
         "--lab-inventory", str(fleet.inventory),
         "--lab-junit", str(directory / "lab.xml"),
         "--lab-json", str(directory / "lab.json"),
         "--lab-html", str(directory / "lab.html"),
         "-p", "no:cacheprovider", "-rA", "-v", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=fleet.env(),
    )  # fmt: skip
    return Run(directory, process)


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    pki = lab_pki()
    directory = tmp_path_factory.mktemp("fleet")
    ca = "lab-ca.pem"  # relative to the inventory, as an operator would keep it
    shutil.copyfile(pki.ca_file, directory / ca)
    with contextlib.ExitStack() as stack:
        fleet = Fleet(directory, directory / "inventory.yaml", [], {}, {})
        fleet.members.extend(_embedded_members(stack, pki, ca))
        if _interop_selected(request):
            _add_vsftpd(stack, fleet, pki, tmp_path_factory.mktemp("vsftpd"), ca)
            _add_postfix(stack, fleet, pki, ca)
        else:
            for kind in ("vsftpd", "postfix"):
                fleet.missing[kind] = "the interop tests of this module are not selected"
        fleet.passwords = {m.password_env: m.password for m in fleet.members if m.password}
        write_inventory(fleet.inventory, fleet.members)
        fleet.serial = run_scenarios(fleet, "serial")
        fleet.parallel = run_scenarios(fleet, "parallel", "-n", "2", "--dist", "loadgroup")
        yield fleet


@pytest.fixture(scope="module")
def scenarios() -> dict[str, Scenario]:
    loaded = [load_scenario(path) for path in sorted(SCENARIOS.glob("*.yaml"))]
    return {scenario.name: scenario for scenario in loaded}


def _for(fleet: Fleet, kind: str) -> Member:
    """The fleet member of a real server, or a skip (or failure) saying why it is absent."""
    reason = fleet.missing.get(kind)
    if reason is not None:
        if reason.startswith("FAILED"):
            pytest.fail(f"{kind}: {reason}")
        pytest.skip(f"{kind} is not in the fleet: {reason}")
    return next(m for m in fleet.members if m.kind == kind)


# --- both runs --------------------------------------------------------------------------


def test_the_inventory_names_every_server_without_a_password(fleet: Fleet) -> None:
    text = fleet.inventory.read_text()
    data = yaml.safe_load(text)
    embedded = [m for m in fleet.members if m.kind == "embedded"]
    assert len(embedded) >= 5
    assert list(data["targets"]) == [m.name for m in fleet.members]
    for member in fleet.members:
        entry = data["targets"][member.name]
        assert (entry["host"], entry["port"]) == ("127.0.0.1", member.port)
        assert set(entry["trust"]) <= {"ca_file", "pin_sha256"}
    for password in fleet.passwords.values():
        assert password not in text
    header = f"ftps-lab: {len(fleet.members)} remote target(s): " + ", ".join(
        m.id for m in fleet.members
    )
    for run in fleet.runs:
        assert header in run.process.stdout


def _pytest_count(line: str, word: str) -> int:
    """The number pytest printed before ``word`` in its last line; 0 when it left it out."""
    match = re.search(rf"(\d+) {word}\b", line)
    return int(match.group(1)) if match else 0


def test_serial_and_parallel_runs_agree_item_for_item(fleet: Fleet) -> None:
    serial, parallel = fleet.runs
    for run in (serial, parallel):
        # Only explained failures (test_only_explained_results_fail) may turn a run red.
        failed = any(o in ("failed", "error") for o in run.outcomes.values())
        assert run.process.returncode == (1 if failed else 0), (
            run.process.stdout[-3000:] + run.process.stderr
        )
        assert "Traceback" not in run.process.stdout + run.process.stderr
        # The console summary: one line per target.
        summary = run.process.stdout.split("ftps-lab summary", 1)[1].splitlines()
        for member in fleet.members:
            assert any(re.match(rf"{re.escape(member.id)}\s+\d+ pass", x) for x in summary)
    assert "[gw1]" in parallel.process.stdout  # it really ran on two workers
    assert len(serial.outcomes) >= 150
    assert parallel.outcomes == serial.outcomes
    # pytest leaves a count out of its last line when it is zero (a fleet without Postfix
    # has no failure at all), so read each count on its own.
    last_line = serial.process.stdout.strip().splitlines()[-1]
    said = [_pytest_count(last_line, word) for word in ("failed", "passed", "skipped")]
    counted = [list(serial.outcomes.values()).count(w) for w in ("failed", "passed", "skipped")]
    assert counted == said, last_line

    def statuses(run: Run) -> dict[str, str]:
        return {node: r["status"] for node, r in run.results().items()}

    assert statuses(parallel) == statuses(serial)
    assert parallel.document["totals"] == serial.document["totals"]


def test_json_validates_and_says_what_pytest_said(fleet: Fleet) -> None:
    for run in fleet.runs:
        document = run.document
        json_report.validate(document)
        assert document["collection_errors"] == []
        # Red exactly when some item failed: whatever really ran, with or without Postfix.
        assert document["run"]["exit_status"] == (1 if "failed" in run.outcomes.values() else 0)
        results = run.results()
        assert len(results) == len(document["results"])  # one record per item
        assert {node: r["outcome"] for node, r in results.items()} == run.outcomes
        for record in results.values():
            assert (record["outcome"] == "skipped") == (record["status"] == "skip"), record
            assert (record["outcome"] == "failed") == (not record["as_expected"]), record
        totals = document["totals"]
        assert totals["total"] == len(results)
        assert totals["unexpected"] == list(run.outcomes.values()).count("failed")
        targets = {t["id"]: t for t in document["targets"]}
        assert set(targets) == {m.id for m in fleet.members}
        for member in fleet.members:
            info = targets[member.id]
            assert info["kind"] == "remote" and info["protocol"] == member.protocol
            assert (info["host"], info["port"], info["user"]) == (
                "127.0.0.1",
                member.port,
                member.user,
            )
            assert info["groups"] == member.fields["groups"]
            assert info["labels"] == member.fields["labels"]
            mine = [r for r in results.values() if r["target"] == member.id]
            statuses = ("pass", "warn", "fail", "skip", "error")
            assert sum(info["counts"][s] for s in statuses) == len(mine)


def test_junit_has_one_suite_per_target_with_its_properties(fleet: Fleet) -> None:
    for run in fleet.runs:
        root = ET.parse(run.junit).getroot()
        suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
        assert len(suites) >= 5
        assert set(suites) == {m.id for m in fleet.members}  # no collection-error suite
        records = run.results()
        assert root.get("tests") == str(len(records))
        for member in fleet.members:
            suite = suites[member.id]
            props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
            assert props["target"] == member.id and props["protocol"] == member.protocol
            assert props["kind"] == "remote"
            assert props["endpoint"] == f"127.0.0.1:{member.port}"
            assert props["groups"] == ",".join(member.fields["groups"])
            for key, value in member.fields["labels"].items():
                assert props[f"label.{key}"] == value
            mine = {
                (r["scenario"], r["check_id"]): r
                for r in records.values()
                if r["target"] == member.id
            }
            cases = suite.findall("testcase")
            assert suite.get("tests") == str(len(cases)) == str(len(mine))
            versions = set()
            for case in cases:
                scenario, _, check_id = (case.get("name") or "").partition("::")
                record = mine[(scenario, check_id)]
                # jenkins-junit.xsd: a test case's facts are `key: value` lines heading
                # its system-out (no <properties> on a test case).
                head = (case.findtext("system-out") or "").split("\ntranscript:")[0]
                values = dict(line.split(": ", 1) for line in head.splitlines()
                              if ": " in line and not line.startswith("WARN "))
                assert values["target"] == member.id
                assert values["protocol"] == member.protocol
                assert values.get("tls_version", "") == record["tls_version"]
                versions.add(values.get("tls_version", ""))
                assert values["status"] == record["status"]
                failed = case.find("failure") is not None or case.find("error") is not None
                assert failed == (record["outcome"] == "failed")
                assert (case.find("skipped") is not None) == (record["outcome"] == "skipped")
            # A TLS session was made with every target, and JUnit says which version.
            assert versions & {"TLSv1.2", "TLSv1.3"}, member.id


def test_html_names_every_target_and_has_one_matrix_cell_per_result(fleet: Fleet) -> None:
    for run in fleet.runs:
        page = run.html.read_text(encoding="utf-8")
        results = run.document["results"]
        for member in fleet.members:
            assert f'<th scope="col">{member.id}</th>' in page
            assert f'<th scope="row">{member.id}</th>' in page  # the targets table
        anchors = re.findall(r'<a class="cell" href="#(r-\d+)"', page)
        assert sorted(anchors) == sorted(f"r-{i}" for i in range(len(results)))
        # The rest of each checks x targets matrix is n/a, nothing more.
        slots = 0
        for name in {r["scenario"] for r in results}:
            mine = [r for r in results if r["scenario"] == name]
            slots += len({r["check_id"] for r in mine}) * len({r["target"] for r in mine})
        assert page.count('<td class="none">') == slots - len(results)
        for index, record in enumerate(results):
            assert f'id="r-{index}"' in page
            assert f'<td class="{record["status"]}' in page


# --- what each server is judged ------------------------------------------------------------


def _records(run: Run, member: Member) -> list[dict[str, Any]]:
    return [r for r in run.document["results"] if r["target"] == member.id]


def _by_check(run: Run, member: Member, scenario: str) -> dict[str, dict[str, Any]]:
    return {r["check_id"]: r for r in _records(run, member) if r["scenario"] == scenario}


def _explained_skip(record: dict[str, Any]) -> bool:
    """Every explained skip is "not applicable": nothing a correct server could change."""
    reason = (record["summary"] or record["message"]).removeprefix("not applicable: ")
    return record["skip_kind"] == "not-applicable" and any(
        pattern.match(reason) for pattern in EXPLAINED_SKIPS
    )


def test_every_check_on_the_embedded_servers_passes_or_skips_for_a_reason(
    fleet: Fleet, scenarios: dict[str, Scenario]
) -> None:
    serial, _ = fleet.runs
    for member in (m for m in fleet.members if m.kind == "embedded"):
        records = _records(serial, member)
        assert len(records) >= 10, member.id
        ran = {r["check"] for r in records if r["status"] == "pass"}
        assert ran, member.id
        for record in records:
            where = f"{record['nodeid']}: {record['summary']}"
            assert record["status"] in ("pass", "warn", "skip"), where
            if record["status"] == "skip":
                assert _explained_skip(record), where
            if record["status"] == "warn":
                # The one known deviation of the embedded mail servers: aiosmtpd offers
                # no PIPELINING, ENHANCEDSTATUSCODES or DSN (RFC 6409 SHOULDs).
                assert record["check"] == "extensions", where
                assert record["summary"].endswith("PIPELINING, ENHANCEDSTATUSCODES, DSN"), where
    # The fault demonstrations skip, and only they (plus implicit FTPS's plaintext phase).
    demos = {
        (scenario.name, entry.id)
        for scenario in scenarios.values()
        if scenario.lab
        for entry in scenario.checks
        if entry.expect != "pass"
    }
    skipped_demos = {
        (r["scenario"], r["check_id"])
        for r in serial.document["results"]
        if r["status"] == "skip" and "demonstrates a fault" in r["summary"]
    }
    assert skipped_demos == demos
    assert len(skipped_demos) >= 15


def test_each_ftps_server_is_judged_by_its_own_policy(fleet: Fleet) -> None:
    serial, _ = fleet.runs
    require = _by_check(serial, fleet.member("ftps-require"), "iis-ftps-self-signed")
    allow = _by_check(serial, fleet.member("ftps-allow"), "iis-ftps-self-signed")
    implicit = _by_check(serial, fleet.member("iis-implicit"), "iis-ftps-self-signed")

    assert "plaintext USER refused" in require["plaintext-login-refused"]["summary"]
    assert (
        "plaintext login allowed (230), as the policy says"
        in (allow["plaintext-login-refused"]["summary"])
    )
    assert "clear-text transfer was refused" in require["prot-c-refused"]["summary"]
    assert "unprotected data connection allowed" in allow["prot-c-refused"]["summary"]
    for strict in (require, implicit):
        assert "server requires session reuse: yes" in strict["data-session-reuse"]["summary"]
    assert "server requires session reuse: no" in allow["data-session-reuse"]["summary"]
    assert require["certificate-trust"]["summary"] == "certificate trusted (ca)"
    assert implicit["certificate-trust"]["summary"] == "certificate trusted (pin)"
    assert "self-signed" in implicit["certificate-lint"]["summary"]
    low, high = fleet.member("ftps-require").fields["passive_ports"]
    announced = re.search(r"PASV announces 127\.0\.0\.1:(\d+)", require["pasv-address"]["summary"])
    assert announced is not None and low <= int(announced.group(1)) <= high
    for checks in (require, allow, implicit):
        for tls in ("1.2", "1.3"):
            transfer = checks[f"transfers-tls{tls}"]
            assert transfer["tls_version"] == f"TLSv{tls}"
            assert f"round-tripped intact over TLSv{tls}" in transfer["summary"]


def test_simulated_network_verdicts_are_not_applied_to_remote_targets(
    fleet: Fleet, scenarios: dict[str, Scenario]
) -> None:
    """op25b-diagnose.yaml asserts the verdict of five simulated networks, each step pinned
    to its lab network; a remote target is on one real network, so those steps skip with
    the reason instead of failing four times out of five."""
    pinned = {entry.id for entry in scenarios["op25b-diagnose"].checks if entry.targets}
    assert len(pinned) >= 5
    serial, _ = fleet.runs
    mail = [m for m in fleet.members if m.protocol in ("submission", "submissions")]
    for member in mail:
        records = _by_check(serial, member, "op25b-diagnose")
        assert pinned <= set(records), member.id
        for check_id in pinned:
            record = records[check_id]
            assert record["status"] == "skip", record["nodeid"]
            assert "is about lab server(s)" in record["summary"]


def _vsftpd_without_feat_auth_tls(member: Member) -> bool:
    """vsftpd up to 3.0.3 lists AUTH TLS in FEAT only with ssl_tlsv1=YES, which the lab's
    vsftpd (like any hardened one) switches off; tests/interop/test_vsftpd.py proves it."""
    return re.search(r"vsFTPd 3\.0\.[0-3]\b", member.fields["labels"]["banner"]) is not None


def test_only_explained_results_fail(fleet: Fleet) -> None:
    """Nothing fails. (vsftpd 3.0.3's FEAT without AUTH TLS is a warning now: AUTH TLS
    works, see test_vsftpd_in_the_fleet.)"""
    explained: set[str] = set()
    for run in fleet.runs:
        failed = {node for node, outcome in run.outcomes.items() if outcome in ("failed", "error")}
        assert failed <= explained, sorted(failed - explained)


def test_submitted_messages_arrive_byte_for_byte(fleet: Fleet) -> None:
    """submit-message cannot see a remote mailbox; these servers' mailboxes are here."""
    for run in fleet.runs:
        for member in (m for m in fleet.members if m.mailbox is not None):
            submitted = [
                r
                for r in _records(run, member)
                if r["check"] == "submit-message" and r["status"] != "skip"
            ]
            assert submitted, member.id
            for record in submitted:
                assert record["status"] == "pass", record["summary"]
                evidence = record["evidence"]
                assert member.mailbox is not None
                stored = member.mailbox.find(evidence["message_id"])
                assert stored is not None, record["nodeid"]
                assert stored.sha256 == evidence["sha256"]
                assert stored.rcpt_tos == (RCPT_TO,)


# --- secrets and bad inventories ----------------------------------------------------------


def _forms(user: str | None, password: str) -> list[str]:
    """The password raw, base64, and as the SASL PLAIN blob that carries it."""
    blob = f"\0{user or ''}\0{password}".encode()
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(blob).decode(),
    ]


def test_no_output_contains_a_password(fleet: Fleet) -> None:
    forms = {
        form: member.name
        for member in fleet.members
        if member.password
        for form in _forms(member.user, member.password)
    }
    assert len(forms) >= 3 * 5
    for run in fleet.runs:
        # The passwords were used: every login and AUTH with them worked.
        logins = [r for r in run.document["results"] if r["check"] in ("login", "auth-plain")]
        used = {r["target"] for r in logins if r["status"] == "pass"}
        assert used == {m.id for m in fleet.members if m.password}
        texts = run.texts()
        assert all(len(texts[name]) > 1000 for name in ("lab.xml", "lab.json", "lab.html"))
        assert len(texts["stdout"]) > 1000
        for name, text in texts.items():
            for form, owner in forms.items():
                assert form not in text, f"{owner}'s password leaked into {run.directory}/{name}"


BAD_BASE = """\
version: 1
targets:
  ftps-a:
    protocol: ftps
    host: 127.0.0.1
    port: 2121
    user: deploy
    password_env: FLEET_BAD_PW
"""
BAD_INVENTORIES = {
    "wrong-type": (BAD_BASE.replace("port: 2121", "port: twenty-one"), 6, "targets.ftps-a.port"),
    "unknown-field": (BAD_BASE + "    colour: red\n", 9, "targets.ftps-a.colour"),
    "duplicate-key": (
        BAD_BASE.replace("    port:", "    host: 127.0.0.2\n    port:"),
        6,
        "targets.ftps-a.host",
    ),
    "unset-password-variable": (BAD_BASE, 8, "targets.ftps-a.password_env"),
}
BAD_MESSAGES = {
    "wrong-type": "expected integer",
    "unknown-field": "unknown field",
    "duplicate-key": "duplicate key",
    "unset-password-variable": "environment variable FLEET_BAD_PW is not set",
}


def test_a_bad_inventory_stops_the_run_naming_file_line_and_field(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "FLEET_"))}
    processes: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    try:
        for case, (text, _line, _field) in BAD_INVENTORIES.items():
            path = tmp_path / f"{case}.yaml"
            path.write_text(text)
            env = dict(clean)
            if case != "unset-password-variable":
                env["FLEET_BAD_PW"] = "Fleet-Bad-" + secrets.token_hex(8)
            processes[case] = path, subprocess.Popen(
                [sys.executable, "-m", "pytest", str(SCENARIOS), "--lab-inventory", str(path),
                 "--lab-json", str(tmp_path / f"{case}.json"), "-p", "no:cacheprovider", "-rA"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
        for case, (path, process) in processes.items():
            out, err = process.communicate(timeout=60)
            _text, line, field_name = BAD_INVENTORIES[case]
            assert process.returncode == pytest.ExitCode.USAGE_ERROR, (case, out, err)
            output = out + err
            assert f"{path}:{line}: {field_name}: " in output, (case, output)
            assert BAD_MESSAGES[case] in output, (case, output)
            assert "Traceback" not in output, (case, output)
            assert "passed" not in output and "failed" not in output  # nothing ran
    finally:
        for _path, process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


# --- the real servers in the fleet ----------------------------------------------------------


@pytest.mark.interop
def test_vsftpd_in_the_fleet(fleet: Fleet) -> None:
    """The same verdicts as tests/interop/test_vsftpd.py, reached through the inventory."""
    member = _for(fleet, "vsftpd")
    for run in fleet.runs:
        checks = _by_check(run, member, "iis-ftps-self-signed")
        assert len(checks) == 18  # incl. wait-listening
        for check_id, record in checks.items():
            if check_id == "feat-auth-tls":
                continue
            assert record["status"] == "pass", f"{check_id}: {record['summary']}"
        feat = checks["feat-auth-tls"]
        if _vsftpd_without_feat_auth_tls(member):
            # FEAT misses AUTH TLS, AUTH TLS works (234): a warning, the run passes.
            assert feat["status"] == "warn" and "does not list AUTH TLS" in feat["summary"]
            assert feat["outcome"] == "passed"
            assert feat["evidence"]["server_software"]["name"] == "vsftpd"
        else:
            assert feat["status"] == "pass", feat["summary"]
        assert "refused with 530" in checks["plaintext-login-refused"]["summary"]
        assert "refused with 522" in checks["prot-c-refused"]["summary"]
        reuse = checks["data-session-reuse"]["summary"]
        assert "server requires session reuse: yes (without reuse: 522" in reuse
        policy = _by_check(run, member, "ftps-policy-contrast")
        assert {r["status"] for r in policy.values()} == {"pass"}
    assert fleet.vsftpd_user is not None
    assert list(fleet.vsftpd_user.home.iterdir()) == []  # every transfer cleaned up


@pytest.mark.interop
def test_postfix_submission_in_the_fleet(fleet: Fleet) -> None:
    """Postfix submission (Dovecot SASL) passes the 587 scenario; the messages it took
    are in its Maildir byte for byte."""
    member = _for(fleet, "postfix")
    assert fleet.postfix is not None
    for run in fleet.runs:
        checks = _by_check(run, member, "submission-587-starttls-auth")
        assert len(checks) == 16  # incl. wait-listening
        for check_id, record in checks.items():
            assert record["status"] == "pass", f"{check_id}: {record['summary']}"
        submitted = [
            r
            for r in _records(run, member)
            if r["check"] == "submit-message" and r["status"] != "skip"
        ]
        assert len(submitted) >= 1  # the 587 scenario
        for record in submitted:
            delivered = fleet.postfix.delivered(record["evidence"]["message_id"])
            assert delivered is not None, record["nodeid"]
            assert f"Message-ID: {record['evidence']['message_id']}".encode() in delivered
