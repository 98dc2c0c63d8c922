"""``lab iis-script``: the PowerShell builds the site the lab expects, and cannot be injected."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness.cli import main
from harness.iis_script import IISSiteSpec, ps_quote, render_script


def test_script_sets_policy_range_external_address_and_checks_the_thumbprint() -> None:
    spec = IISSiteSpec(
        site="Build 42",
        pfx_file="ftp.pfx",
        passive_ports=(50000, 50100),
        external_ip="203.0.113.10",
        user="FTPUSERS",
        thumbprint="AB" * 20,
    )
    text = render_script(spec)
    assert "\r\n" in text and text.startswith("#Requires -RunAsAdministrator")
    assert "Import-PfxCertificate -FilePath $PfxFile" in text
    assert "controlChannelPolicy -Value 'SslRequire'" in text
    assert "dataChannelPolicy -Value 'SslRequire'" in text
    assert "lowDataChannelPort -Value 50000" in text and "highDataChannelPort -Value 50100" in text
    assert "externalIp4Address -Value '203.0.113.10'" in text
    assert "anonymousAuthentication.enabled -Value $false" in text
    assert "'ABABABABABABABABABABABABABABABABABABABAB'" in text
    allow = render_script(IISSiteSpec(site="s", pfx_file="a.pfx", policy="allow"))
    assert "controlChannelPolicy -Value 'SslAllow'" in allow and "externalIp4Address" not in allow


@pytest.mark.parametrize(
    "bad",
    [
        {"site": "x'; Remove-Item C:\\ -Recurse; '"},
        {"user": "a$(calc)"},
        {"external_ip": "10.0.0.1; calc"},
        {"passive_ports": (50100, 50000)},
        {"policy": "maybe"},
        {"password_env": "A B"},
    ],
)
def test_values_that_could_break_the_script_are_refused(bad: dict[str, object]) -> None:
    spec = IISSiteSpec(**{"site": "s", "pfx_file": "a.pfx", **bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render_script(spec)


def test_quoting_doubles_single_quotes() -> None:
    assert ps_quote("C:\\ftp root\\it's") == "'C:\\ftp root\\it''s'"


def test_cli_writes_certificate_pfx_and_script(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["iis-script", "ftp.example.net", "--out", str(tmp_path), "--external-ip", "203.0.113.10"],
        env={"LAB_PFX_PASSWORD": "pfx-Secret-991"},
    )
    assert result.exit_code == 0, result.output
    assert "pfx-Secret-991" not in result.output
    script = (tmp_path / "provision-ftps-lab.ps1").read_text(encoding="utf-8")
    assert "pfx-Secret-991" not in script
    assert "'ftp.example.net.pfx'" in script
    cert = x509.load_pem_x509_certificate((tmp_path / "ftp.example.net.pem").read_bytes())
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER))
    assert f"'{thumbprint.hexdigest().upper()}'" in script
    assert stat.S_IMODE((tmp_path / "ftp.example.net.key").stat().st_mode) == 0o600
    assert (tmp_path / "ftp.example.net.pfx").stat().st_size > 0
    assert "passive_address: 203.0.113.10" in result.output
