"""The reports from real runs: a scenario through pytest and the embedded lab, or through
``--lab-url`` against FTPS servers started here, with every report written.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socketserver
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from report_samples import count_near, read_png, run_pytest, write_png, write_scenario
from test_report_junit import check_structure

from harness.report import html as html_report
from harness.report import json_report
from harness.transcript import REDACTED

pytestmark = pytest.mark.timeout(180)

GOOD, LAX = "ftps://lab-good", "ftps://lab-lax"


@dataclass
class Run:
    directory: Path
    process: subprocess.CompletedProcess[str]

    @property
    def junit(self) -> Path:
        return self.directory / "out" / "lab.xml"

    @property
    def json(self) -> Path:
        return self.directory / "out" / "lab.json"

    @property
    def html(self) -> Path:
        return self.directory / "out" / "lab.html"

    def document(self) -> dict:
        return json.loads(self.json.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The demo scenario (a good server and an expired certificate) with all three reports."""
    directory = tmp_path_factory.mktemp("demo")
    write_scenario(directory)
    process = run_pytest(
        "scenarios",
        "--lab-junit", "out/lab.xml",
        "--lab-json", "out/lab.json",
        "--lab-html", "out/lab.html",
        cwd=directory,
    )
    return Run(directory, process)


def test_the_run_fails_on_the_expired_certificate_and_writes_every_report(demo: Run) -> None:
    out = demo.process.stdout
    assert demo.process.returncode == 1, out[-3000:] + demo.process.stderr[-2000:]
    assert "2 failed, 5 passed" in out
    for path in (demo.junit, demo.json, demo.html):
        assert path.stat().st_size > 500
        assert f"ftps-lab {path.suffix.lstrip('.').replace('xml', 'junit')} report: {path}" in out


def test_console_summary_counts_targets_and_lists_each_problem(demo: Run) -> None:
    out = demo.process.stdout
    summary = out[out.index("ftps-lab summary") :].splitlines()[1:]
    assert re.match(
        rf"{re.escape(GOOD)}\s+3 pass\s+0 warn\s+0 fail\s+0 skip\s+0 error\s+ok$", summary[0]
    )
    assert re.match(
        rf"{re.escape(LAX)}\s+1 pass\s+0 warn\s+2 fail\s+0 skip\s+1 error\s+2 not as expected$",
        summary[1],
    )
    assert summary[2] == "2 result(s) not as expected:"
    assert summary[3].startswith(f"  FAIL {LAX} report-demo::certificate-trust: certificate ")
    assert "expired" in summary[3] and "-> Renew the certificate" in summary[3]
    assert summary[4].startswith(f"  ERROR {LAX} report-demo::login: ")
    assert "expired-caught" not in "\n".join(summary[:5])


def junit_facts(case: ET.Element) -> dict[str, str]:
    """A test case's ``key: value`` facts heading its system-out (jenkins-junit.xsd has no
    test case properties)."""
    head = (case.findtext("system-out") or "").split("\ntranscript:")[0]
    return dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)


def test_junit_has_one_suite_per_target_with_properties(demo: Run) -> None:
    root = ET.parse(demo.junit).getroot()
    check_structure(root)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == [GOOD, LAX]
    assert suites[GOOD].get("failures") == "0" and suites[LAX].get("failures") == "1"
    assert suites[LAX].get("errors") == "1"
    cases = {c.get("name"): c for c in suites[LAX].findall("testcase")}
    assert set(cases) == {
        "report-demo::banner",
        "report-demo::certificate-trust",
        "report-demo::expired-caught",
        "report-demo::login",
    }
    trust = cases["report-demo::certificate-trust"]
    props = junit_facts(trust)
    assert props["target"] == LAX and props["protocol"] == "ftps" and props["status"] == "fail"
    failure = trust.find("failure")
    assert failure is not None and "expired" in (failure.get("message") or "")
    assert (failure.text or "").count("[FAIL] certificate-trust:") == 1
    assert cases["report-demo::expired-caught"].find("failure") is None
    login = {c.get("name"): c for c in suites[GOOD].findall("testcase")}["report-demo::login"]
    assert junit_facts(login)["tls_version"] in (
        "TLSv1.2", "TLSv1.3"
    )


def test_json_validates_and_agrees_with_pytest(demo: Run) -> None:
    document = demo.document()
    json_report.validate(document)
    run = document["run"]
    assert run["exit_status"] == 1 and run["duration"] > 0 and run["python"]
    assert document["totals"] == {
        "pass": 4, "warn": 0, "fail": 2, "skip": 0, "error": 1, "total": 7, "unexpected": 2,
        "skip_not_applicable": 0, "skip_could_not_run": 0,
    }
    assert [t["id"] for t in document["targets"]] == [GOOD, LAX]
    assert all(t["kind"] == "lab" and t["host"] == "127.0.0.1" for t in document["targets"])
    results = {(r["check_id"], r["target"]): r for r in document["results"]}
    caught = results[("expired-caught", LAX)]
    assert (caught["status"], caught["outcome"], caught["as_expected"]) == ("fail", "passed", True)
    trust = results[("certificate-trust", LAX)]
    assert trust["evidence"]["certificate"]["days_left"] < 0
    assert trust["scenario_file"] == "scenarios/demo.yaml" and trust["line"] == 13
    assert any("AUTH TLS" in line for line in trust["transcript"])
    assert document["scenarios"][0]["description"].startswith("A good server")


def test_html_matrix_from_a_real_run(demo: Run) -> None:
    page = demo.html.read_text(encoding="utf-8")
    assert page.count('<td class="pass">') == 4
    assert page.count('<td class="fail unexpected">') == 1
    assert page.count('<td class="fail demo">') == 1
    assert page.count('<td class="error unexpected">') == 1
    assert page.count('<td class="none">') == 1
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page and "<b>bold?</b>" not in page


def test_reports_arrive_intact_from_xdist_workers_and_by_environment(
    demo: Run, tmp_path: Path
) -> None:
    pytest.importorskip("xdist")
    write_scenario(tmp_path)
    process = run_pytest(
        "scenarios", "-n", "2", "--dist", "loadgroup", cwd=tmp_path, env={"LAB_JSON": "x.json"}
    )
    assert process.returncode == 1, process.stdout[-3000:]
    parallel = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))
    json_report.validate(parallel)

    def verdicts(document: dict) -> dict[str, tuple[str, str, str]]:
        return {
            r["nodeid"]: (r["status"], r["outcome"], r["summary"]) for r in document["results"]
        }

    assert verdicts(parallel) == verdicts(demo.document())
    assert "ftps-lab summary" in process.stdout


def test_a_report_that_cannot_be_written_fails_the_run(tmp_path: Path) -> None:
    write_scenario(
        tmp_path,
        "scenario: one\ndescription: d\nprotocols: [ftps]\n"
        "lab:\n  - name: one\n    server: ftps\nchecks: [banner]\n",
    )
    (tmp_path / "taken").mkdir()
    process = run_pytest("scenarios", "--lab-html", "taken", cwd=tmp_path)
    assert process.returncode == pytest.ExitCode.INTERNAL_ERROR, process.stdout[-2000:]
    assert "ftps-lab: could not write --lab-html" in process.stdout


def test_a_broken_scenario_is_in_every_report(tmp_path: Path) -> None:
    write_scenario(
        tmp_path,
        "scenario: broken\ndescription: d\nprotocols: [ftps]\n"
        "lab:\n  - name: one\n    server: ftps\n    polcy: require\nchecks: [banner]\n",
        name="broken.yaml",
    )
    process = run_pytest(
        "scenarios", "--lab-json", "r.json", "--lab-junit", "r.xml", "--lab-html", "r.html",
        cwd=tmp_path,
    )
    assert process.returncode == pytest.ExitCode.INTERRUPTED
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    json_report.validate(document)
    assert document["collection_errors"][0]["nodeid"] == "scenarios/broken.yaml"
    assert "polcy" in document["collection_errors"][0]["message"]
    error = ET.parse(tmp_path / "r.xml").getroot().find("testsuite[@name='collection']//error")
    assert error is not None and "polcy" in (error.get("message") or "")
    assert "did not load" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "NOT RUN scenarios/broken.yaml" in process.stdout


# -- secrets -----------------------------------------------------------------------------

SECRET_SCENARIO = """\
scenario: secrets
description: two remote FTPS servers; the good one echoes the password in its banner
protocols: [ftps]
checks:
  - banner
  - certificate-trust
  - login
  - pbsz-prot-p
"""


def test_no_report_and_no_output_contains_a_password(tmp_path: Path) -> None:
    """The good server (from an inventory) puts both passwords, raw and base64, in its
    banner; the other (by URL) has an expired certificate. No report, pytest's own JUnit
    or output may contain either password in either form."""
    from harness.certs import lab_pki
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser

    good_password, lax_password = "Good-Pw-8c1f3e77a2", "Lax-Pw-5d92be0419"
    forms = [
        form
        for password in (good_password, lax_password)
        for form in (password, base64.b64encode(password.encode()).decode())
    ]
    pki = lab_pki()
    lab, expired = pki.files("lab"), pki.files("expired")
    good_config = FTPSServerConfig(
        certfile=lab.cert,
        keyfile=lab.key,
        users=[FTPUser("deploy", good_password)],
        banner="ftps-lab ready " + " ".join(forms),
    )
    lax_config = FTPSServerConfig(
        certfile=expired.cert,
        keyfile=expired.key,
        users=[FTPUser("deploy", lax_password)],
        host="127.0.0.2",
    )
    write_scenario(tmp_path, SECRET_SCENARIO, name="secrets.yaml")
    with FTPSLabServer(good_config) as good, FTPSLabServer(lax_config) as lax:
        (tmp_path / "inventory.yaml").write_text(
            "version: 1\n"
            "targets:\n"
            "  good:\n"
            "    protocol: ftps\n"
            "    host: 127.0.0.1\n"
            f"    port: {good.port}\n"
            "    server_name: localhost\n"
            f"    trust: {{ca_file: {pki.ca_file}}}\n"
            "    user: deploy\n"
            "    password_env: GOOD_PW\n"
            "    groups: [release-42]\n"
            "    labels: {site: Default FTP Site}\n"
        )
        query = f"ca_file={pki.ca_file}&server_name=localhost&password_env=LAX_PW"
        process = run_pytest(
            "scenarios",
            "-rA",
            "-v",
            "--lab-inventory", "inventory.yaml",
            "--lab-url", f"ftps://deploy@127.0.0.2:{lax.port}?{query}",
            "--lab-junit", "out/lab.xml",
            "--lab-json", "out/lab.json",
            "--lab-html", "out/lab.html",
            "--junitxml", "out/pytest.xml",
            cwd=tmp_path,
            env={"GOOD_PW": good_password, "LAX_PW": lax_password},
        )
    assert process.returncode == 1, process.stdout[-3000:] + process.stderr[-2000:]
    document = json.loads((tmp_path / "out" / "lab.json").read_text(encoding="utf-8"))
    json_report.validate(document)
    status = {(r["check_id"], r["target"]): r["status"] for r in document["results"]}
    assert status[("login", "ftps://good")] == "pass"  # the password was used
    assert status[("certificate-trust", "ftps://127.0.0.2")] == "fail"
    targets = {t["id"]: t for t in document["targets"]}
    assert targets["ftps://good"]["labels"] == {"site": "Default FTP Site"}
    assert targets["ftps://good"]["groups"] == ["release-42"]
    banner = next(r for r in document["results"] if r["nodeid"].endswith("banner[ftps://good]"))
    # The server did echo every form; the scrubber is what stands between it and the report.
    assert banner["replies"][0] == "220-ftps-lab ready " + " ".join([REDACTED] * 4)

    outputs = {
        path.name: path.read_text(encoding="utf-8") for path in (tmp_path / "out").iterdir()
    }
    assert set(outputs) == {"lab.xml", "lab.json", "lab.html", "pytest.xml"}
    outputs["stdout"], outputs["stderr"] = process.stdout, process.stderr
    for name, text in outputs.items():
        for form in forms:
            assert form not in text, f"{form!r} leaked into {name}"
    assert "deploy" in outputs["lab.json"]  # the user name is reported; only secrets are not


ECHO_SCENARIO = """\
scenario: echo
description: a submission server that refuses service and echoes the password as it does
protocols: [submission]
checks:
  - smtp-banner
  - ehlo
  - auth-plain
"""

# Loaded by the run under test: something inside the test process (a plugin, a library,
# a debugging print) writes the password to stdout, stderr and the log while checks run.
ECHO_CONFTEST = """\
import base64
import logging
import os
import sys

PASSWORD = os.environ["ECHO_PW"]
FORMS = [
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(("\\0deploy\\0" + PASSWORD).encode()).decode(),
]


def pytest_runtest_call(item):
    print("stdout echo:", *FORMS)
    print("stderr echo:", *FORMS, file=sys.stderr)
    logging.getLogger("echo").warning("log echo: %s", " ".join(FORMS))
"""


class EchoSMTP(socketserver.ThreadingTCPServer):
    """A submission server that refuses everyone and tells them their password doing so:
    raw, base64 and as the SASL PLAIN blob (``\\0user\\0password``, base64)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, forms: list[str]) -> None:
        self.forms = forms
        super().__init__(("127.0.0.1", 0), EchoHandler)


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        forms: list[str] = self.server.forms  # type: ignore[attr-defined]
        lines = [f"554-5.7.1 go away, {forms[0]}", f"554-5.7.1 {forms[1]}", f"554 5.7.1 {forms[2]}"]
        self.wfile.write("".join(line + "\r\n" for line in lines).encode())
        for raw in self.rfile:
            command = raw.decode(errors="replace").strip().upper()
            if command == "QUIT":
                self.wfile.write(b"221 2.0.0 bye\r\n")
                return
            self.wfile.write(f"554 5.7.1 {' '.join(forms)}\r\n".encode())


def test_a_server_that_echoes_the_password_leaks_it_into_no_output(tmp_path: Path) -> None:
    """Failing checks against a server that echoes the password raw, as base64 and as an
    AUTH PLAIN blob, with the password also printed and logged during the checks: pytest's
    failure text, captured output, -rA, its --junitxml, and every lab report are clean."""
    password = "Echo-Pw-3b8e61f0d2"
    forms = [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0deploy\0{password}".encode()).decode(),
    ]
    write_scenario(tmp_path, ECHO_SCENARIO, name="echo.yaml")
    (tmp_path / "conftest.py").write_text(ECHO_CONFTEST)
    server = EchoSMTP(forms)
    thread = threading.Thread(target=server.serve_forever, name="echo-smtp", daemon=True)
    thread.start()
    try:
        (tmp_path / "inventory.yaml").write_text(
            "version: 1\n"
            "targets:\n"
            "  echo:\n"
            "    protocol: submission\n"
            "    host: 127.0.0.1\n"
            f"    port: {server.server_address[1]}\n"
            "    trust: {insecure: true}\n"
            "    user: deploy\n"
            "    password_env: ECHO_PW\n"
        )
        process = run_pytest(
            "scenarios", "-rA", "-v",
            "--lab-inventory", "inventory.yaml",
            "--lab-junit", "out/lab.xml",
            "--lab-json", "out/lab.json",
            "--lab-html", "out/lab.html",
            "--junitxml", "out/pytest.xml",
            "-o", "junit_logging=all",
            cwd=tmp_path,
            env={"ECHO_PW": password},
        )
    finally:
        server.shutdown()
        server.server_close()
    out = process.stdout
    assert process.returncode == 1, out[-3000:] + process.stderr[-2000:]
    assert "3 failed" in out
    document = json.loads((tmp_path / "out" / "lab.json").read_text(encoding="utf-8"))
    banner = next(r for r in document["results"] if r["check_id"] == "smtp-banner")
    # The server did send every form; the scrubber is what kept each one out.
    assert banner["replies"] == [
        f"554-5.7.1 go away, {REDACTED}", f"554-5.7.1 {REDACTED}", f"554 5.7.1 {REDACTED}"
    ]
    assert f"server:   554-5.7.1 go away, {REDACTED}" in out  # pytest's failure text
    assert f"stdout echo: {REDACTED} {REDACTED} {REDACTED}" in out  # captured output
    pytest_xml = (tmp_path / "out" / "pytest.xml").read_text(encoding="utf-8")
    assert f"stderr echo: {REDACTED}" in pytest_xml and f"log echo: {REDACTED}" in pytest_xml

    outputs = {
        path.name: path.read_text(encoding="utf-8") for path in (tmp_path / "out").iterdir()
    }
    assert set(outputs) == {"lab.xml", "lab.json", "lab.html", "pytest.xml"}
    outputs["stdout"], outputs["stderr"] = out, process.stderr
    for name, text in outputs.items():
        for form in forms:
            assert form not in text, f"{form!r} leaked into {name}"


# -- the HTML in a real browser ----------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def _chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def test_png_reader_undoes_every_filter(tmp_path: Path) -> None:
    pixels = [[((x * 37 + y) % 256, (y * 53) % 256, (x * y) % 256) for x in range(7)]
              for y in range(11)]
    write_png(tmp_path / "t.png", pixels)
    width, height, rows, bpp = read_png(tmp_path / "t.png")
    assert (width, height, bpp) == (7, 11, 3)
    assert [list(zip(r[0::3], r[1::3], r[2::3], strict=True)) for r in rows] == pixels
    assert count_near(rows, bpp, "#000000", tolerance=0) == sum(
        p == (0, 0, 0) for row in pixels for p in row
    )


@pytest.fixture
def browser_profile(tmp_path: Path) -> Iterator[Path]:
    profile = tmp_path / "profile"
    profile.mkdir()
    yield profile
    shutil.rmtree(profile, ignore_errors=True)


def _headless(profile: Path, *args: str) -> tuple[str, str]:
    """Run headless chromium (skipping if absent); its whole process group dies on timeout."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "chromium is not installed (Debian package chromium); this test needs a "
            "headless browser"
        )
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("chromium did not finish within 90 s")
    return out.decode(errors="replace"), err.decode(errors="replace")


@pytest.mark.interop
def test_screenshot_shows_pass_and_fail_cells(
    demo: Run, tmp_path: Path, browser_profile: Path
) -> None:
    png = tmp_path / "report.png"
    _out, err = _headless(
        browser_profile, f"--screenshot={png}", "--window-size=1280,900", demo.html.as_uri()
    )
    assert png.exists(), err[-2000:]
    width, height, rows, bpp = read_png(png)
    assert (width, height) == (1280, 900)
    passed = count_near(rows, bpp, html_report.COLOURS["pass"])
    failed = count_near(rows, bpp, html_report.COLOURS["fail"])
    errored = count_near(rows, bpp, html_report.COLOURS["error"])
    keep = os.environ.get("LAB_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / "demo.png")
    # First screen: the verdict bar, the count chips, the problems (a FAIL and an ERROR
    # badge for lab-lax) and the targets x checks matrix (small cells, one row per target).
    assert passed > 1500, passed
    assert failed > 1500, failed
    assert errored > 500, errored
    assert count_near(rows, bpp, "#fbeee6", tolerance=3) > 30000  # the red verdict bar


@pytest.mark.interop
def test_the_inline_script_runs_under_the_pages_own_csp(
    demo: Run, browser_profile: Path
) -> None:
    """A cell link opens its evidence: the script ran, so its CSP hash is right."""
    closed = '<details class="result pass" id="r-0">'
    assert closed in demo.html.read_text(encoding="utf-8")
    dom, err = _headless(browser_profile, "--dump-dom", demo.html.as_uri() + "#r-0")
    assert '<details class="result pass" id="r-0" open="">' in dom, err[-2000:]
