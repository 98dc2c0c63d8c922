"""A self-contained HTML report: one file, inline CSS and JS, nothing fetched from anywhere.

The page is a matrix per scenario (checks x targets) coloured by the check's status
(pass, warn, fail, skip, error), with the Okabe-Ito palette (distinguishable with the
common colour-vision deficiencies) and a symbol plus a text label in every cell, so
colour is never the only cue. Each cell links to that result's evidence (replies, TLS
and certificate facts, advice, transcript) in a ``<details>`` element the small script
opens; problems and warnings are open from the start.

Everything from a run is untrusted — server replies, certificate subjects and banners are
written by whoever runs the server — so every value goes through :func:`html.escape`
(after control characters are made visible), and a Content-Security-Policy allows only
this page's own style and script (by hash): no fetch, image or frame can leave the file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path
from typing import Any

from harness.report import fleet_html
from harness.report.fleet_html import is_problem
from harness.report.model import SKIP_COUNT_KEYS, STATUSES, ResultRecord, RunModel, printable

# Okabe-Ito colours; dark text on each keeps contrast above 4.5:1.
COLOURS = {
    "pass": "#009E73",
    "warn": "#F0E442",
    "fail": "#D55E00",
    "skip": "#BBBBBB",
    "error": "#CC79A7",
}
SYMBOLS = {"pass": "\u2713", "warn": "\u26a0", "fail": "\u2717", "skip": "\u2013", "error": "!"}

CSS = """
:root { --ink: #1b1b1b; --muted: #555; --line: #cfcfcf; --panel: #f6f6f6; }
* { box-sizing: border-box; }
body { margin: 0 24px 48px; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, "DejaVu Sans", "Segoe UI", sans-serif; }
h1 { font-size: 22px; margin: 18px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 2px; }
p.meta, p.desc { color: var(--muted); margin: 2px 0 8px; }
code, pre { font: 12px/1.4 "DejaVu Sans Mono", ui-monospace, monospace; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 8px;
  overflow-x: auto; white-space: pre-wrap; word-break: break-all; margin: 4px 0 10px; }
.chips span, .badge { display: inline-block; padding: 2px 10px; margin: 0 6px 4px 0;
  border-radius: 3px; font-weight: 700; color: #000; }
.none { background: #fff; color: var(--muted); }
.verdict { font-weight: 700; margin: 6px 0; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border: 1px solid var(--line); text-align: left; vertical-align: middle; }
thead th { padding: 6px 10px; background: var(--panel); font-size: 12px; }
tbody th { padding: 6px 10px; font-weight: 600; white-space: nowrap; }
td { padding: 0; }
td.num { padding: 4px 10px; text-align: right; }
table.matrix td { min-width: 150px; }
a.cell { display: block; padding: 10px 12px; color: #000; text-decoration: none;
  font-weight: 700; text-align: center; }
a.cell:hover, a.cell:focus { filter: brightness(1.12); outline: 2px solid #000; }
a.cell small { display: block; font-weight: 400; font-size: 11px; }
td.demo { outline: 3px dashed #000; outline-offset: -6px; }
td.unexpected { box-shadow: inset 0 0 0 4px #000; }
.errors { border: 2px solid #D55E00; padding: 4px 12px; margin: 8px 0; }
span.cell { display: block; padding: 10px 12px; text-align: center; color: var(--muted); }
.legend span { margin-right: 14px; }
details.result { border: 1px solid var(--line); margin: 6px 0; border-left-width: 10px; }
details.result:target { box-shadow: 0 0 0 3px #0072B2; }
details.result > summary { cursor: pointer; padding: 6px 10px; }
details.result > div { padding: 0 12px 8px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
dt { color: var(--muted); } dd { margin: 0; word-break: break-word; }
h4 { margin: 10px 0 2px; font-size: 13px; }
.controls button { margin-right: 6px; }
""" + "".join(
    f".{status} {{ background: {colour}; }}\n"
    f"details.result.{status} {{ border-left-color: {colour}; background: #fff; }}\n"
    for status, colour in COLOURS.items()
)

SCRIPT = """
(function () {
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (!id) return;
    var el = document.getElementById(id);
    if (el && el.tagName === 'DETAILS') { el.open = true; el.scrollIntoView(); }
  }
  window.addEventListener('hashchange', openTarget);
  document.addEventListener('DOMContentLoaded', function () {
    openTarget();
    document.querySelectorAll('button[data-open]').forEach(function (b) {
      b.addEventListener('click', function () {
        var open = b.getAttribute('data-open') === '1';
        document.querySelectorAll('details.result').forEach(function (d) { d.open = open; });
      });
    });
  });
})();
"""

_TLS_KEYS = ("mode", "tls_version", "cipher", "cipher_bits", "session_reused", "trust",
             "verified", "server_name")
_CERT_KEYS = ("subject", "issuer", "dns_names", "ip_addresses", "not_before", "not_after",
              "days_left", "self_signed", "key_type", "key_bits", "sha256")


def esc(value: Any) -> str:
    """Text for HTML: control characters made visible, then every special char escaped."""
    return html.escape(printable(str(value)), quote=True)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "—"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if value is None or value == "":
        return "—"
    return str(value)


def _dl(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(_fmt(v))}</dd>" for k, v in pairs)
    return f"<dl>{rows}</dl>" if rows else ""


def _label(status: str) -> str:
    return f"{SYMBOLS.get(status, '?')} {status.upper()}"


def _cell(record: ResultRecord, anchor: str) -> str:
    """A ``<td>`` coloured by status whose link opens the evidence."""
    classes = [record.status]
    notes = [record.skip_label] if record.skip_kind else []
    if not record.as_expected:
        classes.append("unexpected")
        notes.append(f"expected {record.expect}")
    elif record.expect != "pass":
        classes.append("demo")
        notes.append(f"expected {record.expect}")
    note = ", ".join(notes)
    small = f"<small>{esc(note)}</small>" if note else ""
    title = f"{record.target} · {record.check_id}: {record.summary}"
    return (
        f'<td class="{" ".join(classes)}"><a class="cell" href="#{anchor}" title="{esc(title)}">'
        f"{esc(_label(record.status))}{small}</a></td>"
    )


def _tls_facts(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    sources = [evidence]
    if isinstance(evidence.get("tls"), dict):
        sources.append(evidence["tls"])
    for key in _TLS_KEYS:
        for source in sources:
            if key in source and not isinstance(source[key], dict | list):
                pairs.append((key.replace("_", " "), source[key]))
                break
    return pairs


def _certificate(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    cert = evidence.get("certificate")
    if not isinstance(cert, dict):
        tls = evidence.get("tls")
        cert = tls.get("certificate") if isinstance(tls, dict) else None
    if not isinstance(cert, dict):
        return []
    keys = [k for k in _CERT_KEYS if k in cert] + [k for k in cert if k not in _CERT_KEYS]
    return [(k.replace("_", " "), cert[k]) for k in keys]


def _other_evidence(evidence: dict[str, Any]) -> dict[str, Any]:
    shown = set(_TLS_KEYS) | {"certificate", "certificate_sha256"}
    return {k: v for k, v in evidence.items() if k not in shown}


def _details(record: ResultRecord, anchor: str, is_open: bool = False,
             *, grouped: bool = False) -> str:
    """One result's evidence in a ``<details>``: the summary line carries the diagnosis
    (and the advice, for a problem), so the evidence is one click away."""
    parts: list[str] = []
    verdict = [
        ("status", _label(record.status)),
        ("skip kind", record.skip_label),
        ("expected by scenario", record.expect),
        ("outcome", record.outcome + ("" if record.as_expected else " (not as expected)")),
        ("verdict", record.message),
        ("expected", record.expected),
        ("observed", record.observed),
        ("advice", record.advice),
        ("TLS version", record.tls_version),
        ("duration", f"{record.duration:.3f} s"),
        ("scenario file", record.scenario_file + (f":{record.line}" if record.line else "")),
    ]
    parts.append(_dl([(k, v) for k, v in verdict if v not in ("", None)]))
    if record.replies:
        parts.append("<h4>Server replies</h4><pre>" + esc("\n".join(record.replies)) + "</pre>")
    tls = _tls_facts(record.evidence)
    if tls:
        parts.append("<h4>TLS and trust</h4>" + _dl(tls))
    cert = _certificate(record.evidence)
    if cert:
        parts.append("<h4>Certificate</h4>" + _dl(cert))
    other = _other_evidence(record.evidence)
    if other:
        text = json.dumps(other, indent=2, ensure_ascii=False, default=str)
        parts.append("<h4>Evidence</h4><pre>" + esc(text) + "</pre>")
    if record.transcript:
        parts.append(
            "<h4>Transcript</h4><pre>" + esc("\n".join(record.transcript)) + "</pre>"
        )
    parts.append('<p><a href="#fleet-matrix">back to the matrix</a></p>')
    advice = (f'<span class="advice">\u2192 {esc(record.advice)}</span>'
              if record.advice and is_problem(record) else "")
    where = "" if grouped else f"<strong>{esc(record.target)}</strong> · "
    summary = (
        f'<span class="badge {esc(record.status)}">{esc(_label(record.status))}</span>'
        f"{where}{esc(record.case)} — {esc(record.summary)}{advice}"
    )
    return (
        f'<details class="result {esc(record.status)}" id="{anchor}"{" open" if is_open else ""}>'
        f"<summary>{summary}</summary><div>{''.join(parts)}</div></details>"
    )


def _collection_errors(model: RunModel) -> str:
    if not model.collection_errors:
        return ""
    items = "".join(
        f"<li><strong>{esc(e.nodeid)}</strong> — {esc(e.headline())}"
        f"<pre>{esc(e.message)}</pre></li>"
        for e in model.collection_errors
    )
    count = len(model.collection_errors)
    return (
        f'<div class="errors"><p class="verdict">{count} scenario file(s) did not load; '
        f"their checks did not run:</p><ul>{items}</ul></div>"
    )


def _skip_kinds(counts: dict[str, int]) -> str:
    """``2 not applicable, 1 could not run`` (both kinds, so a zero is visible too)."""
    return ", ".join(
        f"{counts[key]} {kind.replace('-', ' ')}" for kind, key in SKIP_COUNT_KEYS.items()
    )


def _chips(counts: dict[str, int]) -> str:
    return "".join(
        f'<span class="{status}">{esc(_label(status))} {counts[status]}'
        + (f" ({esc(_skip_kinds(counts))})" if status == "skip" else "")
        + "</span>"
        for status in STATUSES
    )


# Above these sizes the page keeps to what a fleet needs: the per-scenario matrices
# (one column per target) and the evidence of results without a problem are left to the
# JSON report, so 500 targets x 40 checks stay a few MB and open in a second.
SCENARIO_MATRIX_TARGETS = 40
EVIDENCE_RESULTS = 3000


def _scenario_matrices(model: RunModel, anchors: dict[int, str]) -> list[str]:
    """A checks x targets matrix per scenario, each in a ``<details>`` that is open only
    when something in it applies to this run's targets (not every result a
    not-applicable skip, as for a fault demonstration against remote targets)."""
    body = ['<section id="matrix"><h2>Scenarios</h2>', '<p class="legend">'
            + "".join(f'<span class="badge {s}">{esc(_label(s))}</span>' for s in STATUSES)
            + "<span>dashed outline: a fault the scenario expects to be caught</span>"
            "<span>heavy outline: not what the scenario expected</span></p>"]
    if len(model.targets) > SCENARIO_MATRIX_TARGETS:
        body.append(f"<p>{len(model.targets)} targets: the per-scenario matrices are shown up "
                    f"to {SCENARIO_MATRIX_TARGETS} targets; the targets &times; checks matrix "
                    "above has every result.</p></section>")
        return body
    for scenario in model.scenarios:
        rows, columns, cells = model.matrix(scenario.name)
        if not rows:
            continue
        records = [model.results[i] for i in cells.values()]
        applies = any(r.skip_kind != "not-applicable" for r in records)
        note = "" if applies else " — nothing in it applies to these targets"
        body.append(f'<details class="scenario"{" open" if applies else ""}>'
                    f"<summary><h3>{esc(scenario.name)}{esc(note)}</h3></summary>")
        if scenario.description or scenario.file:
            body.append(
                f'<p class="desc">{esc(scenario.description)} <code>{esc(scenario.file)}</code></p>'
            )
        head = "".join(f'<th scope="col">{esc(c)}</th>' for c in columns)
        body.append(f'<table class="matrix"><thead><tr><th>check</th>{head}</tr></thead><tbody>')
        for row in rows:
            tds = []
            for column in columns:
                index = cells.get((row, column))
                if index is None:
                    tds.append('<td class="none"><span class="cell">n/a</span></td>')
                else:
                    tds.append(_cell(model.results[index], anchors[index]))
            body.append(f'<tr><th scope="row">{esc(row)}</th>{"".join(tds)}</tr>')
        body.append("</tbody></table></details>")
    body.append("</section>")
    return body


def _targets_table(model: RunModel) -> list[str]:
    by_target = model.counts_by_target()
    body = ['<section id="targets"><h2>Targets</h2><table><thead><tr>'
            "<th>target</th><th>kind</th><th>endpoint</th><th>user</th><th>groups, labels</th>"
            + "".join(f"<th>{esc(s)}</th>" for s in STATUSES)
            + "".join(f"<th>skip: {esc(k.replace('-', ' '))}</th>" for k in SKIP_COUNT_KEYS)
            + "<th>not as expected</th></tr></thead><tbody>"]
    for target in model.targets:
        c = by_target[target.id]
        endpoint = f"{target.host}:{target.port}" if target.host else "—"
        tags = [*target.groups, *(f"{k}={v}" for k, v in sorted(target.labels.items()))]
        nums = "".join(f'<td class="num">{c[s]}</td>' for s in STATUSES)
        nums += "".join(f'<td class="num">{c[key]}</td>' for key in SKIP_COUNT_KEYS.values())
        body.append(
            f'<tr><th scope="row">{esc(target.id)}</th><td class="num">{esc(target.kind)}</td>'
            f'<td class="num">{esc(endpoint)}</td><td class="num">{esc(_fmt(target.user))}</td>'
            f'<td class="num">{esc(_fmt(tags))}</td>'
            f'{nums}<td class="num">{c["unexpected"]}</td></tr>'
        )
    body.append("</tbody></table></section>")
    return body


def render(model: RunModel) -> str:
    """The page: verdict, problems by target, the fleet matrix, certificates, scenarios,
    targets and the evidence, in the order a reader on a failed build needs them."""
    counts = model.counts()
    anchors = {index: f"r-{index}" for index in range(len(model.results))}
    run = model.run
    shard = f" · shard {run.shard['index']}/{run.shard['total']}" if run.shard else ""
    merged = (f" · merged shards {', '.join(map(str, run.merged_shards))}"
              if run.merged_shards else "")
    problems, shown = fleet_html.problems_section(
        model, lambda r, a, o: _details(r, a, o, grouped=True), anchors)
    rest = [i for i in range(len(model.results)) if i not in shown]
    full = len(model.results) <= EVIDENCE_RESULTS
    linked = shown | (set(rest) if full else set())
    body: list[str] = [
        "<header><h1>ftps-lab report</h1>",
        f'<p class="verdict big'
        f'{" ok" if not counts["unexpected"] and not model.collection_errors else ""}">'
        f'{esc(fleet_html.verdict_line(model))}</p>',
        f'<div class="chips">{_chips(counts)}</div>',
        f'<p class="meta">started {esc(run.started)} · {run.duration:.1f} s · run '
        f"{esc(run.run_id or '—')}{esc(shard)}{esc(merged)} · ftps-lab "
        f"{esc(run.ftps_lab_version)} · {esc(run.python)} · pytest {esc(run.pytest_version)}"
        f" · {esc(run.platform)}</p>",
        _collection_errors(model),
        '<nav class="jump"><a href="#problems">problems</a><a href="#fleet-matrix">targets '
        '&times; checks</a><a href="#certificates">certificates</a><a href="#matrix">'
        'scenarios</a><a href="#targets">targets</a><a href="#results">evidence</a></nav>',
        "</header>",
        problems,
        fleet_html.fleet_matrix(model, anchors, linked),
        fleet_html.certificate_picture(model),
        *_scenario_matrices(model, anchors),
        *_targets_table(model),
        '<section id="results"><h2>Evidence</h2><p class="controls">'
        '<button type="button" data-open="1">open all</button>'
        '<button type="button" data-open="0">close all</button></p>',
    ]
    if full:
        body.extend(_details(model.results[i], anchors[i]) for i in rest)
    else:
        body.append(f"<p>The evidence of the {len(rest)} results without a problem is in the "
                    "JSON report (<code>--lab-json</code>); the problems above carry "
                    "theirs.</p>")
    body.append("</section>")
    css, script = CSS + fleet_html.CSS, SCRIPT + fleet_html.SCRIPT
    csp = (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(script)}; "
        "img-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'"
    )
    title = (
        f"ftps-lab report: {counts['fail']} fail, {counts['error']} error, "
        f"{counts['warn']} warn, {counts['skip']} skip, {counts['pass']} pass"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{css}</style></head>\n<body>"
        + "\n".join(body)
        + f"<script>{script}</script></body></html>\n"
    )


def write(model: RunModel, path: Path) -> None:
    from harness.report import write_text

    write_text(path, render(model))
