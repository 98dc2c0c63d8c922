"""Inventory files: remote targets, their expected policy, trust and credentials.

Passwords are read from the environment variables the file names, when a target is
selected; a missing variable is an error naming the file, line and field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import yamlsource
from harness.protocols.tls import Trust
from harness.targets import DEFAULT_AUTH_FAILURE_DELAY, Target
from harness.yamlsource import Document, SourceError

DEFAULT_PORTS = {
    "ftps": 21,
    "ftp": 21,
    "ftps-implicit": 990,
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
}


@dataclass
class Inventory:
    file: Path
    document: Document

    @property
    def names(self) -> list[str]:
        return list(self.document.data["targets"])

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self.names:
            for group in self._merged(name).get("groups", []):
                out.setdefault(group, []).append(name)
        return out

    def _merged(self, name: str) -> dict[str, Any]:
        data = self.document.data
        merged = dict(data.get("defaults", {}))
        merged.update(data["targets"][name])
        return merged

    def select(
        self,
        names: Iterable[str] = (),
        groups: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> list[Target]:
        """Targets by name and/or group (all when neither is given), in file order."""
        names, groups = list(names), list(groups)
        known_groups = self.groups()
        for name in names:
            if name not in self.names:
                raise SourceError(
                    self.file,
                    None,
                    "targets",
                    f"no target named {name!r} (known: {', '.join(self.names)})",
                )
        for group in groups:
            if group not in known_groups:
                raise SourceError(
                    self.file,
                    None,
                    "groups",
                    f"no group named {group!r} "
                    f"(known: {', '.join(sorted(known_groups)) or 'none'})",
                )
        wanted = set(names)
        for group in groups:
            wanted.update(known_groups[group])
        chosen = [n for n in self.names if not wanted or n in wanted]
        return [self.target(name, env) for name in chosen]

    def target(self, name: str, env: Mapping[str, str] | None = None) -> Target:
        env = os.environ if env is None else env
        fields = self._merged(name)
        where = ("targets", name)

        def field_path(key: str) -> tuple[str, ...]:
            if key in self.document.data["targets"][name]:
                return (*where, key)
            return ("defaults", key)

        password = None
        if "password_env" in fields:
            variable = fields["password_env"]
            password = env.get(variable)
            if password is None:
                raise self.document.error(
                    field_path("password_env"),
                    f"environment variable {variable} is not set"
                    f" (it holds the password for {name})",
                )
        trust_fields = fields.get("trust", {})
        ca_file = None
        if "ca_file" in trust_fields:
            try:
                ca_file = (self.file.parent / trust_fields["ca_file"]).resolve()
            except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
                raise self.document.error(
                    (*field_path("trust"), "ca_file"), f"not a usable path: {exc}"
                ) from None
            if not ca_file.is_file():
                raise self.document.error(
                    (*field_path("trust"), "ca_file"), f"no such file: {ca_file}"
                )
        trust = Trust(
            ca_file=ca_file,
            pin_sha256=trust_fields.get("pin_sha256"),
            insecure=bool(trust_fields.get("insecure", False)),
        )
        protocol = fields["protocol"]
        ports = fields.get("passive_ports")
        if ports and ports[0] > ports[1]:
            raise self.document.error(field_path("passive_ports"), "first port is above the last")
        fail_days = int(fields.get("cert_expiry_fail_days", 7))
        if fail_days > int(fields.get("cert_expiry_warn_days", 30)):
            raise self.document.error(
                field_path("cert_expiry_fail_days"), "is above cert_expiry_warn_days"
            )
        if fields.get("user") and "password_env" not in fields:
            raise self.document.error(
                field_path("user"), "a user needs password_env (the variable holding the password)"
            )
        target = Target(
            name=name,
            protocol=protocol,
            host=fields["host"],
            port=int(fields.get("port", DEFAULT_PORTS[protocol])),
            trust=trust,
            server_name=fields.get("server_name"),
            user=fields.get("user"),
            password=password,
            password_env=fields.get("password_env"),
            timeout=float(fields.get("timeout", 10.0)),
            strict=bool(fields.get("strict", False)),
            cert_expiry_warn_days=int(fields.get("cert_expiry_warn_days", 30)),
            cert_expiry_fail_days=int(fields.get("cert_expiry_fail_days", 7)),
            auth_failure_delay=float(
                fields.get("auth_failure_delay", DEFAULT_AUTH_FAILURE_DELAY)
            ),
            policy=fields.get("policy", "require"),
            passive_address=fields.get("passive_address"),
            passive_ports=(int(ports[0]), int(ports[1])) if ports else None,
            session_reuse_required=fields.get("session_reuse_required"),
            groups=tuple(fields.get("groups", ())),
            labels=dict(fields.get("labels", {})),
        )
        for key in ("mail_from", "rcpt_to", "relay_to"):
            if key in fields:
                setattr(target, key, fields[key])
        if "op25b_expect" in fields:
            expect = fields["op25b_expect"]
            target.op25b_expect = (expect,) if isinstance(expect, str) else tuple(expect)
        if "op25b_ports" in fields:
            target.op25b_ports = {role: int(port) for role, port in fields["op25b_ports"].items()}
        return target


def load_inventory(path: str | Path) -> Inventory:
    """Parse and validate an inventory file (targets are resolved on selection)."""
    document = yamlsource.parse(Path(path))
    yamlsource.validate(document, yamlsource.load_schema("inventory.schema.json"))
    return Inventory(Path(path), document)


__all__ = ["DEFAULT_PORTS", "Inventory", "SourceError", "load_inventory"]


def target_from_url(url: str, env: Mapping[str, str] | None = None) -> Target:
    """A target from ``--lab-url``, e.g. ``ftps://labuser@ftp.example.net:21?pin=AB:CD:..``.

    Query keys: ``policy``, ``pin``, ``ca_file``, ``insecure=1``, ``server_name``,
    ``passive_address``, ``password_env`` (default ``LAB_PASSWORD``), ``timeout``,
    ``strict=1``, ``auth_failure_delay``, ``op25b_expect`` (verdict codes, comma-separated).
    """
    from urllib.parse import parse_qs, urlsplit

    env = os.environ if env is None else env
    where = f"--lab-url {url}"
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - parsing the netloc can raise too
    except ValueError as exc:  # "Invalid IPv6 URL" and the like
        raise SourceError(where, None, "url", f"not a valid URL: {exc}") from None
    protocol = parts.scheme
    if protocol not in DEFAULT_PORTS:
        raise SourceError(where, None, "scheme", f"must be one of {', '.join(DEFAULT_PORTS)}")
    if parts.password:
        raise SourceError(
            where, None, "password", "never put a password in a URL; set LAB_PASSWORD"
        )
    if not parts.hostname:
        raise SourceError(where, None, "host", "missing host name")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {
        "policy",
        "pin",
        "ca_file",
        "insecure",
        "server_name",
        "passive_address",
        "password_env",
        "timeout",
        "strict",
        "auth_failure_delay",
        "op25b_expect",
    }
    if unknown:
        raise SourceError(where, None, sorted(unknown)[0], "unknown query parameter")
    if query.get("policy", "require") not in ("require", "allow"):
        raise SourceError(where, None, "policy", "must be require or allow")
    password_env = query.get("password_env", "LAB_PASSWORD")
    password = None
    if parts.username:
        password = env.get(password_env)
        if password is None:
            raise SourceError(
                where, None, "password_env", f"environment variable {password_env} is not set"
            )
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
        timeout = float(query.get("timeout", 10.0))
        delay = float(query.get("auth_failure_delay", DEFAULT_AUTH_FAILURE_DELAY))
    except ValueError as exc:
        raise SourceError(where, None, "port/timeout/auth_failure_delay", str(exc)) from None
    if not 0 < timeout <= 300:  # also refuses nan and inf
        raise SourceError(where, None, "timeout", "must be a number of seconds in (0, 300]")
    if not 0 <= delay <= 60:
        raise SourceError(
            where, None, "auth_failure_delay", "must be a number of seconds in [0, 60]"
        )
    if query.get("strict", "0") not in ("0", "1", "true", "false", "yes", "no"):
        raise SourceError(where, None, "strict", "must be 1/true/yes or 0/false/no")
    op25b_expect = tuple(code for code in query.get("op25b_expect", "").split(",") if code)
    from harness.checks.op25b import VERDICT_CODES

    wrong = [code for code in op25b_expect if code not in VERDICT_CODES]
    if wrong:
        raise SourceError(where, None, "op25b_expect",
                          f"unknown verdict {wrong[0]!r} (one of {', '.join(VERDICT_CODES)})")
    return Target(
        name=parts.hostname,
        protocol=protocol,
        host=parts.hostname,
        port=port,
        trust=Trust(
            ca_file=Path(query["ca_file"]) if "ca_file" in query else None,
            pin_sha256=query.get("pin"),
            insecure=query.get("insecure") in ("1", "true", "yes"),
        ),
        server_name=query.get("server_name"),
        user=parts.username,
        password=password,
        password_env=password_env if parts.username else None,
        timeout=timeout,
        strict=query.get("strict") in ("1", "true", "yes"),
        auth_failure_delay=delay,
        policy=query.get("policy", "require"),
        passive_address=query.get("passive_address"),
        op25b_expect=op25b_expect,
    )
