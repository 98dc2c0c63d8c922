"""Inventory loading: good files give targets; bad ones name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.inventory import load_inventory, target_from_url
from harness.yamlsource import SourceError

PIN = ":".join(["AB", "CD", "EF", "01", "23", "45", "67", "89"] * 4)
GOOD = """\
version: 1
defaults:
  timeout: 7
  policy: require
targets:
  iis-build-42:
    protocol: ftps
    host: ftp.example.net
    trust: {pin_sha256: "PIN"}
    user: labuser
    password_env: IIS_PW
    passive_address: 203.0.113.10
    passive_ports: [50000, 50100]
    groups: [iis, release-42]
  postfix-1:
    protocol: submission
    host: mail.example.net
    trust: {insecure: true}
    groups: [mail, release-42]
""".replace("PIN", PIN)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def test_good_inventory_gives_targets_with_defaults(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, GOOD))
    targets = inventory.select(env={"IIS_PW": "s3cret-pw"})
    assert [t.name for t in targets] == ["iis-build-42", "postfix-1"]
    iis, mail = targets
    assert (iis.port, iis.timeout, iis.policy, iis.trust.mode) == (21, 7.0, "require", "pin")
    assert iis.password == "s3cret-pw" and "s3cret-pw" not in repr(iis)
    assert iis.passive_ports == (50000, 50100)
    assert (mail.port, mail.trust.mode) == (587, "insecure")
    assert iis.id == "ftps://iis-build-42"


def test_select_by_group_and_name(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, GOOD))
    assert [t.name for t in inventory.select(groups=["mail"], env={})] == ["postfix-1"]
    assert [t.name for t in inventory.select(names=["postfix-1"], env={})] == ["postfix-1"]
    with pytest.raises(SourceError, match="no group named 'nope'"):
        inventory.select(groups=["nope"], env={})


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            GOOD.replace(
                "    host: mail.example.net\n", "    host: mail.example.net\n    host: x\n"
            ),
            18,
            "targets.postfix-1.host",
            "duplicate key",
        ),
        (
            GOOD.replace("    groups: [mail", "    colour: red\n    groups: [mail"),
            19,
            "targets.postfix-1.colour",
            "unknown field",
        ),
        (GOOD.replace("timeout: 7", "timeout: soon"), 3, "defaults.timeout", "expected number"),
        (
            GOOD.replace("protocol: submission", "protocol: smtps"),
            16,
            "targets.postfix-1.protocol",
            "must be one of",
        ),
        (GOOD.replace("    protocol: submission\n", ""), 15, "targets.postfix-1", "protocol"),
        (GOOD.replace("[50000, 50100]", "[50000]"), 13, "targets.iis-build-42.passive_ports", ""),
        ("targets: [\n", 2, "", "invalid YAML"),
    ],
)
def test_bad_inventory_names_file_line_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SourceError) as caught:
        load_inventory(path).select(env={"IIS_PW": "x"})
    error = caught.value
    assert error.file == str(path)
    assert (error.line, error.field) == (line, field)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_missing_password_variable_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(SourceError) as caught:
        load_inventory(path).select(env={})
    assert caught.value.line == 11
    assert caught.value.field == "targets.iis-build-42.password_env"
    assert "IIS_PW is not set" in caught.value.message


def test_target_from_url() -> None:
    target = target_from_url(
        "ftps://bob@ftp.example.net:2121?policy=allow&insecure=1", env={"LAB_PASSWORD": "pw-123"}
    )
    assert (target.host, target.port, target.user, target.password) == (
        "ftp.example.net",
        2121,
        "bob",
        "pw-123",
    )
    assert target.policy == "allow" and target.trust.insecure
    with pytest.raises(SourceError, match="never put a password"):
        target_from_url("ftps://bob:pw@h", env={})
    with pytest.raises(SourceError, match="LAB_PASSWORD is not set"):
        target_from_url("ftps://bob@h", env={})


def test_strict_and_auth_failure_delay_from_defaults_and_targets(tmp_path: Path) -> None:
    text = GOOD.replace("  policy: require\n", "  policy: require\n  strict: true\n").replace(
        "    trust: {insecure: true}\n",
        "    trust: {insecure: true}\n    strict: false\n    auth_failure_delay: 5\n",
    )
    iis, mail = load_inventory(write(tmp_path, text)).select(env={"IIS_PW": "x"})
    assert (iis.strict, iis.auth_failure_delay) == (True, 2.0)  # Dovecot's default
    assert (mail.strict, mail.auth_failure_delay) == (False, 5.0)
    plain = load_inventory(write(tmp_path, GOOD)).select(env={"IIS_PW": "x"})
    assert [t.strict for t in plain] == [False, False]
    for bad, field in (("strict: yes please", "defaults.strict"),
                       ("auth_failure_delay: -1", "defaults.auth_failure_delay")):
        path = write(tmp_path, GOOD.replace("  policy: require\n", f"  policy: require\n  {bad}\n"))
        with pytest.raises(SourceError) as caught:
            load_inventory(path).select(env={"IIS_PW": "x"})
        assert caught.value.field == field


def test_strict_and_auth_failure_delay_from_a_url() -> None:
    target = target_from_url("submission://mail.example.net?strict=1&auth_failure_delay=0.5")
    assert (target.strict, target.auth_failure_delay) == (True, 0.5)
    default = target_from_url("submission://mail.example.net")
    assert (default.strict, default.auth_failure_delay) == (False, 2.0)
    with pytest.raises(SourceError, match="auth_failure_delay"):
        target_from_url("submission://mail.example.net?auth_failure_delay=90")
    with pytest.raises(SourceError, match="strict"):
        target_from_url("submission://mail.example.net?strict=maybe")


def test_op25b_expectations_from_an_inventory_and_a_url(tmp_path: Path) -> None:
    """What an office's CI names: the verdicts that pass here, and (for a loopback
    rehearsal) the ports to probe instead of 25/587/465."""
    text = GOOD + (
        "  office:\n    protocol: submission\n    host: mail.example.net\n"
        "    op25b_expect: [port25-filtered, port25-refused]\n"
        "    op25b_ports: {smtp: 2525, submissions: 0}\n"
        "  single:\n    protocol: submission\n    host: mail.example.net\n"
        "    op25b_expect: submission-ok\n"
    )
    targets = {t.name: t for t in load_inventory(write(tmp_path, text)).select(
        env={"IIS_PW": "x"})}
    assert targets["office"].op25b_expect == ("port25-filtered", "port25-refused")
    assert targets["office"].op25b_ports == {"smtp": 2525, "submissions": 0}
    assert targets["single"].op25b_expect == ("submission-ok",)
    assert targets["postfix-1"].op25b_expect == () and targets["postfix-1"].op25b_ports == {}
    url = target_from_url("submission://mail.example.net?op25b_expect=port25-filtered,use-465")
    assert url.op25b_expect == ("port25-filtered", "use-465")
    with pytest.raises(SourceError, match="unknown verdict 'blocked'"):
        target_from_url("submission://mail.example.net?op25b_expect=blocked")


def test_an_unknown_op25b_verdict_names_the_line(tmp_path: Path) -> None:
    text = GOOD + ("  office:\n    protocol: submission\n    host: mail.example.net\n"
                   "    op25b_expect: [port25-blocked]\n")
    with pytest.raises(SourceError) as caught:
        load_inventory(write(tmp_path, text))
    assert caught.value.line == 23 and "op25b_expect" in caught.value.field
