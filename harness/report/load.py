"""Read saved JSON reports of any schema version this lab knows, as the current version.

``lab diff``, ``lab report merge`` and ``lab report render`` work on reports from older
builds (the last green run may be months old), so versions 1 and 2 are normalised here,
in one place: version 1 had no ``skip_kind`` (every skip counts as *could not run*, the
same rule as an unclassified skip), versions 1 and 2 had no ``warn`` (nothing to add).
A newer version than this lab knows is refused: its fields may mean something else.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.report.model import SCHEMA_VERSION, RunModel, counts_of

KNOWN_VERSIONS = (1, 2, 3)


class ReportError(ValueError):
    """A report that cannot be read, or reports that cannot be combined; the message says why."""


def normalise(document: Any, name: str = "report") -> dict[str, Any]:
    """A copy of ``document`` in the current schema's shape, or :class:`ReportError`."""
    if not isinstance(document, dict) or "results" not in document:
        raise ReportError(f"{name}: not an ftps-lab JSON report (written by --lab-json)")
    version = document.get("schema_version")
    if version not in KNOWN_VERSIONS:
        raise ReportError(
            f"{name}: schema_version {version!r} is not one this ftps-lab reads "
            f"({', '.join(map(str, KNOWN_VERSIONS))}); use the ftps-lab that wrote it, "
            "or a newer one"
        )
    # Shallow copies of what is filled in: a deep copy of 20 000 results costs seconds.
    doc = dict(document)
    run = doc["run"] = dict(doc.get("run") or {})
    doc["results"] = [dict(r) for r in doc.get("results") or []]
    run.setdefault("run_id", "")
    run.setdefault("plan", None)
    run.setdefault("shard", None)
    run.setdefault("merged_shards", [])
    for result in doc.get("results") or []:
        if result.get("status") == "skip":
            result["skip_kind"] = result.get("skip_kind") or "could-not-run"
        else:
            result["skip_kind"] = None
        result.setdefault("as_expected", result.get("outcome") != "failed")
        result.setdefault("tls_version", "")
    doc.setdefault("collection_errors", [])
    doc.setdefault("scenarios", [])
    doc.setdefault("targets", [])
    if version != SCHEMA_VERSION:  # recount: older counts lack warn and the skip kinds
        model = RunModel.from_document(doc)
        doc["totals"] = counts_of(model.results)
        for target in doc["targets"]:
            target["counts"] = counts_of(r for r in model.results if r.target == target["id"])
    doc["schema_version"] = SCHEMA_VERSION
    return doc


def load(path: Path | str) -> dict[str, Any]:
    """The normalised report at ``path``; unreadable files and bad JSON name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return loads(text, str(path))


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a 500-target report is 20 000 small dicts, whose
    allocation would trigger collections costing more than the work (JSON has no cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def loads(text: str, name: str = "report") -> dict[str, Any]:
    """The normalised report in ``text``."""
    with paused_gc():
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{name}: not JSON: {exc}") from exc
        return normalise(document, name)
