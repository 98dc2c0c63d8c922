"""Reports people read: JUnit XML per target, versioned JSON, a self-contained HTML matrix,
and a short console summary, all rendered from one :class:`~harness.report.model.RunModel`.

Enabled with ``--lab-junit FILE``, ``--lab-json FILE`` and ``--lab-html FILE`` (or
``LAB_JUNIT``/``LAB_JSON``/``LAB_HTML``, or the ini keys of the same names); see
``docs/reports.md``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.report.model import (
    SCHEMA_VERSION,
    CollectionError,
    ResultRecord,
    RunInfo,
    RunModel,
    ScenarioInfo,
    Scrubber,
    TargetInfo,
)

__all__ = [
    "SCHEMA_VERSION",
    "CollectionError",
    "ResultRecord",
    "RunInfo",
    "RunModel",
    "ScenarioInfo",
    "Scrubber",
    "TargetInfo",
    "write_text",
]


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 atomically: a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; reports carry no secrets
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
