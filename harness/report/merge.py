"""One report from the shards of one run (``--lab-shard I/N`` jobs), or a reason why not.

Shards are only combined when they provably belong together: the same ``run_id`` (and
plan, when both know it), the same shard total, each index once, and no target in two
shards. A silent merge of two different runs would show a fleet that never existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.report.load import ReportError, paused_gc
from harness.report.model import RunInfo, RunModel


def _shard_name(name: str, run: Mapping[str, Any]) -> str:
    shard = run.get("shard")
    return f"{name} (shard {shard['index']}/{shard['total']})" if shard else name


def check_shards(
    shards: Sequence[tuple[str, Mapping[str, Any]]], *, allow_missing: bool = False
) -> list[str]:
    """Every reason the named, normalised documents are not the shards of one run."""
    problems: list[str] = []
    runs = [(name, doc["run"]) for name, doc in shards]
    ids = {run.get("run_id") or "" for _, run in runs}
    if "" in ids:
        unnamed = [name for name, run in runs if not run.get("run_id")]
        problems.append(f"no run_id in {', '.join(unnamed)} (written before ftps-lab recorded "
                        "one): cannot prove they are shards of one run")
    elif len(ids) > 1:
        listing = "; ".join(f"{name}: {run['run_id']}" for name, run in runs)
        problems.append(f"shards of different runs (run_id differs): {listing}")
    plans = {run.get("plan") for _, run in runs if run.get("plan")}
    if len(plans) > 1:
        listing = "; ".join(f"{name}: {run.get('plan')}" for name, run in runs if run.get("plan"))
        problems.append(f"different plans (targets or scenarios differ): {listing}")
    totals = {run["shard"]["total"] for _, run in runs if run.get("shard")}
    unsharded = [name for name, run in runs if not run.get("shard")]
    if unsharded and len(shards) > 1:
        problems.append(f"not a shard (no --lab-shard): {', '.join(unsharded)}")
    if len(totals) > 1:
        problems.append("different shard totals: " + "; ".join(
            _shard_name(name, run) for name, run in runs))
    seen: dict[int, str] = {}
    for name, run in runs:
        if run.get("shard"):
            index = run["shard"]["index"]
            if index in seen:
                problems.append(f"shard {index} given twice: {seen[index]} and {name}")
            seen[index] = name
    if len(totals) == 1 and not allow_missing:
        missing = sorted(set(range(1, next(iter(totals)) + 1)) - set(seen))
        if missing:
            problems.append(f"missing shard(s) {', '.join(map(str, missing))} of "
                            f"{next(iter(totals))} (--allow-missing merges the others)")
    owners: dict[str, str] = {}
    overlaps: dict[tuple[str, str], list[str]] = {}
    for name, doc in shards:
        for target in sorted({r["target"] for r in doc.get("results") or []}):
            if target in owners and owners[target] != name:
                overlaps.setdefault((owners[target], name), []).append(target)
            owners.setdefault(target, name)
    for (first, second), targets in overlaps.items():
        more = f" and {len(targets) - 5} more" if len(targets) > 5 else ""
        shown = ", ".join(targets[:5]) + more
        problems.append(f"{len(targets)} target(s) in both {first} and {second}: {shown}")
    return problems


def merge(
    shards: Sequence[tuple[str, Mapping[str, Any]]], *, allow_missing: bool = False
) -> RunModel:
    """The run of ``shards`` (name, normalised document) as one model, or ReportError."""
    if not shards:
        raise ReportError("no shards to merge")
    problems = check_shards(shards, allow_missing=allow_missing)
    if problems:
        raise ReportError("refusing to merge:\n  " + "\n  ".join(problems))
    with paused_gc():
        models = [RunModel.from_document(doc) for _, doc in shards]
    runs = [m.run for m in models]
    first = min(runs, key=lambda r: r.started)
    statuses = [r.exit_status for r in runs if r.exit_status is not None]
    info = RunInfo(
        started=first.started,
        finished=max(r.finished for r in runs),
        duration=max(r.duration for r in runs),  # the jobs ran in parallel
        ftps_lab_version=first.ftps_lab_version,
        python=first.python,
        platform=first.platform,
        pytest_version=first.pytest_version,
        exit_status=max(statuses) if statuses else None,
        run_id=first.run_id,
        plan=next((r.plan for r in runs if r.plan), None),
        shard=None,
        merged_shards=sorted(r.shard["index"] for r in runs if r.shard),
    )
    targets = {t.id: t for m in models for t in m.targets}
    scenarios = {s.name: s for m in models for s in m.scenarios}
    results = [r for m in models for r in m.results]
    results.sort(key=lambda r: (r.scenario_file, r.scenario, r.order, r.check_id, r.target))
    errors = {e.nodeid: e for m in models for e in m.collection_errors}  # every shard has them
    return RunModel(
        run=info,
        targets=sorted(targets.values(), key=lambda t: (t.kind, t.id)),
        scenarios=sorted(scenarios.values(), key=lambda s: (s.file, s.name)),
        results=results,
        collection_errors=list(errors.values()),
    )
