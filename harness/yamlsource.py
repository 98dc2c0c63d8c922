"""YAML documents that remember where every value came from.

Scenario and inventory files are written by hand, so an error must point at the file,
line and field, never at a Python traceback. PyYAML's node tree carries line marks; we
build plain Python data from it, keep a ``path -> line`` map, reject duplicate keys
(which plain PyYAML silently overwrites), and validate with JSON Schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 1_000_000
# Values built from one document, aliases expanded. Far above any real scenario or
# inventory; an alias "bomb" (anchors nesting anchors) stops here instead of exhausting
# memory and time.
MAX_VALUES = 200_000


class SourceError(Exception):
    """A problem in a hand-written file, located by file, line and field."""

    def __init__(self, file: str | Path, line: int | None, field: str, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(top level)'}: {self.message}"


@dataclass
class Document:
    """Parsed data plus the line of every path in it."""

    file: Path
    data: Any
    lines: dict[Path_, int]

    def line_of(self, path: Path_) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: Path_, message: str) -> SourceError:
        return SourceError(self.file, self.line_of(path), dotted(path), message)


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Budget:
    """Counts built values so alias expansion cannot grow without end."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, file: Path, node: yaml.Node, path: Path_) -> None:
        self.left -= 1
        if self.left < 0:
            raise SourceError(
                file, node.start_mark.line + 1, dotted(path),
                f"document too large: more than {MAX_VALUES} values (aliases expanding?)",
            )


def _build(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], file: Path, budget: _Budget
) -> Any:
    budget.spend(file, node, path)
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SourceError(
                    file, key_node.start_mark.line + 1, dotted(path), "keys must be plain text"
                )
            key = key_node.value
            if key == "<<":
                raise SourceError(
                    file, key_node.start_mark.line + 1, dotted(path), "merge keys are not supported"
                )
            if key in result:
                raise SourceError(
                    file,
                    key_node.start_mark.line + 1,
                    dotted((*path, key)),
                    f"duplicate key (first defined on line {lines[(*path, key)]})",
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _build(value_node, (*path, key), lines, file, budget)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), lines, file, budget) for i, item in enumerate(node.value)
        ]
    # Scalars: the safe constructor resolves ints, bools, floats and nulls. Only some of
    # its failures are ConstructorError: a date like 2020-13-45 or an int of 5000 digits
    # raises ValueError, "!!timestamp x" AttributeError, "!!bool x" KeyError. Building a
    # scalar is pure conversion, so every failure here is the file's, not ours.
    try:
        return _SCALARS.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        problem = exc.problem or str(exc)
    except Exception as exc:
        problem = f"{exc}" if str(exc) else type(exc).__name__
    tag = node.tag.rpartition(":")[2] if node.tag.startswith("tag:yaml.org") else node.tag
    raise SourceError(
        file, node.start_mark.line + 1, dotted(path), f"invalid value for {tag}: {problem}"
    )


_SCALARS = yaml.SafeLoader("")


def parse(file: Path, text: str | None = None) -> Document:
    """Parse one YAML document with positions; every failure is a :class:`SourceError`."""
    file = Path(file)
    if text is None:
        try:
            if file.stat().st_size > MAX_FILE_BYTES:
                raise SourceError(file, None, "", f"file larger than {MAX_FILE_BYTES} bytes")
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(file, None, "", f"not UTF-8 text: {exc.reason}") from None
        except OSError as exc:
            raise SourceError(file, None, "", f"cannot read: {exc.strerror}") from None
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SourceError(file, line, "", f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SourceError(file, None, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SourceError(file, None, "", "invalid YAML: nested too deeply") from None
    if len(nodes) != 1 or nodes[0] is None:
        raise SourceError(file, None, "", "expected exactly one YAML document")
    lines: dict[Path_, int] = {}
    try:
        data = _build(nodes[0], (), lines, file, _Budget(MAX_VALUES))
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise SourceError(
            file, mark.line + 1 if mark else None, "", f"invalid value: {exc.problem}"
        ) from None
    except RecursionError:
        raise SourceError(file, None, "", "invalid YAML: nested too deeply") from None
    return Document(file, data, lines)


def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``harness/schemas``."""
    text = resources.files("harness.schemas").joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


def validate(document: Document, schema: dict[str, Any]) -> None:
    """Validate against ``schema``; report the first error by file, line and field."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(document.data),
        key=lambda e: (len(e.absolute_path), str(e.absolute_path)),
    )
    if not errors:
        return
    error = _most_specific(errors[0])
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        if unknown:
            known = ", ".join(sorted(allowed))
            raise document.error((*path, unknown[0]), f"unknown field (expected one of: {known})")
    if error.validator == "required":
        raise document.error(path, error.message.replace("'", "") + " (required field missing)")
    raise document.error(path, _message(error))


def _most_specific(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For oneOf/anyOf failures, prefer the deepest sub-error: it names the real field."""
    if error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _most_specific(deepest)
    return error


def _message(error: jsonschema.ValidationError) -> str:
    instance = repr(error.instance)
    if len(instance) > 60:
        instance = instance[:57] + "..."
    if error.validator == "type":
        return f"expected {error.validator_value}, got {instance}"
    if error.validator == "enum":
        choices = ", ".join(str(v) for v in error.validator_value)
        return f"must be one of: {choices} (got {instance})"
    if error.validator == "pattern":
        return f"{instance} does not match the expected format {error.validator_value}"
    return error.message if len(error.message) < 200 else error.message[:197] + "..."
