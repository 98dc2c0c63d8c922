"""Scenario loading: the shipped files are valid; broken ones name file, line and field."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.scenario import load_scenario
from harness.yamlsource import SourceError

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {
    name: SimpleNamespace(protocols=protocols)
    for name, protocols in {
        "banner": ("ftps", "ftps-implicit"),
        "login": ("ftps", "ftps-implicit"),
        "transfers": ("ftps", "ftps-implicit"),
        "smtp-banner": ("smtp", "submission", "submissions"),
    }.items()
}

GOOD = """\
scenario: demo
description: A demo.
protocols: [ftps]
lab:
  - name: one
    server: ftps
    policy: require
checks:
  - banner
  - check: transfers
    id: transfers-tls1.3
    params: {tls: "1.3"}
    expect: pass
    retry: {attempts: 3, sleep: 0.5}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path, load_scenario(path, CHECKS)


def test_good_scenario(tmp_path: Path) -> None:
    _, scenario = load(tmp_path, GOOD)
    assert scenario.name == "demo"
    assert [c.id for c in scenario.checks] == ["banner", "transfers-tls1.3"]
    assert scenario.checks[1].params == {"tls": "1.3"}
    assert (scenario.checks[1].attempts, scenario.checks[1].sleep, scenario.checks[1].line) == (
        3,
        0.5,
        10,
    )
    assert scenario.lab[0].protocol == "ftps" and scenario.lab[0].options == {"policy": "require"}


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        ("  - banner\n", "  - bannr\n", 9, "checks[0]", "unknown check 'bannr'"),
        ("    policy: require\n", "    policy: demand\n", 7, "lab[0].policy", "must be one of"),
        (
            "    policy: require\n",
            "    policy: require\n    role: mta\n",
            8,
            "lab[0].role",
            "not an option of server 'ftps'",
        ),
        ("    expect: pass\n", "    expect: maybe\n", 13, "checks[1].expect", "must be one of"),
        (
            "    expect: pass\n",
            "    expect: pass\n    params: {}\n",
            14,
            "checks[1].params",
            "duplicate key",
        ),
        (
            "protocols: [ftps]\n",
            "protocols: [ftps]\nprotocols: [smtp]\n",
            4,
            "protocols",
            "duplicate key",
        ),
        ("  - banner\n", "  - smtp-banner\n", 9, "checks[0]", "applies to smtp"),
        ("    id: transfers-tls1.3\n", "    id: banner\n", 11, "checks[1].id", "used twice"),
        ("scenario: demo\n", "scenario: demo\ncolour: red\n", 2, "colour", "unknown field"),
        (
            "    server: ftps\n",
            "    server: ftps\n    implicit: maybe\n",
            7,
            "lab[0].implicit",
            "expected boolean",
        ),
    ],
)
def test_broken_scenario_names_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in GOOD
    with pytest.raises(SourceError) as caught:
        load(tmp_path, GOOD.replace(old, new, 1))
    assert (caught.value.line, caught.value.field) == (line, field), str(caught.value)
    assert message in caught.value.message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "scenario: [\n", "a: 1\n---\nb: 2\n", "\x00"])
def test_not_a_scenario_is_a_clear_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(SourceError):
        load(tmp_path, text)


def test_every_shipped_scenario_is_valid() -> None:
    from harness.checks import load_all

    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        scenario = load_scenario(path, load_all())
        assert scenario.name == path.stem, f"{path.name}: scenario name should match the file name"


def test_an_unknown_fault_names_file_line_and_field(tmp_path: Path) -> None:
    from harness.checks import load_all

    path = tmp_path / "faulty.yaml"
    path.write_text(
        "scenario: faulty\n"
        "description: a typo in a fault switch\n"
        "protocols: [smtp]\n"
        "lab:\n"
        "  - name: mta\n"
        "    server: smtp\n"
        "    role: mta\n"
        "    faults: {open_rely: true}\n"
        "checks: [relay-refused]\n"
    )
    with pytest.raises(SourceError, match=r"faulty.yaml:8: lab\[0\].faults.open_rely: unknown"):
        load_scenario(path, load_all())


REMOTE_ONLY = """\
scenario: demo
description: A demo.
protocols: [ftps]
lab:
  - name: one
    server: ftps
checks:
  - banner
  - check: login
    id: login-remote
    remote_only: true
"""


def test_remote_only_steps_are_read(tmp_path: Path) -> None:
    _, scenario = load(tmp_path, REMOTE_ONLY)
    assert [c.remote_only for c in scenario.checks] == [False, True]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    targets: [one]\n", "remote_only steps run on no lab server"),
        ("    expect: fail\n", "judged by expect: pass only"),
    ],
)
def test_remote_only_refuses_what_cannot_apply(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        load(tmp_path, REMOTE_ONLY + extra)
    assert (caught.value.line, caught.value.field) == (11, "checks[1].remote_only")
    assert message in caught.value.message


def test_the_op25b_scenario_has_a_step_for_remote_targets() -> None:
    """Every other step of op25b-diagnose.yaml is pinned to a simulated network."""
    from harness.checks import load_all

    scenario = load_scenario(ROOT / "scenarios" / "op25b-diagnose.yaml", load_all())
    remote = [c for c in scenario.checks if c.remote_only]
    assert [(c.id, c.check, c.targets, c.params) for c in remote] == [
        ("diagnose-this-network", "op25b-diagnose", (), {})]
    assert all(c.targets for c in scenario.checks if not c.remote_only)
