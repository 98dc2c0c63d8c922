"""Scenario and inventory files written by anyone: a result or a SourceError, nothing else.

Hand-written files are input from people, and CI may be fed a file from a branch nobody
reviewed. Whatever the text, loading must end in a value or in a
:class:`~harness.yamlsource.SourceError` that names the file (and the line, when one is
known), never in another exception, and never take long: alias "bombs", deep nesting,
impossible dates and 5000-digit numbers included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import currently_in_test_context, event, example, given
from hypothesis import strategies as st

from harness.checks import load_all
from harness.inventory import Inventory, load_inventory, target_from_url
from harness.scenario import Scenario, load_scenario
from harness.targets import Target
from harness.yamlsource import MAX_VALUES, SourceError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
# Generous on purpose: a loaded CI machine is slow, a hang is unbounded. The alias bomb
# took minutes (and gigabytes) before the value budget existed.
SECONDS_PER_LOAD = 10.0
ENV = {"IIS_PW": "hostile-Pw-1", "MAIL_PW": "hostile-Pw-2", "LAB_PASSWORD": "hostile-Pw-3"}

pytestmark = pytest.mark.timeout(300)

INVENTORY = """\
version: 1
defaults:
  timeout: 7
  policy: require
targets:
  iis-build-42:
    protocol: ftps
    host: ftp.example.net
    trust: {pin_sha256: "PIN"}
    user: deploy
    password_env: IIS_PW
    passive_address: 203.0.113.10
    passive_ports: [50000, 50100]
    session_reuse_required: true
    groups: [iis, release-42]
    labels: {site: tokyo}
  postfix-1:
    protocol: submission
    host: mail.example.net
    port: 587
    trust: {ca_file: ca.pem}
    user: probe
    password_env: MAIL_PW
    rcpt_to: postmaster@example.net
    groups: [mail, release-42]
  legacy:
    protocol: ftps-implicit
    host: 192.0.2.7
    trust: {insecure: true}
""".replace("PIN", ":".join(["AB", "CD", "EF", "01", "23", "45", "67", "89"] * 4))

# -- text strategies -------------------------------------------------------------------

_FIELDS = [
    # scenario
    "scenario", "description", "protocols", "lab", "checks", "name", "server", "certificate",
    "trust", "policy", "require_session_reuse", "implicit", "passive_ports", "masquerade",
    "min_tls", "max_tls", "role", "port25", "submission", "submissions", "faults", "check",
    "id", "params", "targets", "expect", "retry", "attempts", "sleep",
    # inventory
    "version", "defaults", "protocol", "host", "port", "server_name", "ca_file", "pin_sha256",
    "insecure", "user", "password_env", "timeout", "passive_address", "session_reuse_required",
    "mail_from", "rcpt_to", "relay_to", "groups", "labels", "iis-build-42",
]
_SCALARS = [
    "ftps", "ftps-implicit", "smtp", "submission", "submissions", "ftp", "require", "allow",
    "lab", "iis", "expired", "pin", "ca", "insecure", "banner", "transfers", "login", "pass",
    "fail", "skip", "error", "true", "false", "yes", "no", "on", "~", "null", "0", "-1", "21",
    "65536", "1.5", "1e3", ".inf", "-.nan", "0x1F", "0o17", "1_000", "2020-01-01",
    "2020-13-45", "2020-02-30 25:61:61", "1" * 5000, "'quoted'", '"dq \\x00 \\u00e9"',
    "!!binary aGVsbG8=", "!!str 5", "!!int x", "!!float y", "!!timestamp z", "!!set {a}",
    "!!omap [a: 1]", "!!python/object:os.system ls", "!<tag:yaml.org,2002:int> 7", "&anchor x",
    "*anchor", "*undefined", "[a, b, [c]]", "{a: 1, b: [2]}", "{", "[", "]", "}", "|", ">-",
    "'unterminated", '"unterminated', "? complex", "<<: *anchor", "%YAML 1.1", "---", "...",
    "@reserved", "`reserved", "#comment", "\t", "é", "\u2028", "\ufeff", "\x85", "\U0001f600",
]
_identifier = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1,
                      max_size=12)
_key = st.one_of(st.sampled_from(_FIELDS), _identifier)
_value = st.one_of(st.sampled_from(_SCALARS), _identifier, st.integers().map(str),
                   st.floats().map(str))
# Values that keep a line valid YAML, so the schema and the loaders' own rules are reached.
_plain_value = st.one_of(
    st.sampled_from([s for s in _SCALARS if s[0].isalnum() and "'" not in s and ":" not in s]),
    st.sampled_from(_FIELDS), st.integers(-2, 70000).map(str),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=10),
)


@st.composite
def _yaml_line(draw: Callable[..., Any]) -> str:
    indent = " " * draw(st.sampled_from([0, 0, 2, 2, 4, 6, 8, 1, 3]))
    shape = draw(st.sampled_from(["key: value", "key:", "- value", "- key: value", "value",
                                  "key: [value, value]", "key: {key: value}", "&a key: value",
                                  "? key", "# comment"]))
    line = shape
    for part in ("key", "value"):
        while part in line:
            line = line.replace(part, draw(_key if part == "key" else _value), 1)
    return indent + line


_yamlish = st.lists(_yaml_line(), max_size=40).map("\n".join)
_any_text = st.text(max_size=2000)


@st.composite
def _mutated(draw: Callable[..., Any], source: str) -> str:
    """A valid file with a few edits: what a merge conflict or a bad paste produces."""
    lines = source.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [draw(_yaml_line())]
        index = draw(st.integers(0, len(lines) - 1))
        # Weighted toward edits that keep the YAML well-formed: those reach the schema
        # and the rules beyond it, where a stray exception is likelier than in the parser.
        kind = draw(st.sampled_from(
            ["delete", "duplicate", "swap", "replace", "insert", "indent", "dedent", "splice",
             "truncate", "value", "plain", "plain", "plain", "plain", "key", "key", "delete"]))
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == "replace":
            lines[index] = draw(_yaml_line())
        elif kind == "insert":
            lines.insert(index, draw(_yaml_line()))
        elif kind == "indent":
            lines[index] = " " * draw(st.integers(1, 3)) + lines[index]
        elif kind == "dedent":
            lines[index] = lines[index].lstrip()
        elif kind == "splice":
            line = lines[index]
            cut = draw(st.integers(0, len(line)))
            lines[index] = line[:cut] + draw(st.text(max_size=8)) + line[cut:]
        elif kind == "truncate":
            lines = lines[:index]
        elif kind == "key":  # another field name, same indentation and value
            line = lines[index]
            head, colon, rest = line.partition(":")
            if colon:
                lead = head[: len(head) - len(head.lstrip(" -"))]
                lines[index] = f"{lead}{draw(st.sampled_from(_FIELDS))}:{rest}"
        else:  # a new value after the first colon (a flow mapping's too)
            head, colon, rest = lines[index].partition(":")
            if colon:
                new = draw(_value if kind == "value" else _plain_value)
                tail = "}" if rest.rstrip().endswith("}") and "{" in head else ""
                lines[index] = f"{head}: {new}{tail}"
    return "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


# -- the property ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hostile-files")
    (directory / "ca.pem").write_text("not really a CA, only has to exist\n")
    return directory


@pytest.fixture(scope="module")
def checks() -> dict[str, Any]:
    return load_all()


def _load_scenario(path: Path, checks: dict[str, Any]) -> Scenario:
    return load_scenario(path, checks)


def _load_inventory(path: Path) -> list[Target]:
    inventory = load_inventory(path)
    assert isinstance(inventory, Inventory)
    inventory.groups()
    return inventory.select(env=ENV)


def _note(outcome: str) -> None:
    """Outcome shares for ``--hypothesis-show-statistics`` (are we past the parser?)."""
    if currently_in_test_context():
        event(outcome)


def _result_or_source_error(path: Path, text: str, load: Callable[[Path], Any]) -> Any:
    """Write ``text``, load it, and hold the loader to its contract."""
    path.write_text(text, encoding="utf-8")
    start = time.monotonic()
    try:
        value = load(path)
    except SourceError as exc:
        elapsed = time.monotonic() - start
        assert elapsed < SECONDS_PER_LOAD, f"took {elapsed:.1f} s to refuse the file"
        message = str(exc)
        assert exc.file == str(path) and exc.message, message
        if exc.line is not None:
            assert message.startswith(f"{path}:{exc.line}: "), message
            assert 1 <= exc.line <= max(1, text.count("\n") + 2), (exc.line, message)
        else:
            assert message.startswith(f"{path}: "), message
        assert "Traceback" not in message
        _note("refused: YAML" if "invalid YAML" in exc.message else "refused: schema/rules")
        return exc
    elapsed = time.monotonic() - start
    assert elapsed < SECONDS_PER_LOAD, f"took {elapsed:.1f} s to load the file"
    _note("loaded")
    return value


@given(text=st.one_of(_any_text, _yamlish))
@example(text="scenario: 2020-13-45\n")
@example(text="scenario: " + "9" * 5000 + "\n")
@example(text="a: &a [*a]\n")
@example(text="[" * 5000 + "]" * 5000)
@example(text="\ufeffscenario: x\n\x00")
@example(text="!!python/object/apply:os.system [ls]\n")
@example(text="scenario: x\nprotocols: [ftps]\nchecks: [banner]\nchecks: [login]\n")
def test_scenario_loader_on_arbitrary_text(
    text: str, workdir: Path, checks: dict[str, Any]
) -> None:
    path = workdir / "arbitrary.yaml"
    result = _result_or_source_error(path, text, lambda p: _load_scenario(p, checks))
    if isinstance(result, Scenario):
        assert result.checks and result.protocols


@given(data=st.data())
def test_scenario_loader_on_mutated_shipped_files(
    data: st.DataObject, workdir: Path, checks: dict[str, Any]
) -> None:
    source = data.draw(st.sampled_from(SHIPPED), label="file")
    text = data.draw(_mutated(source.read_text()), label="mutated")
    path = workdir / source.name
    result = _result_or_source_error(path, text, lambda p: _load_scenario(p, checks))
    if isinstance(result, Scenario):
        assert all(entry.check in checks for entry in result.checks)


@given(text=st.one_of(_any_text, _yamlish))
@example(text="targets:\n  a:\n    protocol: ftps\n    host: h\n    trust: {ca_file: \"a\\0b\"}\n")
@example(text="targets:\n  a:\n    protocol: ftps\n    host: 2020-02-30\n")
@example(text="0: !!timestamp")
@example(text="targets: !!bool maybe")
@example(text="targets:\n  a: {protocol: ftps, host: h, passive_ports: [9, 1]}\n")
@example(text="targets:\n  a: {protocol: ftps, host: h, user: u}\n")
@example(text="targets:\n  a: {protocol: ftps, host: h, password_env: UNSET_FOR_SURE}\n")
def test_inventory_loader_on_arbitrary_text(text: str, workdir: Path) -> None:
    result = _result_or_source_error(workdir / "arbitrary-inventory.yaml", text, _load_inventory)
    if isinstance(result, list):
        assert all(isinstance(target, Target) for target in result)


@given(text=_mutated(INVENTORY))
def test_inventory_loader_on_mutated_valid_file(text: str, workdir: Path) -> None:
    result = _result_or_source_error(workdir / "inventory.yaml", text, _load_inventory)
    if isinstance(result, list):
        for target in result:
            assert 1 <= target.port <= 65535 and target.timeout > 0


def test_the_unmutated_inventory_loads(workdir: Path) -> None:
    """The mutation source must itself be valid, or every mutant is trivially refused."""
    targets = _result_or_source_error(workdir / "inventory.yaml", INVENTORY, _load_inventory)
    assert [t.name for t in targets] == ["iis-build-42", "postfix-1", "legacy"]
    assert targets[0].passive_ports == (50000, 50100)


@given(url=st.one_of(
    st.text(max_size=200),
    st.builds(lambda scheme, rest: f"{scheme}://{rest}",
              st.sampled_from(["ftps", "ftps-implicit", "smtp", "submission", "http", ""]),
              st.text(max_size=120)),
))
@example(url="ftps://[::1")
@example(url="ftps://host:99999")
@example(url="ftps://host?timeout=nan")
@example(url="ftps://host?timeout=-1")
@example(url="ftps://user:secret@host")
@example(url="ftps://user@host")
def test_lab_url_is_a_target_or_a_source_error(url: str) -> None:
    try:
        target = target_from_url(url, env=ENV)
    except SourceError as exc:
        assert str(exc).startswith(f"--lab-url {url}: ")
        assert "secret" not in exc.message
        return
    assert 1 <= target.port <= 65535 and 0 < target.timeout <= 300
    assert target.host and "secret" not in repr(target)


def test_alias_bomb_stops_at_the_value_budget_quickly(
    workdir: Path, checks: dict[str, Any]
) -> None:
    """Nine levels of ten aliases would be 10**9 values; the loader stops at the budget."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = workdir / "bomb.yaml"
    start = time.monotonic()
    error = _result_or_source_error(path, "\n".join(lines) + "\n",
                                    lambda p: _load_scenario(p, checks))
    assert time.monotonic() - start < 5
    assert isinstance(error, SourceError), error
    assert f"more than {MAX_VALUES} values" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("scenario: x\nprotocols: [ftps]\nchecks:\n  - check: banner\n    id: 2020-13-45\n",
         5, "invalid value for timestamp: month"),
        ("scenario: x\nprotocols: [ftps]\nchecks: [banner]\ndescription: " + "7" * 5000 + "\n",
         4, "invalid value"),
    ],
)
def test_impossible_scalars_name_file_and_line(
    text: str, line: int, words: str, workdir: Path, checks: dict[str, Any]
) -> None:
    path = workdir / "scalars.yaml"
    error = _result_or_source_error(path, text, lambda p: _load_scenario(p, checks))
    assert isinstance(error, SourceError) and error.line == line
    assert words in str(error) and str(error).startswith(f"{path}:{line}: ")
