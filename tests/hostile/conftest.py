"""Hostile-input tests: one fixed hypothesis profile, so CI runs the same examples each time.

``derandomize`` derives the examples from the test itself (no random seed), ``database``
is off (no state carried between runs or machines), ``deadline`` is off (a loaded CI
machine must not turn a slow example into a failure; hangs are caught by pytest-timeout
instead) and ``max_examples`` is fixed. Tests apply it with ``@HOSTILE`` rather than
``settings.load_profile``, so the rest of the suite keeps its own settings.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROFILE = "ftps-lab-hostile"

settings.register_profile(
    PROFILE,
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
