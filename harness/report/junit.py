"""JUnit XML with one ``<testsuite>`` per target, so CI shows each server build on its own.

pytest's own ``--junitxml`` groups by file; people comparing server builds want to see
"iis-build-42: 3 failures" at a glance. Each ``<testcase>`` is ``scenario::check-id`` with
the target, protocol, TLS version, check status and skip kind as properties; a
``<skipped>`` message starts with the skip kind (``not applicable:``/``could not run:``).
A warning (status ``warn``) is a passing test case unless strict; its summary and advice
are the ``warning`` and ``advice`` properties and head its ``<system-out>``.
A ``<failure>`` (or ``<error>``) appears only when the outcome disagrees with the scenario:
a check that was expected to fail and did is a passing test case (its status property
still says fail).
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


def _testcase(suite: ET.Element, record: ResultRecord) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=_text(record.scenario),
        name=_text(record.case),
        time=f"{record.duration:.3f}",
        file=_text(record.scenario_file),
    )
    if record.line:
        case.set("line", str(record.line))
    _properties(
        case,
        [
            ("target", record.target),
            ("protocol", record.protocol),
            ("tls_version", record.tls_version),
            ("status", record.status),
            ("expect", record.expect),
            *([("skip_kind", record.skip_kind)] if record.skip_kind else []),
            # A warning passes the test case (unless strict), so CI shows it only here
            # and in system-out: the deviation and what to do about it.
            *([("warning", record.summary), ("advice", record.advice)]
              if record.status == "warn" else []),
        ],
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
        # The message starts with the skip kind (junit-10.xsd allows only a message), so
        # a CI page tells "does not apply" from "unproven"; the skip_kind property has it too.
        text = record.summary or record.message
        label = f"{record.skip_label or 'could not run'}: "
        message = text if text.startswith(label) else label + text
        ET.SubElement(case, "skipped", message=_text(message))
    out_lines = list(record.transcript)
    if record.status == "warn":
        head = [f"WARN {record.check_id}: {record.summary}"]
        if record.advice:
            head.append(f"advice: {record.advice}")
        out_lines = [*head, *(["transcript:"] if out_lines else []), *out_lines]
    if out_lines:
        out = ET.SubElement(case, "system-out")
        out.text = _text("\n".join(out_lines))


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


def build(model: RunModel) -> ET.Element:
    """The ``<testsuites>`` element for ``model``."""
    root = ET.Element("testsuites", name="ftps-lab", **_suite_counts(model.results))
    root.set("timestamp", model.run.started)
    for target in model.targets:
        records = [r for r in model.results if r.target == target.id]
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
