"""Registry of named checks, so scenario files can refer to them by name.

A check is a function ``(target, params) -> CheckResult``. It drives a protocol session
through ``harness.protocols`` and judges what it saw with pure functions, so the judging
can be unit-tested without sockets. It never raises for a server's misbehaviour: that is
a ``fail`` (or ``error`` when no verdict was possible) result.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.results import CheckResult, Status
from harness.targets import Target

CheckFunction = Callable[[Target, dict[str, Any]], CheckResult]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    protocols: tuple[str, ...]
    function: CheckFunction
    description: str


REGISTRY: dict[str, CheckSpec] = {}


def check(name: str, protocols: tuple[str, ...]) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` under ``name`` for the given target protocols."""

    def decorate(function: CheckFunction) -> CheckFunction:
        if name in REGISTRY:
            raise ValueError(f"check {name!r} registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        REGISTRY[name] = CheckSpec(name, protocols, function, doc[0] if doc else "")
        return function

    return decorate


def load_all() -> dict[str, CheckSpec]:
    """Import every check module so the registry is complete."""
    from harness.checks import ftps, op25b, smtp, wait  # noqa: F401

    return REGISTRY


def run_check(name: str, target: Target, params: dict[str, Any] | None = None) -> CheckResult:
    """Run one check by name; an unexpected exception becomes an ``error`` result."""
    spec = load_all()[name]
    start = time.monotonic()
    try:
        result = spec.function(target, dict(params or {}))
    except Exception as exc:  # a bug in the harness or an unhandled failure mode
        result = CheckResult(
            check=name,
            status=Status.ERROR,
            summary=f"internal error: {type(exc).__name__}: {exc}",
            evidence={"traceback": traceback.format_exc()},
        )
    if not result.duration:
        result.duration = time.monotonic() - start
    from harness.checks import expiry  # the expiry watch of both certificate-lint checks

    return expiry.apply(result, target)
