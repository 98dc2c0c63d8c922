"""Sharding and parallel runs split the work without changing any result."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.plugin import parse_shard, shard_of

ROOT = Path(__file__).resolve().parent.parent
# Several targets and both protocols, without the suite's slow probe timeouts.
SUBSET = [
    "scenarios/iis-ftps-self-signed.yaml",
    "scenarios/ftps-policy-contrast.yaml",
    "scenarios/open-relay-refused.yaml",
    "scenarios/ftps-certificate-faults.yaml",
]
# Under pytest-xdist's loadgroup a node id carries "@<target>" (its group): not part of
# the item's identity.
OUTCOME = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR) (scenarios/\S+::[^\s@]+)", re.M)


def test_parse_shard() -> None:
    assert parse_shard("2/5") == (2, 5)
    for bad in ("0/3", "4/3", "x/2", "3", "1/0"):
        with pytest.raises(pytest.UsageError, match="I/N"):
            parse_shard(bad)


def test_every_target_lands_in_exactly_one_shard_deterministically() -> None:
    targets = [f"ftps://t{i}" for i in range(11)] * 3
    split = shard_of(targets, 4)
    assert split == shard_of(list(reversed(targets)), 4)
    assert set(split) == set(targets) and set(split.values()) == {1, 2, 3, 4}


def _outcomes(*args: str) -> dict[str, str]:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *SUBSET, "-p", "no:cacheprovider", "-rA", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    return {item: outcome for outcome, item in OUTCOME.findall(run.stdout)}


def test_shards_and_parallel_workers_give_the_serial_results() -> None:
    serial = _outcomes()
    assert len(serial) >= 30
    shards: dict[str, str] = {}
    for index in (1, 2, 3):
        part = _outcomes("--lab-shard", f"{index}/3")
        assert not set(part) & set(shards), "an item ran in two shards"
        shards.update(part)
    assert shards == serial
    pytest.importorskip("xdist")
    assert _outcomes("-n", "2", "--dist", "loadgroup") == serial
