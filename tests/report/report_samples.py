"""Shared material for the report tests: a synthetic run, a PNG reader, a pytest runner.

The synthetic run covers every status (a warning that passed the run too), an expected
failure, a result without a ``CheckResult`` and hostile server text (markup, control
characters, a password echoed raw and in base64), so the renderers are exercised without
a network.
"""

from __future__ import annotations

import base64
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from harness.report.model import (
    CollectionError,
    RunInfo,
    RunModel,
    ScenarioInfo,
    Scrubber,
    TargetInfo,
    record_entry,
)
from harness.results import CheckResult, SkipKind, Status

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Synth-Secret-4471"
PASSWORD_B64 = base64.b64encode(PASSWORD.encode()).decode()
HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>&amp;]]>'
CONTROL = "550 bad\x00\x1b[31mred\x07\x0c"

IIS = TargetInfo(
    id="ftps://iis-build-42",
    name="iis-build-42",
    protocol="ftps",
    kind="remote",
    host="ftp.example.net",
    port=21,
    user="deploy",
    groups=["iis", "release-42"],
    labels={"site": "<Default FTP Site>", "owner": "ops"},
)
MAIL = TargetInfo(
    id="submission://postfix-1",
    name="postfix-1",
    protocol="submission",
    kind="remote",
    host="mail.example.net",
    port=587,
    user="probe",
)
SITE = ScenarioInfo("iis-site", "scenarios/iis-site.yaml", "IIS site <Require SSL> & reuse")
MAILS = ScenarioInfo("submission", "scenarios/submission.yaml", "587 with STARTTLS")

CERTIFICATE = {
    "subject": "CN=ftp.example.net",
    "issuer": "CN=Example CA",
    "dns_names": ["ftp.example.net"],
    "not_after": "2020-01-01T00:00:00+00:00",
    "days_left": -400,
    "sha256": "AB:CD",
    "self_signed": False,
}


def _entry(
    scenario: ScenarioInfo,
    target: TargetInfo,
    check_id: str,
    result: CheckResult | None,
    *,
    check: str | None = None,
    expect: str = "pass",
    outcome: str | None = None,
    message: str = "",
    order: int = 0,
    skip_kind: SkipKind | None = None,
) -> dict[str, Any]:
    if outcome is None:
        status = result.status.value if result else "skip"
        if status == expect:
            outcome = "skipped" if status == "skip" else "passed"
        else:
            outcome = "skipped" if status == "skip" else "failed"
    return record_entry(
        nodeid=f"{scenario.file}::{check_id}[{target.id}]",
        scenario=scenario,
        target=target,
        check=check or check_id,
        check_id=check_id,
        expect=expect,
        line=10 + order,
        order=order,
        outcome=outcome,
        message=message,
        result=result,
        duration=0.25,
        skip_kind=skip_kind,
    )


def synthetic_entries() -> list[dict[str, Any]]:
    """Record dicts as the plugin would attach them to pytest reports."""
    banner = CheckResult(
        check="banner",
        status=Status.PASS,
        summary=f"banner: 220 welcome {PASSWORD}",
        replies=[f"220 welcome {PASSWORD} {PASSWORD_B64}"],
        evidence={"banner": [f"220 welcome {PASSWORD}"], "tuple": (1, 2), "raw": b"\xff\x00"},
        # The banner check never logs in, so nothing told its transcript the password.
        transcript=[f"  0.001 < 220 welcome {PASSWORD}"],
        duration=0.01,
    )
    trust = CheckResult(
        check="certificate-trust",
        status=Status.FAIL,
        summary="certificate not trusted: certificate has expired",
        expected="chain to the CA file and host name match",
        observed="certificate has expired",
        replies=["234 AUTH TLS successful.", HOSTILE, CONTROL],
        evidence={"tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                  "certificate": CERTIFICATE, "note": HOSTILE},
        advice="Renew the certificate and bind the new one.",
        transcript=[
            "  0.001 > AUTH TLS", "  0.002 < 234 AUTH TLS successful.", f"  0.003 # {HOSTILE}"
        ],
        duration=0.02,
    )
    caught = CheckResult(
        check="legacy-tls-refused",
        status=Status.FAIL,
        summary="TLS 1.0 accepted",
        advice="Disable TLS 1.0 (IIS: Schannel registry).",
        duration=0.03,
    )
    reuse = CheckResult(
        check="data-session-reuse",
        status=Status.ERROR,
        summary="connection refused on the data port",
        advice="Open the passive port range in the firewall.",
        duration=0.04,
    )
    # No skip_kind given: an unclassified skip counts as "could not run".
    epsv = CheckResult(check="epsv", status=Status.SKIP, summary="EPSV not offered", duration=0.0)
    starttls = CheckResult(
        check="starttls",
        status=Status.PASS,
        summary="STARTTLS then TLSv1.2",
        evidence={"tls": {"tls_version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256"}},
        transcript=["  0.001 > AUTH PLAIN ********"],
    )
    lax_pass = CheckResult(
        check="legacy-tls-refused", status=Status.PASS, summary="TLS 1.0 refused"
    )
    # Secure and working, but off a SHOULD: passes the run (not strict), with advice.
    extensions = CheckResult(
        check="extensions",
        status=Status.WARN,
        summary="not offered after TLS: PIPELINING, ENHANCEDSTATUSCODES, DSN",
        expected="AUTH (MUST) and PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SIZE",
        observed="offered after TLS: SIZE 8BITMIME SMTPUTF8 AUTH",
        advice="Offer the missing extensions (Postfix: smtpd_discard_ehlo_keywords).",
        transcript=["  0.001 > EHLO ftps-lab.test", "  0.002 < 250-mx"],
        duration=0.01,
    )
    ended = "check ended {}, expected pass"
    return [
        _entry(SITE, IIS, "banner", banner, order=0),
        _entry(SITE, IIS, "certificate-trust", trust, order=1, message=ended.format("fail")),
        _entry(
            SITE, IIS, "legacy-caught", caught, check="legacy-tls-refused", expect="fail", order=2
        ),
        _entry(SITE, IIS, "data-session-reuse", reuse, order=3, message=ended.format("error")),
        _entry(SITE, IIS, "epsv", epsv, order=4, message="EPSV not offered"),
        _entry(SITE, MAIL, "legacy-tls-refused", lax_pass, order=5),
        _entry(MAILS, MAIL, "starttls", starttls, order=0),
        _entry(MAILS, MAIL, "extensions", extensions, order=3, outcome="passed"),
        _entry(MAILS, MAIL, "internal", None, outcome="failed",
               message="internal error: RuntimeError: boom", order=1),
        _entry(MAILS, MAIL, "not-applicable", None, outcome="skipped",
               message="not applicable: starttls does not apply to ftps targets", order=2,
               skip_kind=SkipKind.NOT_APPLICABLE),
    ]


def synthetic_run_info() -> RunInfo:
    return RunInfo(
        started="2024-05-01T10:00:00+00:00",
        finished="2024-05-01T10:00:09+00:00",
        duration=9.0,
        ftps_lab_version="0.1.0",
        python="CPython 3.11.7",
        platform="Linux-test",
        pytest_version="8.0.0",
        exit_status=1,
    )


def synthetic_model(*, scrub: bool = True, errors: bool = False) -> RunModel:
    scrubber = Scrubber([PASSWORD]) if scrub else None
    collection = (
        [CollectionError("scenarios/broken.yaml", "invalid scenario: broken.yaml:7: lab[0].polcy")]
        if errors
        else []
    )
    return RunModel.build(synthetic_run_info(), synthetic_entries(), scrubber, collection)


# -- PNG -------------------------------------------------------------------------------


def read_png(path: Path) -> tuple[int, int, list[bytes], int]:
    """(width, height, unfiltered rows, bytes per pixel) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    offset, idat, header = 8, b"", None
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunk = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    position = 0
    for _ in range(height):
        kind = raw[position]
        line = bytearray(raw[position + 1 : position + 1 + stride])
        position += 1 + stride
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
            elif kind != 0:
                raise ValueError(f"bad PNG filter type {kind}")
        rows.append(bytes(line))
        previous = line
    return width, height, rows, bpp


def count_near(rows: list[bytes], bpp: int, colour: str, tolerance: int = 10) -> int:
    """Pixels within ``tolerance`` per channel of ``#RRGGBB``."""
    target = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    count = 0
    for row in rows:
        for i in range(0, len(row), bpp):
            r, g, b = row[i], row[i + 1], row[i + 2]
            if (
                abs(r - target[0]) <= tolerance
                and abs(g - target[1]) <= tolerance
                and abs(b - target[2]) <= tolerance
            ):
                count += 1
    return count


def write_png(path: Path, pixels: list[list[tuple[int, int, int]]]) -> None:
    """A small RGB PNG whose rows use filter types 0-4 in turn (to test the reader)."""
    height, width = len(pixels), len(pixels[0])
    raw = bytearray()
    previous = bytearray(width * 3)
    for y, row in enumerate(pixels):
        line = bytearray(v for pixel in row for v in pixel)
        kind = y % 5
        out = bytearray()
        for i, value in enumerate(line):
            left = line[i - 3] if i >= 3 else 0
            up = previous[i]
            corner = previous[i - 3] if i >= 3 else 0
            if kind == 0:
                predictor = 0
            elif kind == 1:
                predictor = left
            elif kind == 2:
                predictor = up
            elif kind == 3:
                predictor = (left + up) // 2
            else:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            out.append((value - predictor) & 0xFF)
        raw += bytes([kind]) + out
        previous = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


# -- running pytest ----------------------------------------------------------------------

DEMO_SCENARIO = """\
scenario: report-demo
description: >
  A good server and one whose certificate has expired <b>bold?</b>
protocols: [ftps]
lab:
  - name: good
    server: ftps
  - name: lax
    server: ftps
    certificate: expired
checks:
  - banner
  - certificate-trust
  - check: certificate-trust
    id: expired-caught
    targets: [lax]
    expect: fail
  - login
"""


def write_scenario(directory: Path, text: str = DEMO_SCENARIO, name: str = "demo.yaml") -> Path:
    scenarios = directory / "scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    path = scenarios / name
    path.write_text(text)
    return path


def run_pytest(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess with the installed plugin, as a user would run it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(cwd), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )
