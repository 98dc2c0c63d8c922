"""JUnit XML with one ``<testsuite>`` per target, so CI shows each server build on its own.

pytest's own ``--junitxml`` groups by file; people comparing server builds want to see
"iis-build-42: 3 failures" at a glance. The output validates against jenkins-junit.xsd
(the schema Jenkins' readers and JUnit 5 use; ``tests/report/jenkins-junit.xsd``), which
allows properties on a suite but not on a test case: each ``<testcase>`` is
``scenario::check-id``, and its facts (target, protocol, status, expectation, skip kind,
TLS version, certificate days left, scenario file and line) are ``key: value`` lines at
the head of its ``<system-out>``. A ``<skipped>`` element's text starts with the skip kind
(``not applicable:``/``could not run:``). A warning (status ``warn``) is a passing test
case unless strict; ``WARN check: summary`` and ``advice: ...`` head its system-out.
A ``<failure>`` (or ``<error>``) appears only when the outcome disagrees with the scenario:
a check that was expected to fail and did is a passing test case (``status: fail``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.report.model import ResultRecord, RunModel, counts_of, printable


def _text(value: object) -> str:
    return printable(str(value))


def _properties(parent: ET.Element, values: list[tuple[str, str]]) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values:
        ET.SubElement(properties, "property", name=name, value=_text(value))


FACT_KEYS = ("target", "protocol", "status", "expect", "skip_kind", "tls_version",
             "cert_days_left", "file")


def facts(record: ResultRecord) -> list[tuple[str, str]]:
    """The test case's facts, as ``key: value`` lines at the head of its system-out.

    jenkins-junit.xsd (what Jenkins, GitLab and most CI readers accept) allows neither
    ``<properties>`` nor ``file``/``line`` on a ``<testcase>``, so they live here.
    """
    from harness.report.diff import days_left_of

    days = days_left_of(record.evidence)
    where = record.scenario_file + (f":{record.line}" if record.line else "")
    values = {
        "target": record.target, "protocol": record.protocol, "status": record.status,
        "expect": record.expect, "skip_kind": record.skip_kind or "",
        "tls_version": record.tls_version, "cert_days_left": "" if days is None else str(days),
        "file": where,
    }
    return [(key, values[key]) for key in FACT_KEYS if values[key]]


def _testcase(suite: ET.Element, record: ResultRecord) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=_text(record.scenario),
        name=_text(record.case),
        time=f"{record.duration:.3f}",
    )
    if record.outcome == "failed":
        tag = "error" if record.status == "error" else "failure"
        message = record.summary
        if record.status in ("pass", "warn", "skip"):
            message = f"{record.message}: {record.summary}" if record.message else message
        element = ET.SubElement(case, tag, message=_text(message), type=record.status)
        body = record.describe()
        if record.message:
            body = f"verdict:  {record.message}\n{body}"
        element.text = _text(body)
    elif record.outcome == "skipped":
        # The reason is the element's text (jenkins-junit.xsd gives <skipped> no
        # attributes) and starts with the kind, so a CI page tells "does not apply" from
        # "unproven".
        text = record.summary or record.message
        label = f"{record.skip_label or 'could not run'}: "
        skipped = ET.SubElement(case, "skipped")
        skipped.text = _text(text if text.startswith(label) else label + text)
    head: list[str] = []
    if record.status == "warn":
        # A warning passes the test case (unless strict): CI shows it here, first.
        head.append(f"WARN {record.check_id}: {record.summary}")
        if record.advice:
            head.append(f"advice: {record.advice}")
    head += [f"{key}: {value}" for key, value in facts(record)]
    lines = [*head, *(["transcript:", *record.transcript] if record.transcript else [])]
    out = ET.SubElement(case, "system-out")
    out.text = _text("\n".join(lines))


def _suite_counts(records: list[ResultRecord]) -> dict[str, str]:
    failures = sum(1 for r in records if r.outcome == "failed" and r.status != "error")
    errors = sum(1 for r in records if r.outcome == "failed" and r.status == "error")
    skipped = sum(1 for r in records if r.outcome == "skipped")
    return {
        "tests": str(len(records)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": f"{sum(r.duration for r in records):.3f}",
    }


def _days_left(records: list[ResultRecord]) -> list[tuple[str, str]]:
    """``cert_days_left`` of the target's certificate, when a check recorded one."""
    from harness.report.diff import days_left_of

    for record in records:
        days = days_left_of(record.evidence)
        if days is not None:
            return [("cert_days_left", str(days))]
    return []


def build(model: RunModel) -> ET.Element:
    """The ``<testsuites>`` element for ``model``."""
    counted = _suite_counts(model.results)
    counted.pop("skipped")  # jenkins-junit.xsd: no skipped (or timestamp) on <testsuites>
    root = ET.Element("testsuites", name="ftps-lab", **counted)
    grouped = model.by_target()
    for target in model.targets:
        records = grouped[target.id]
        if not records:
            continue
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_text(target.id),
            timestamp=model.run.started,
            **_suite_counts(records),
        )
        counts = counts_of(records)
        _properties(
            suite,
            [
                ("target", target.id),
                ("protocol", target.protocol),
                ("kind", target.kind),
                ("endpoint", f"{target.host}:{target.port}" if target.host else ""),
                ("ftps_lab_version", model.run.ftps_lab_version),
                ("groups", ",".join(target.groups)),
                *((f"label.{key}", value) for key, value in sorted(target.labels.items())),
                *((f"checks_{status}", str(counts[status])) for status in counts),
                *_days_left(records),
            ],
        )
        for record in records:
            _testcase(suite, record)
    if model.collection_errors:
        # Checks that never ran must still turn CI red: one error case per broken file.
        count = str(len(model.collection_errors))
        suite = ET.SubElement(
            root, "testsuite", name="collection", timestamp=model.run.started,
            tests=count, failures="0", errors=count, skipped="0", time="0.000",
        )
        for problem in model.collection_errors:
            case = ET.SubElement(
                suite, "testcase", classname="collection", name=_text(problem.nodeid), time="0.000"
            )
            message = problem.headline()
            error = ET.SubElement(case, "error", message=_text(message), type="collection")
            error.text = _text(problem.message)
        for key in ("tests", "errors"):
            root.set(key, str(int(root.get(key, "0")) + len(model.collection_errors)))
    return root


def render(model: RunModel) -> str:
    root = build(model)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def write(model: RunModel, path: Path) -> None:
    from harness.report import write_text

    write_text(path, render(model))
