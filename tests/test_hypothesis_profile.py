"""Every property test runs the same examples on every run and machine (tests/conftest.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

SEEN: list[list[bytes]] = []


def test_the_suite_profile_is_loaded_and_fixed() -> None:
    current = settings()
    assert settings._current_profile == "ftps-lab"
    assert current.derandomize is True
    assert current.database is None
    assert current.max_examples == 200
    assert current.deadline is None


def test_two_runs_of_one_property_try_the_same_examples() -> None:
    for _ in range(2):
        SEEN.append([])

        @given(st.binary(max_size=64))
        def record(blob: bytes) -> None:
            SEEN[-1].append(blob)

        record()
    assert SEEN[0] == SEEN[1]
    assert len(SEEN[0]) > 10
