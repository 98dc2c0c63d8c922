"""Scenario files: which checks run, against which targets, with which lab servers.

The format is YAML (comments and multi-line descriptions matter more to engineers than
TOML's strictness). A file is validated against ``schemas/scenario.schema.json`` plus the
rules a schema cannot say (known check names, lab names unique, options that fit the
server kind); every problem is a :class:`~harness.yamlsource.SourceError` naming file,
line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import yamlsource
from harness.yamlsource import Document, SourceError

# Which lab-server fields make sense for which server kind.
_FIELDS_BY_SERVER: dict[str, set[str]] = {
    "ftps": {
        "certificate",
        "trust",
        "policy",
        "require_session_reuse",
        "implicit",
        "passive_ports",
        "min_tls",
        "max_tls",
        "faults",
    },
    "ftps-nat": {
        "certificate",
        "trust",
        "policy",
        "require_session_reuse",
        "passive_ports",
        "masquerade",
        "min_tls",
        "max_tls",
    },
    "smtp": {"certificate", "trust", "role", "min_tls", "max_tls", "faults"},
    "smtp-nat": {"certificate", "trust"},
    "op25b-network": {"certificate", "trust", "port25", "submission", "submissions"},
}
_COMMON = {"name", "server"}

def _fault_names(server: str) -> set[str]:
    """The ``faults:`` switches a lab server kind knows (imported late: the lab is heavy)."""
    if server == "ftps":
        from harness.lab.pool import FTPS_FAULTS

        return set(FTPS_FAULTS)
    if server == "smtp":
        from harness.lab.smtp import FAULT_OPTIONS

        return set(FAULT_OPTIONS)
    return set()


# The target protocol each lab server kind presents.
LAB_PROTOCOL: dict[str, str] = {
    "ftps": "ftps",
    "ftps-nat": "ftps",
    "smtp": "submission",
    "smtp-nat": "smtp",
    "op25b-network": "submission",
}


@dataclass(frozen=True)
class LabServer:
    """One embedded server a scenario asks for; becomes the target ``lab-<name>``."""

    name: str
    server: str
    options: dict[str, Any]
    line: int | None = None

    @property
    def protocol(self) -> str:
        if self.server == "ftps" and self.options.get("implicit"):
            return "ftps-implicit"
        if self.server == "smtp":
            role = self.options.get("role", "submission")
            return {"mta": "smtp"}.get(role, role)
        return LAB_PROTOCOL[self.server]

    def key(self) -> tuple[Any, ...]:
        """Identity for sharing one running server between scenarios."""
        return (self.server, tuple(sorted((k, repr(v)) for k, v in self.options.items())))


@dataclass(frozen=True)
class CheckEntry:
    check: str
    id: str
    params: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    expect: str = "pass"
    attempts: int = 1
    sleep: float = 0.0
    line: int | None = None
    # True: only remote targets are judged; the embedded lab does not collect the step.
    remote_only: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    file: Path
    description: str
    protocols: tuple[str, ...]
    lab: tuple[LabServer, ...]
    checks: tuple[CheckEntry, ...]


def load_scenario(path: str | Path, known_checks: dict[str, Any] | None = None) -> Scenario:
    """Load and validate one scenario file."""
    document = yamlsource.parse(Path(path))
    yamlsource.validate(document, yamlsource.load_schema("scenario.schema.json"))
    if known_checks is None:
        from harness.checks import load_all

        known_checks = load_all()
    return _build(document, known_checks)


def _build(document: Document, known_checks: dict[str, Any]) -> Scenario:
    data = document.data
    protocols = tuple(data["protocols"])
    lab: list[LabServer] = []
    names: set[str] = set()
    for index, entry in enumerate(data.get("lab", [])):
        where = ("lab", index)
        if entry["name"] in names:
            raise document.error((*where, "name"), f"lab server name {entry['name']!r} used twice")
        names.add(entry["name"])
        allowed = _FIELDS_BY_SERVER[entry["server"]] | _COMMON
        for key in entry:
            if key not in allowed:
                raise document.error(
                    (*where, key),
                    f"not an option of server {entry['server']!r} "
                    f"(options: {', '.join(sorted(allowed - _COMMON))})",
                )
        known_faults = _fault_names(entry["server"])
        for fault in entry.get("faults") or {}:
            if fault not in known_faults:
                raise document.error(
                    (*where, "faults", fault),
                    f"unknown fault for server {entry['server']!r} "
                    f"(faults: {', '.join(sorted(known_faults))})",
                )
        options = {k: v for k, v in entry.items() if k not in _COMMON}
        server = LabServer(entry["name"], entry["server"], options, document.line_of(where))
        if server.protocol not in protocols:
            raise document.error(
                (*where, "server"),
                f"lab server presents protocol {server.protocol!r}, which is not in protocols",
            )
        lab.append(server)

    checks: list[CheckEntry] = []
    ids: set[str] = set()
    for index, raw in enumerate(data["checks"]):
        where: tuple[str | int, ...] = ("checks", index)
        entry = {"check": raw} if isinstance(raw, str) else raw
        name = entry["check"]
        field_path = where if isinstance(raw, str) else (*where, "check")
        if name not in known_checks:
            close = ", ".join(
                sorted(k for k in known_checks if k.split("-")[0] == name.split("-")[0])
            )
            hint = f" (similar: {close})" if close else ""
            raise document.error(field_path, f"unknown check {name!r}{hint}")
        spec_protocols = getattr(known_checks[name], "protocols", protocols)
        if not set(protocols) & set(spec_protocols):
            raise document.error(
                field_path,
                f"check {name!r} applies to {', '.join(spec_protocols)}, not to this scenario",
            )
        check_id = entry.get("id", name)
        if check_id in ids:
            raise document.error(
                (*where, "id") if "id" in entry else field_path,
                f"check id {check_id!r} used twice; give one an 'id'",
            )
        ids.add(check_id)
        for target in entry.get("targets", []):
            if target not in names:
                raise document.error((*where, "targets"), f"no lab server named {target!r}")
        remote_only = bool(entry.get("remote_only", False))
        if remote_only and entry.get("targets"):
            raise document.error(
                (*where, "remote_only"),
                "remote_only steps run on no lab server; drop targets (or remote_only)",
            )
        if remote_only and entry.get("expect", "pass") != "pass":
            raise document.error(
                (*where, "remote_only"),
                "a remote target is judged by expect: pass only; expect demonstrates a fault "
                "of a lab server",
            )
        retry = entry.get("retry", {})
        checks.append(
            CheckEntry(
                check=name,
                id=check_id,
                params=dict(entry.get("params", {})),
                targets=tuple(entry.get("targets", ())),
                expect=entry.get("expect", "pass"),
                attempts=int(retry.get("attempts", 1)),
                sleep=float(retry.get("sleep", 0.0)),
                line=document.line_of(where),
                remote_only=remote_only,
            )
        )
    return Scenario(
        name=data["scenario"],
        file=document.file,
        description=data.get("description", "").strip(),
        protocols=protocols,
        lab=tuple(lab),
        checks=tuple(checks),
    )


__all__ = ["CheckEntry", "LabServer", "Scenario", "SourceError", "load_scenario"]
