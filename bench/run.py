"""Run the ftps-lab benchmarks against their peers and print one table.

    python bench/run.py                     # every figure, 5 interleaved runs each, 256 MiB
    python bench/run.py --quick             # seconds: small sizes, one run, no warm-up
    python bench/run.py --only transfer,throughput --json out.json --markdown table.md

Every row is ours against a peer measured in the same run; the table shows both medians,
the ratio ours/peer and which direction is better. Rows whose peer is missing are skipped
with the reason. Exit status: 0 when every row was measured or skipped, 1 when a
measurement failed (and, with --fail-on-miss, when a target was missed). Everything runs
on loopback; servers and temporary files are removed at the end.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # the figure modules sit next to this file
    sys.path.insert(0, str(BENCH))

from common import Context, MiB, Row, Settings, machine_facts  # noqa: E402

FIGURES = (
    "fig_certs",
    "fig_ftps_start",
    "fig_smtp_start",
    "fig_transfer",
    "fig_throughput",
    "fig_probe",
    "fig_scenarios",
    "fig_unreachable",
    "fig_tls_facts",
    "fig_reports",
)
COLUMNS = ("row", "ours", "peer", "ours median", "peer median", "ours/peer", "better",
           "target", "verdict")  # fmt: skip


def load_figures() -> dict[str, ModuleType]:
    modules = [importlib.import_module(name) for name in FIGURES]
    return {module.FIGURE: module for module in modules}


# -- formatting ------------------------------------------------------------------------------


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit.startswith("MiB/s"):
        text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    elif value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}" if value >= 1 else f"{value:.3f}"
    return f"{text} {unit}"


def fmt_target(row: Row) -> str:
    if row.target is None:
        return "reference"
    sign = "<=" if row.better == "lower" else ">="
    return f"{sign} {row.target:.2f}"


def cells(row: Row) -> list[str]:
    ratio = row.ratio
    verdict = row.verdict
    if row.skip:
        verdict = f"skipped: {row.skip}"
    elif row.error:
        verdict = f"error: {row.error}"
    return [
        row.name,
        row.ours_label,
        row.peer_label,
        fmt_value(row.ours_median, row.unit),
        fmt_value(row.peer_median, row.unit),
        "-" if ratio is None else f"{ratio:.2f}",
        f"{row.better} is better",
        fmt_target(row),
        verdict,
    ]


def text_table(rows: list[Row]) -> str:
    table = [list(COLUMNS), *[cells(row) for row in rows]]
    widths = [min(max(len(line[i]) for line in table), 60) for i in range(len(COLUMNS))]
    out = []
    for index, line in enumerate(table):
        padded = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.append("  ".join(padded).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row], facts: dict[str, Any], settings: Settings) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        f"Machine: {facts['cpu']}, {facts['cores']} cores, Python {facts['python']}, "
        f"{facts['openssl']} (pyOpenSSL: {facts['openssl_pyopenssl']}); {facts['date']}. "
        f"Median of {settings.repeat} interleaved run(s) per side"
        f"{' after a warm-up' if settings.warmup else ''}; transfers of "
        f"{settings.size // MiB} MiB.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(escape(cell) for cell in cells(row)) + " |" for row in rows]
    notes = [(row.name, note) for row in rows for note in row.notes]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {escape(name)}: {escape(note)}" for name, note in notes]
    return "\n".join(lines) + "\n"


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None, figures: dict[str, ModuleType]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one run, no warm-up: proves the scripts work")
    parser.add_argument("--repeat", type=int, help="runs per side (default 5, quick 1)")
    parser.add_argument("--warmup", type=int, help="discarded runs per side (default 1, quick 0)")
    parser.add_argument("--size", type=int, metavar="MiB",
                        help="transfer size in MiB (default 256, quick 4)")
    parser.add_argument("--probe-hosts", type=int, metavar="N",
                        help="loopback hosts for the probe figure (default 100, quick 20)")
    parser.add_argument("--probe-timeout", type=float, metavar="S",
                        help="probe timeout in seconds (default 1.0, quick 0.3)")
    parser.add_argument("--only", metavar="FIG[,FIG]",
                        help=f"figures to run: {', '.join(figures)}")
    parser.add_argument("--skip", metavar="FIG[,FIG]", help="figures to leave out")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write rows and samples here")
    parser.add_argument("--markdown", metavar="FILE", nargs="?", const="-",
                        help="write the Markdown table to FILE (stdout without FILE)")
    parser.add_argument("--tmpdir", type=Path,
                        help="where test files go (default: /dev/shm when it has room)")
    parser.add_argument("--fail-on-miss", action="store_true",
                        help="exit 1 when a row misses its target")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    return parser.parse_args(argv)  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)

    def pick(value: Any, normal: Any, fast: Any) -> Any:
        return value if value is not None else (fast if quick else normal)

    settings = Settings(
        quick=quick,
        repeat=pick(args.repeat, 5, 1),
        warmup=pick(args.warmup, 1, 0),
        size=pick(args.size, 256, 4) * MiB,
        probe_hosts=pick(args.probe_hosts, 100, 20),
        probe_timeout=pick(args.probe_timeout, 1.0, 0.3),
        tmpdir=args.tmpdir,
        verbose=bool(args.verbose),
    )
    if settings.repeat < 1 or settings.warmup < 0 or settings.size < MiB:
        raise SystemExit("--repeat must be >= 1, --warmup >= 0 and --size >= 1")
    if not 1 <= settings.probe_hosts <= 250 or settings.probe_timeout <= 0:
        raise SystemExit("--probe-hosts must be 1-250 and --probe-timeout positive")
    return settings


def selected(args: argparse.Namespace, figures: dict[str, ModuleType]) -> list[str]:
    def names(text: str | None) -> list[str]:
        found = [item.strip() for item in (text or "").split(",") if item.strip()]
        unknown = [item for item in found if item not in figures]
        if unknown:
            raise SystemExit(f"unknown figure(s): {', '.join(unknown)}; "
                             f"known: {', '.join(figures)}")
        return found

    only, skip = names(args.only), names(args.skip)
    return [name for name in figures if (not only or name in only) and name not in skip]


def main(argv: list[str] | None = None) -> int:
    figures = load_figures()
    args = parse_args(argv, figures)
    if args.list:
        for name, module in figures.items():
            print(f"{name:12} {module.TITLE}")
        return 0
    settings = settings_from(args)
    chosen = selected(args, figures)
    facts = machine_facts()
    print(f"# {facts['cpu']}, {facts['cores']} cores, Python {facts['python']}, "
          f"{facts['openssl']}, {facts['date']}", flush=True)
    rows: list[Row] = []
    started = time.perf_counter()
    with Context(settings) as ctx:
        for name in chosen:
            module = figures[name]
            begin = time.perf_counter()
            print(f"# {name}: {module.TITLE} ...", file=sys.stderr, flush=True)
            try:
                produced = module.run(ctx)
            except Exception as exc:  # a broken figure must not hide the others
                traceback.print_exc()
                produced = [Row(figure=name, name=module.TITLE, ours_label="-", peer_label="-",
                                unit="", better="lower", error=f"{type(exc).__name__}: {exc}")]
            rows += produced
            print(f"#   {name} took {time.perf_counter() - begin:.1f} s", file=sys.stderr,
                  flush=True)
    elapsed = time.perf_counter() - started
    if args.markdown != "-":
        print(text_table(rows))
        print(f"# {len(rows)} rows in {elapsed:.1f} s", flush=True)
    report = {
        "machine": facts,
        "settings": {
            "quick": settings.quick, "repeat": settings.repeat, "warmup": settings.warmup,
            "size_bytes": settings.size, "probe_hosts": settings.probe_hosts,
            "probe_timeout": settings.probe_timeout,
        },
        "elapsed_seconds": round(elapsed, 3),
        "rows": [row.to_dict() for row in rows],
    }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        text = markdown_table(rows, facts, settings)
        if args.markdown == "-":
            sys.stdout.write(text)
        else:
            Path(args.markdown).write_text(text)
    failed = any(row.error for row in rows)
    missed = args.fail_on_miss and any(row.met is False for row in rows)
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
