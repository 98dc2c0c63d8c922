"""pytest hooks behind ``--lab-junit``, ``--lab-json``, ``--lab-html`` and the end-of-run summary.

Records are built in ``pytest_runtest_makereport``, where the item (scenario, target,
``CheckResult``) is at hand, scrubbed of the target's password there, and attached to the
test report as plain data, so they reach the controller under pytest-xdist too. The
controller collects them in ``pytest_runtest_logreport`` and writes the reports once, in
``pytest_sessionfinish``; workers never write.

The same hook scrubs pytest's own report of every test (``longrepr`` and the captured
output sections) with the same :class:`~harness.report.model.Scrubber`, before pytest's
terminal, its ``--junitxml`` or pytest-xdist see it: one rule for every output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from harness.report import console, html, json_report, junit, write_text
from harness.report.model import (
    CollectionError,
    RunModel,
    ScenarioInfo,
    Scrubber,
    TargetInfo,
    plan_of,
    record_entry,
    run_info,
)
from harness.results import SkipKind

RECORD_ATTR = "ftps_lab_record"

# dest: (flag, environment variable, help, renderer)
REPORTS: dict[str, tuple[str, str, str, Any]] = {
    "lab_junit": (
        "--lab-junit",
        "LAB_JUNIT",
        "write JUnit XML with one testsuite per target to FILE",
        junit.render,
    ),
    "lab_json": (
        "--lab-json",
        "LAB_JSON",
        "write the JSON report (harness/schemas/report.schema.json) to FILE",
        json_report.render,
    ),
    "lab_html": (
        "--lab-html",
        "LAB_HTML",
        "write a self-contained HTML report (checks x targets matrix, evidence) to FILE",
        html.render,
    ),
}


def add_report_options(parser: pytest.Parser) -> None:
    """The report options, in the plugin's ``ftps-lab`` option group."""
    group = parser.getgroup("ftps-lab", "ftps-lab scenarios")
    for dest, (flag, env, help_text, _render) in REPORTS.items():
        group.addoption(
            flag, dest=dest, metavar="FILE", default=None, help=f"{help_text} [env {env}]"
        )
        parser.addini(dest, help=help_text, default=None)


def report_paths(config: pytest.Config) -> dict[str, Path]:
    """Requested report files: flag, then environment, then ini; relative to the start dir."""
    paths: dict[str, Path] = {}
    for dest, (_flag, env, _help, _render) in REPORTS.items():
        value = config.getoption(dest, None) or os.environ.get(env) or config.getini(dest)
        if not value:
            continue
        path = Path(os.path.expanduser(str(value)))
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
        paths[dest] = path
    return paths


def _secret_holders(config: pytest.Config) -> list[Any]:
    """Every target of this process whose password is known: remote and running lab ones."""
    from harness.plugin import POOL_KEY, REMOTE_KEY

    holders: list[Any] = list(config.stash.get(REMOTE_KEY, None) or [])
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        holders.extend(instance.target for instance in pool.instances())
    return holders


def run_scrubber(config: pytest.Config, extra: Iterable[Any] = ()) -> Scrubber:
    """The scrubber for everything this process knows: every target's password (raw,
    base64, SASL PLAIN blob) plus those of ``extra`` targets (None entries are ignored)."""
    scrubber = Scrubber()
    for target in [*_secret_holders(config), *extra]:
        if target is not None:
            scrubber.add(getattr(target, "password", None), getattr(target, "user", None))
    return scrubber


def scrub_test_report(report: pytest.TestReport, scrubber: Scrubber) -> None:
    """Rewrite pytest's own report in place: the failure text (``longrepr``, whatever its
    shape) and the captured stdout/stderr/log sections pytest prints and puts in
    ``--junitxml``. Structured longreprs are flattened to text only when a secret is in them.
    """
    if not scrubber:
        return
    longrepr = report.longrepr
    if isinstance(longrepr, str):
        report.longrepr = scrubber.text(longrepr)
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        path, line, reason = longrepr
        report.longrepr = (scrubber.text(str(path)), line, scrubber.text(str(reason)))
    elif longrepr is not None and scrubber.found_in(str(longrepr)):
        report.longrepr = scrubber.text(str(longrepr))
    report.sections = [
        (scrubber.text(title), scrubber.text(content)) for title, content in report.sections
    ]
    report.user_properties = [
        (scrubber.text(str(name)), scrubber.text(value) if isinstance(value, str) else value)
        for name, value in report.user_properties
    ]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason.removeprefix("Skipped: ")
    return str(longrepr or "")


class ReportPlugin:
    """Collects a record per scenario item and writes the requested reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.paths = report_paths(config)
        self.worker = hasattr(config, "workerinput")
        self.entries: dict[str, dict[str, Any]] = {}
        self.collection_errors: list[CollectionError] = []
        self.started = time.time()
        self.model: RunModel | None = None
        self.written: list[tuple[str, Path]] = []
        self.errors: list[str] = []
        self.plan: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Hash the whole plan before ``--lab-shard`` keeps one shard: every shard of a run
        computes the same, which ``lab report merge`` compares."""
        from harness.plugin import ScenarioItem

        scenario_items = [i for i in items if isinstance(i, ScenarioItem)]
        if scenario_items:
            self.plan = plan_of(
                (i.target_id, i.scenario.name, i.entry.id) for i in scenario_items
            )

    # -- workers and serial runs: build records -----------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        from harness.plugin import ScenarioItem

        report: pytest.TestReport = outcome.get_result()
        scenario_item = isinstance(item, ScenarioItem)
        extra = [getattr(item, "resolved", None), getattr(item, "lab_target", None)]
        scrub_test_report(report, run_scrubber(self.config, extra if scenario_item else ()))
        if not scenario_item:
            return
        if call.when != "call" and report.passed:
            return
        setattr(report, RECORD_ATTR, self._entry(item, call, report))

    def _entry(
        self, item: Any, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> dict[str, Any]:
        from harness.plugin import RESULT_KEY
        from harness.scenario import LabServer
        from harness.targets import Target

        result = item.stash.get(RESULT_KEY, None)
        if report.skipped:
            outcome, message = "skipped", _skip_reason(report)
        elif report.failed:
            outcome = "failed"
            error = call.excinfo.value if call.excinfo else None
            message = str(error) if error is not None else "failed"
            if result is None and call.excinfo is not None:
                message = f"internal error: {call.excinfo.typename}: {error}"
            if call.when != "call":
                message = f"{call.when}: {message}"
        else:
            outcome, message = "passed", ""
        # Items skipped at collection have no result; the plugin noted the kind on them.
        skip_kind: SkipKind | None = result.skip_kind if result is not None else item.skip_kind
        lab = isinstance(item.lab_target, LabServer)
        target = item.resolved or (item.lab_target if isinstance(item.lab_target, Target) else None)
        info = TargetInfo(
            id=item.target_id,
            name=target.name if target else f"lab-{item.lab_target.name}",
            protocol=item.lab_target.protocol,
            kind="lab" if lab else "remote",
            host=target.host if target and target.host else None,
            port=target.port if target and target.port else None,
            user=target.user if target else None,
            groups=list(target.groups) if target else [],
            labels=dict(target.labels) if target else {},
        )
        scenario = item.scenario
        try:
            file = str(Path(scenario.file).resolve().relative_to(self.config.rootpath))
        except ValueError:
            file = str(scenario.file)
        checks = list(scenario.checks)
        entry = record_entry(
            nodeid=item.nodeid.removesuffix(f"@{item.target_id}"),  # xdist loadgroup's
            scenario=ScenarioInfo(scenario.name, file, " ".join(scenario.description.split())),
            target=info,
            check=item.entry.check,
            check_id=item.entry.id,
            expect=item.entry.expect,
            line=item.entry.line,
            order=checks.index(item.entry) if item.entry in checks else 0,
            outcome=outcome,
            message=message,
            result=result,
            duration=report.duration,
            skip_kind=skip_kind,
        )
        extra = [t for t in (target, item.lab_target) if isinstance(t, Target)]
        return run_scrubber(self.config, extra).scrub(entry)

    # -- the controller (or a serial run): collect and write --------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.started = time.time()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        scenario_file = report.nodeid.split("::")[0].endswith((".yaml", ".yml"))
        if report.failed and scenario_file:
            self.collection_errors.append(CollectionError(report.nodeid, str(report.longrepr)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, RECORD_ATTR, None)
        if not isinstance(entry, dict) or "record" not in entry:
            return
        known = self.entries.get(report.nodeid)
        if report.when == "teardown" and known is not None:
            record = known["record"]
            record["outcome"] = "failed"
            record["message"] = "; ".join(
                m for m in (record.get("message"), entry["record"].get("message")) if m
            )
            return
        self.entries[report.nodeid] = entry

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.worker or not (self.paths or self.entries or self.collection_errors):
            return  # not a scenario run and no report asked for: nothing to do
        scrubber = run_scrubber(self.config)
        info = run_info(
            self.started, time.time(), int(exitstatus), plan=self.plan, shard=self._shard()
        )
        self.model = RunModel.build(
            info, self.entries.values(), scrubber, self.collection_errors
        )
        for dest, path in self.paths.items():
            render = REPORTS[dest][3]
            try:
                text = scrubber.text(render(self.model))  # a last line of defence
                write_text(path, text)
            except OSError as exc:
                self.errors.append(f"ftps-lab: could not write {REPORTS[dest][0]} {path}: {exc}")
                if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
                    session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            else:
                self.written.append((REPORTS[dest][0], path))

    def _shard(self) -> tuple[int, int] | None:
        from harness.plugin import parse_shard

        value = self.config.getoption("lab_shard", None) or os.environ.get("LAB_SHARD")
        return parse_shard(str(value)) if value else None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker or self.model is None:
            return
        summary = console.lines(self.model)
        if summary and self.config.get_verbosity() > -2:
            terminalreporter.write_sep("=", "ftps-lab summary")
            for line in summary:
                if line.startswith("  WARN "):
                    terminalreporter.write_line(line, yellow=True)
                else:
                    terminalreporter.write_line(line, red=line.startswith("  "))
        for flag, path in self.written:
            terminalreporter.write_line(f"ftps-lab {flag.removeprefix('--lab-')} report: {path}")
        for error in self.errors:
            terminalreporter.write_line(error, red=True, bold=True)
