"""The parts of the HTML report that make a fleet readable: problems by target, a
targets x checks matrix with filters, and every certificate's days to expiry on one axis.

At 500 targets x 40 checks the page must stay small and fast, so a matrix cell is a few
bytes (a class and a symbol; its name is built by the script on hover) and only cells
with something to read link to evidence.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from harness.report.diff import days_left_of
from harness.report.model import ResultRecord, RunModel, printable

SHORT = {"pass": "p", "warn": "w", "fail": "f", "skip": "s", "error": "e"}
SYMBOLS = {"pass": "\u2713", "warn": "\u26a0", "fail": "\u2717", "skip": "\u2013",
           "error": "!"}
AT_MOST = "\u2264"  # the axis' clamped left end
OPEN_TARGETS = 8  # up to this many targets with problems, their lists start open
DEFAULT_WARN_DAYS = 30
DEFAULT_FAIL_DAYS = 7

CSS = """
.fm-filters { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center;
  margin: 6px 0; }
.fm-filters label { white-space: nowrap; }
.fm-wrap { max-height: 70vh; overflow: auto; border: 1px solid var(--line); }
table.fleet { margin: 0; font-size: 12px; }
table.fleet th, table.fleet td { padding: 0; }
table.fleet thead th { position: sticky; top: 0; z-index: 1; height: 130px;
  vertical-align: bottom; padding: 2px; }
table.fleet thead th span { writing-mode: vertical-rl; transform: rotate(180deg);
  white-space: nowrap; font-weight: 600; }
table.fleet tbody th { position: sticky; left: 0; background: #fff; padding: 1px 8px;
  font-weight: 600; z-index: 0; }
table.fleet td { width: 18px; min-width: 18px; height: 18px; text-align: center;
  line-height: 18px; }
table.fleet td a { color: #000; text-decoration: none; display: block; }
table.fleet td.u { box-shadow: inset 0 0 0 2px #000; }
table.fleet td.x { background: #fff; color: var(--muted); }
.c-p { background: #009E73; } .c-w { background: #F0E442; } .c-f { background: #D55E00; }
.c-s { background: #BBBBBB; } .c-e { background: #CC79A7; }
.problems details.target { margin: 2px 0; }
.problems details.target > summary { cursor: pointer; padding: 3px 0; }
.problems details.target > details.result { margin: 2px 0 2px 18px; }
.problems details.result > summary { padding: 2px 8px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.problems details.result[open] > summary { white-space: normal; }
.problems .badge { padding: 0 6px; font-size: 12px; }
.problems .m { display: inline-block; width: 16px; text-align: center; font-size: 11px;
  margin-right: 1px; }
.advice { color: var(--muted); margin-left: 8px; }
p.verdict.big { font-size: 19px; padding: 6px 12px; border-left: 10px solid #D55E00;
  background: #fbeee6; }
p.verdict.big.ok { border-left-color: #009E73; background: #e6f5ef; }
nav.jump a { margin-right: 14px; }
details.scenario > summary { cursor: pointer; padding: 4px 0; }
details.scenario > summary h3 { display: inline; }
svg.expiry text { font: 11px system-ui, "DejaVu Sans", sans-serif; }
"""

SCRIPT = """
(function () {
  function apply() {
    var form = document.getElementById('fm-filters');
    if (!form) return;
    var want = [].slice.call(form.querySelectorAll('input[name=st]:checked'))
      .map(function (b) { return b.value; });
    var g = form.querySelector('[name=g]').value, p = form.querySelector('[name=p]').value;
    var q = form.querySelector('[name=q]').value.toLowerCase().trim(), shown = 0, rows =
      document.querySelectorAll('#fleet tbody tr');
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], d = r.dataset, ok = (!g || (' ' + d.g + ' ').indexOf(' ' + g + ' ') >= 0)
        && (!p || d.p === p) && (!q || d.t.indexOf(q) >= 0);
      if (ok && want.length) {
        ok = want.some(function (s) { return d.s.indexOf(s) >= 0; });
      }
      r.hidden = !ok; if (ok) shown++;
    }
    document.getElementById('fm-count').textContent = shown + ' of ' + rows.length + ' targets';
  }
  document.addEventListener('DOMContentLoaded', function () {
    var form = document.getElementById('fm-filters');
    if (!form) return;
    // A link can carry a filter: #only=fail,error;q=host-00 (statuses, then text).
    location.hash.slice(1).split(';').forEach(function (part) {
      var kv = part.split('='), v = decodeURIComponent(kv[1] || '');
      if (kv[0] === 'only') v.split(',').forEach(function (st) {
        var box = form.querySelector('input[name=st][value="' + st + '"]');
        if (box) box.checked = true;
      });
      if (kv[0] === 'q') form.querySelector('[name=q]').value = v;
    });
    form.addEventListener('input', apply);
    form.addEventListener('change', apply);
    var heads = [].slice.call(document.querySelectorAll('#fleet thead th span'))
      .map(function (s) { return s.textContent; });
    var names = {p: 'pass', w: 'warn', f: 'fail', s: 'skip', e: 'error', x: 'n/a'};
    document.getElementById('fleet').addEventListener('mouseover', function (ev) {
      var td = ev.target.closest('td');
      if (!td || td.title) return;
      var tr = td.parentNode, col = [].indexOf.call(tr.children, td) - 1;
      td.title = tr.firstChild.textContent + ' \\u00b7 ' + heads[col] + ': '
        + names[td.className.replace('c-', '').charAt(0)];
    });
    apply();
  });
})();
"""


def esc(value: Any) -> str:
    return html.escape(printable(str(value)), quote=True)


def is_problem(record: ResultRecord) -> bool:
    """Not as expected, or a fail/error/warn under ``expect: pass``: what a reader must see."""
    if not record.as_expected:
        return True
    return record.expect == "pass" and record.status in ("fail", "error", "warn")


def verdict_line(model: RunModel) -> str:
    """The run in one sentence: how many results, on how many targets, went wrong."""
    problems = [r for r in model.results if is_problem(r)]
    unexpected = [r for r in problems if not r.as_expected]
    warned = [r for r in problems if r.as_expected]
    targets = len(model.targets)
    if not unexpected:
        head = f"\u2713 Every result as expected on {targets} target(s)"
    else:
        hit = len({r.target for r in unexpected})
        head = (f"\u2717 {len(unexpected)} result(s) not as expected on {hit} of {targets} "
                "target(s)")
    if warned:
        head += f"; {len(warned)} warning(s) passed (strict would fail them)"
    if model.collection_errors:
        head += f"; {len(model.collection_errors)} scenario file(s) did not load"
    return head


def problems_section(
    model: RunModel, details: Callable[[ResultRecord, str, bool], str],
    anchors: dict[int, str],
) -> tuple[str, set[int]]:
    """Every problem grouped by target (most problems first), each a ``<details>`` with
    its diagnosis and advice in the summary line; and the indexes it showed."""
    by_target: dict[str, list[int]] = {}
    for index, record in enumerate(model.results):
        if is_problem(record):
            by_target.setdefault(record.target, []).append(index)
    if not by_target:
        return ('<section id="problems" class="problems"><h2>Problems</h2>'
                "<p>None: every result as expected, no warnings.</p></section>"), set()
    total = sum(len(v) for v in by_target.values())
    order = sorted(by_target, key=lambda t: (-sum(not model.results[i].as_expected
                                                  for i in by_target[t]), t))
    # A few targets: every problem on screen. A fleet: one line per target (its worst
    # first), so the first screen names dozens of targets; each opens with a click.
    open_groups = len(order) <= OPEN_TARGETS
    parts = [f'<section id="problems" class="problems"><h2>Problems: {total} on '
             f"{len(by_target)} target(s)</h2>"]
    for target in order:
        indexes = by_target[target]
        records = [model.results[i] for i in indexes]
        bad = sum(not r.as_expected for r in records)
        marks = "".join(f'<span class="m c-{SHORT[r.status]}">{SYMBOLS[r.status]}</span>'
                        for r in records[:24])
        parts.append(
            f'<details class="target"{" open" if open_groups else ""}><summary>'
            f"<strong>{esc(target)}</strong> <small>{bad} not as expected, "
            f"{len(indexes) - bad} warning(s)</small> {marks}</summary>")
        # Closed: the summary line has the diagnosis and advice, the evidence is one click
        # away, and the next problem stays on screen.
        parts.extend(details(model.results[i], anchors[i], False) for i in indexes)
        parts.append("</details>")
    parts.append("</section>")
    return "".join(parts), {i for v in by_target.values() for i in v}


def _columns(model: RunModel) -> list[tuple[str, str]]:
    """(scenario, check id) in scenario order, then check order."""
    seen: dict[tuple[str, str], tuple[str, int, str]] = {}
    for record in model.results:
        key = (record.scenario, record.check_id)
        if key not in seen:
            seen[key] = (record.scenario_file, record.order, record.check_id)
    return sorted(seen, key=lambda k: (seen[k][0], k[0], seen[k][1], seen[k][2]))


def fleet_matrix(model: RunModel, anchors: dict[int, str], linked: set[int]) -> str:
    """Targets (rows) x checks (columns), a symbol and colour per cell, with filters."""
    columns = _columns(model)
    position = {key: n for n, key in enumerate(columns)}
    rows: dict[str, list[str]] = {t.id: ['<td class="x"></td>'] * len(columns)
                                  for t in model.targets}
    statuses: dict[str, set[str]] = {t.id: set() for t in model.targets}
    symbols = {"pass": "\u2713", "warn": "\u26a0", "fail": "\u2717", "skip": "\u2013",
               "error": "!"}
    for index, record in enumerate(model.results):
        if record.target not in rows:
            continue
        cls = "c-" + SHORT[record.status] + ("" if record.as_expected else " u")
        symbol = symbols[record.status]
        if index in linked:
            symbol = f'<a href="#{anchors[index]}">{symbol}</a>'
        rows[record.target][position[(record.scenario, record.check_id)]] = (
            f'<td class="{cls}">{symbol}</td>')
        statuses[record.target].add(record.status if record.as_expected else "unexpected")
        statuses[record.target].add(record.status)
    groups = sorted({g for t in model.targets for g in t.groups})
    protocols = sorted({t.protocol for t in model.targets})
    boxes = "".join(
        f'<label><input type="checkbox" name="st" value="{s}"> {s}</label>'
        for s in ("unexpected", "fail", "error", "warn", "skip"))
    options = "".join(f'<option value="{esc(g)}">{esc(g)}</option>' for g in groups)
    protos = "".join(f'<option value="{esc(p)}">{esc(p)}</option>' for p in protocols)
    head = "".join(f'<th scope="col"><span>{esc(s)}::{esc(c)}</span></th>' for s, c in columns)
    body = []
    for target in model.targets:
        search = " ".join([target.id, target.host or "", *target.groups,
                           *(f"{k}={v}" for k, v in target.labels.items())]).lower()
        body.append(
            f'<tr data-p="{esc(target.protocol)}" data-g="{esc(" ".join(target.groups))}" '
            f'data-s="{" ".join(sorted(statuses[target.id]))}" data-t="{esc(search)}">'
            f'<th scope="row">{esc(target.id)}</th>{"".join(rows[target.id])}</tr>')
    return (
        '<section id="fleet-matrix"><h2>Targets &times; checks</h2>'
        '<form id="fm-filters" class="fm-filters" role="search">'
        f"<span>show targets with:</span>{boxes}"
        f'<label>group <select name="g"><option value="">all</option>{options}</select></label>'
        f'<label>protocol <select name="p"><option value="">all</option>{protos}</select>'
        '</label><label>text <input name="q" type="search" placeholder="target, host, label">'
        '</label><output id="fm-count"></output></form>'
        '<p class="legend">\u2713 pass \u00b7 \u26a0 warn \u00b7 \u2717 fail \u00b7 \u2013 skip '
        "\u00b7 ! error \u00b7 white: does not run; heavy outline: not as expected; a link "
        "opens the evidence</p>"
        f'<div class="fm-wrap"><table class="fleet" id="fleet"><thead><tr><th>target</th>{head}'
        f'</tr></thead><tbody>{"".join(body)}</tbody></table></div></section>'
    )


def _thresholds(model: RunModel) -> tuple[int, int]:
    """The warn and fail thresholds the run used (the certificate-expiry evidence), or
    the defaults."""
    for record in model.results:
        expiry = record.evidence.get("cert_expiry")
        if isinstance(expiry, dict) and "warn_days" in expiry:
            return int(expiry["warn_days"]), int(expiry.get("fail_days", DEFAULT_FAIL_DAYS))
    return DEFAULT_WARN_DAYS, DEFAULT_FAIL_DAYS


def certificate_days(model: RunModel) -> dict[str, int]:
    """target -> days to expiry, the first a result of that target recorded."""
    out: dict[str, int] = {}
    for record in model.results:
        if record.target not in out:
            days = days_left_of(record.evidence)
            if days is not None:
                out[record.target] = days
    return out


def certificate_picture(model: RunModel) -> str:
    """Every target's days to expiry on one axis (a dot plot: targets in the same bin
    stack), with the fail and warning thresholds drawn; inline SVG, no script."""
    days = certificate_days(model)
    if not days:
        return ""
    warn, fail = _thresholds(model)
    low, high = min(-30, min(days.values())), max(warn * 2, 120)
    low = max(low, -60)  # an axis for what can still be acted on; older ones pile at the edge
    width, left, right, dot = 900, 40, 20, 8
    span = width - left - right

    def x(value: float) -> float:
        value = min(max(value, low), high)
        return left + (value - low) / (high - low) * span

    stacks: dict[int, int] = {}
    placed: list[tuple[float, int, str, str]] = []  # x, level, colour, title
    for target, left_days in sorted(days.items(), key=lambda kv: kv[1]):
        column = int(x(left_days) // dot)
        level = stacks.get(column, 0)
        stacks[column] = level + 1
        colour = "#D55E00" if left_days < fail else "#F0E442" if left_days < warn else "#009E73"
        beyond = "" if low < left_days < high else " (beyond the axis)"
        placed.append((column * dot + dot / 2, level, colour,
                       f"{target}: {left_days} days{beyond}"))
    tallest = max(stacks.values())
    plot = min(max(tallest * dot, 60), 400)
    step = min(dot, plot / tallest)  # a tall stack is squeezed, never cut
    height = plot + 50
    base = plot + 10
    circles = "".join(
        f'<circle cx="{cx:.0f}" cy="{base - (level + 0.5) * step:.1f}" r="3.5" '
        f'fill="{colour}" stroke="#000" stroke-width="0.5"><title>{esc(title)}</title></circle>'
        for cx, level, colour, title in placed
    )

    def line(value: int, label: str, colour: str, row: int) -> str:
        """A threshold; its label on its own row, so close thresholds do not overlap."""
        pos = x(value)
        return (f'<line x1="{pos:.1f}" x2="{pos:.1f}" y1="4" y2="{base}" stroke="{colour}" '
                f'stroke-width="2" stroke-dasharray="5 3"/><text x="{pos + 3:.1f}" '
                f'y="{12 + 14 * row}" fill="#000">{esc(label)}</text>')

    ticks = "".join(
        f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{base}" y2="{base + 5}" stroke="#000"/>'
        f'<text x="{x(t):.1f}" y="{base + 18}" text-anchor="middle">'
        f'{AT_MOST if t == low else ""}{t}{"+" if t == high else ""}</text>'
        for t in range(int(low) // 30 * 30, int(high) + 1, 30) if low <= t <= high)
    expiring = sum(1 for d in days.values() if d < warn)
    return (
        '<section id="certificates"><h2>Certificates: days to expiry</h2>'
        f"<p>{len(days)} target(s) with a certificate; {expiring} expire within {warn} days "
        f"(fail below {fail}). One dot per target; hover for its name.</p>"
        f'<svg class="expiry" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f"<title>days to certificate expiry per target; warning below {warn}, fail below "
        f"{fail}</title>"
        f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" stroke="#000"/>'
        f"{ticks}{line(0, 'expired', '#000', 0)}{line(fail, f'fail < {fail}', '#D55E00', 1)}"
        f"{line(warn, f'warn < {warn}', '#8a7d00', 2)}{circles}"
        f'<text x="{width / 2:.0f}" y="{height - 4}" text-anchor="middle">days to expiry '
        f"(clamped to {low}..{high})</text></svg></section>"
    )
