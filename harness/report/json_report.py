"""The JSON report: the run for scripts and dashboards, versioned by ``schema_version``.

The shape is ``harness/schemas/report.schema.json``; ``schema_version`` changes only when
a field is removed or changes meaning, so consumers can pin it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.report.model import RunModel

SCHEMA_FILE = "report.schema.json"


def schema() -> dict[str, Any]:
    """The shipped JSON Schema of this report."""
    from harness.yamlsource import load_schema

    return load_schema(SCHEMA_FILE)


def render(model: RunModel) -> str:
    return json.dumps(model.to_dict(), indent=2, ensure_ascii=False) + "\n"


def validate(document: Any) -> None:
    """Raise ``jsonschema.ValidationError`` if ``document`` does not match the schema."""
    import jsonschema

    jsonschema.Draft202012Validator(schema()).validate(document)


def write(model: RunModel, path: Path) -> None:
    from harness.report import write_text

    write_text(path, render(model))
