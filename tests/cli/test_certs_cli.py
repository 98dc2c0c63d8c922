"""``lab certs``: files written, fingerprints printed, PFX passwords never shown."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from harness.certs import clear_lab_pki_cache
from harness.cli.certs import certs
from harness.protocols.tls import sha256_fingerprint

ENV_PASSWORD = "env-password-4711"


def leaf_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def fingerprint(path: Path) -> str:
    return sha256_fingerprint(leaf_of(path).public_bytes(serialization.Encoding.DER))


def invoke(args: list[str], env: dict[str, str | None] | None = None) -> click.testing.Result:
    result = CliRunner().invoke(certs, args, env={"LAB_PFX_PASSWORD": None, **(env or {})})
    return result


def test_certs_is_a_click_group_wired_into_lab() -> None:
    from harness.cli import main

    assert isinstance(certs, click.Group) and certs.name == "certs"
    assert main.commands["certs"] is certs
    assert set(certs.commands) == {"ca", "server", "iis", "fingerprint", "lab"}


@pytest.mark.parametrize("command", [[], ["ca"], ["server"], ["iis"], ["fingerprint"], ["lab"]])
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = invoke([*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert "lab certs" in result.output.split("Examples:", 1)[1]


def test_ca_writes_cert_and_private_key_and_refuses_to_clobber(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = invoke(["ca", "--out", str(out), "--key-type", "rsa2048"])
    assert result.exit_code == 0, result.output
    ca_pem, ca_key = out / "ca.pem", out / "ca.key"
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    assert str(ca_pem) in result.output and str(ca_key) in result.output
    assert fingerprint(ca_pem) in result.output
    cert = leaf_of(ca_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)

    before = ca_pem.read_bytes()
    again = invoke(["ca", "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
    assert ca_pem.read_bytes() == before
    forced = invoke(["ca", "--out", str(out), "--force"])
    assert forced.exit_code == 0 and ca_pem.read_bytes() != before


def test_server_with_legacy_pfx_from_env_password(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    args = ["server", "--out", str(out), "--dns", "ftp.example.test", "--dns", "ftp"]
    args += ["--ip", "192.0.2.10", "--key-type", "rsa2048", "--pfx", "legacy"]
    result = invoke(args, env={"LAB_PFX_PASSWORD": ENV_PASSWORD})
    assert result.exit_code == 0, result.output
    assert ENV_PASSWORD not in result.output
    assert "$LAB_PFX_PASSWORD" in result.output and "legacy" in result.output

    cert_file, key_file, pfx = (out / f"ftp.example.test{s}" for s in (".pem", ".key", ".pfx"))
    for path in (cert_file, key_file, pfx, out / "ca.pem"):
        assert str(path) in result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pfx.stat().st_mode) == 0o600
    assert not (out / "ftp.example.test.pfx.password").exists()
    assert fingerprint(cert_file) in result.output

    leaf = leaf_of(cert_file)
    ca = leaf_of(out / "ca.pem")
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ftp.example.test", "ftp"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    loaded = pkcs12.load_pkcs12(pfx.read_bytes(), ENV_PASSWORD.encode())
    assert loaded.cert is not None and loaded.cert.certificate == leaf
    assert isinstance(loaded.key, rsa.RSAPrivateKey) and loaded.key.key_size == 2048

    # a second leaf comes from the same CA instead of a new one
    second = invoke(["server", "--out", str(out), "--ip", "127.0.0.1"])
    assert second.exit_code == 0, second.output
    assert "created CA" not in second.output
    other = leaf_of(out / "127.0.0.1.pem")
    other.verify_directly_issued_by(ca)
    assert isinstance(other.public_key(), ec.EllipticCurvePublicKey)


def test_iis_without_env_password_generates_one_into_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = invoke(["iis", "WIN-BUILD42", "--out", str(out), "--pfx", "modern"])
    assert result.exit_code == 0, result.output
    secret_file = out / "WIN-BUILD42.pfx.password"
    password = secret_file.read_text().strip()
    assert len(password) >= 20
    assert password not in result.output
    assert str(secret_file) in result.output and "LAB_PFX_PASSWORD" in result.output
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    cert = leaf_of(out / "WIN-BUILD42.pem")
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    assert fingerprint(out / "WIN-BUILD42.pem") in result.output
    loaded = pkcs12.load_pkcs12((out / "WIN-BUILD42.pfx").read_bytes(), password.encode())
    assert loaded.cert is not None and loaded.cert.certificate == cert


def test_password_env_names_another_variable(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    args = ["iis", "host.test", "--out", str(out), "--pfx", "legacy"]
    args += ["--password-env", "MY_PFX_SECRET"]
    result = invoke(args, env={"MY_PFX_SECRET": ENV_PASSWORD})
    assert result.exit_code == 0, result.output
    assert ENV_PASSWORD not in result.output and "$MY_PFX_SECRET" in result.output
    pkcs12.load_pkcs12((out / "host.test.pfx").read_bytes(), ENV_PASSWORD.encode())


def test_fingerprint_prints_leaf_first_for_pem_and_der(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert invoke(["server", "--out", str(out), "--dns", "a.test"]).exit_code == 0
    chain = out / "a.test.pem"
    result = invoke(["fingerprint", str(chain)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(fingerprint(chain) + "  CN=a.test")
    assert lines[1].startswith(fingerprint(out / "ca.pem"))

    der = tmp_path / "a.cer"
    der.write_bytes(leaf_of(chain).public_bytes(serialization.Encoding.DER))
    result = invoke(["fingerprint", str(der)])
    assert result.exit_code == 0 and result.output.split()[0] == fingerprint(chain)

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    result = invoke(["fingerprint", str(junk)])
    assert result.exit_code == 1 and "not a PEM or DER certificate" in result.output


def test_lab_makes_the_set_then_reuses_it(tmp_path: Path) -> None:
    out = tmp_path / "lab"
    first = invoke(["lab", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "generated" in first.output
    for name in ("ca", "lab", "iis", "expired", "not-yet-valid", "wrong-host", "unknown-ca"):
        assert any(line.startswith(name + " ") for line in first.output.splitlines()), name
    assert fingerprint(out / "server.pem") in first.output
    assert stat.S_IMODE((out / "server.key").stat().st_mode) == 0o600

    clear_lab_pki_cache()
    second = invoke(["lab", "--out", str(out)])
    assert second.exit_code == 0 and "reused" in second.output
    assert fingerprint(out / "server.pem") in second.output

    forced = invoke(["lab", "--out", str(out), "--force"])
    assert forced.exit_code == 0 and "generated" in forced.output
    assert fingerprint(out / "server.pem") not in first.output


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(["server", "--out", str(tmp_path), "--dns", "a.test", "--key-type", "dsa"])
    assert result.exit_code == 2
    assert "unknown key type 'dsa'" in result.output and "ecdsa-p384" in result.output
    result = invoke(["server", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--dns or --ip" in result.output
    result = invoke(["iis", "h.test", "--out", str(tmp_path), "--pfx", "strong"])
    assert result.exit_code == 2
    assert not any(tmp_path.iterdir()), "nothing may be written on a usage error"
