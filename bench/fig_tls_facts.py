"""Figure: the TLS facts of one target, from our checks and from sslyze.

Target: one embedded FTPS server (explicit, AUTH TLS), the lab certificate. Ours:
``certificate-trust``, ``certificate-lint`` and ``legacy-tls-refused`` through
``harness.checks.run_check``, each asserted to pass. Peer: sslyze (optional, installed
only in the bench environment: it is AGPL and never a dependency of the package) over
FTP STARTTLS, with CERTIFICATE_INFO against the lab CA and the TLS 1.0 and 1.1 cipher
suite scans, asserted to find the chain trusted and no legacy suite accepted. Both run in
this process; imports happen before the timing.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from common import (
    LOOPBACK,
    SERVER_NAME,
    BenchError,
    Context,
    Row,
    failure,
    interleave,
    random_password,
)

FIGURE = "tls-facts"
TITLE = "TLS facts for one target: certificate trust + lint, legacy TLS refused"
CHECKS = ("certificate-trust", "certificate-lint", "legacy-tls-refused")
USER = "bench"


def _sslyze(port: int, ca_file: Any) -> None:
    import sslyze
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument

    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation(
            hostname=SERVER_NAME, port=port, ip_address=LOOPBACK
        ),
        network_configuration=sslyze.ServerNetworkConfiguration(
            tls_server_name_indication=SERVER_NAME,
            tls_opportunistic_encryption=sslyze.ProtocolWithOpportunisticTlsEnum.FTP,
            network_timeout=5,
        ),
        scan_commands={
            sslyze.ScanCommand.CERTIFICATE_INFO,
            sslyze.ScanCommand.TLS_1_0_CIPHER_SUITES,
            sslyze.ScanCommand.TLS_1_1_CIPHER_SUITES,
        },
        scan_commands_extra_arguments=sslyze.ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)
        ),
    )
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    for result in scanner.get_results():
        if result.scan_status != sslyze.ServerScanStatusEnum.COMPLETED or not result.scan_result:
            raise BenchError(f"sslyze could not scan: {result.connectivity_error_trace}")
        scan = result.scan_result
        info = scan.certificate_info.result
        if info is None:
            raise BenchError(f"sslyze certificate_info: {scan.certificate_info.error_trace}")
        paths = info.certificate_deployments[0].path_validation_results
        if not any(p.was_validation_successful and p.trust_store.name == "Supplied CA file"
                   for p in paths):  # fmt: skip
            raise BenchError("sslyze did not validate the chain against the lab CA")
        for attempt in (scan.tls_1_0_cipher_suites, scan.tls_1_1_cipher_suites):
            if attempt.result is None:
                raise BenchError(f"sslyze legacy scan failed: {attempt.error_trace}")
            if attempt.result.accepted_cipher_suites:
                raise BenchError("sslyze found legacy suites accepted (the lab refuses them)")


def run(ctx: Context) -> list[Row]:
    row = Row(FIGURE, TITLE, "harness.checks (3 checks)",
              "sslyze (CERTIFICATE_INFO, TLS 1.0/1.1 suites)", "ms", "lower")  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sslyze's import-time deprecation noise
            import sslyze  # noqa: F401
    except ImportError:
        row.skip = "sslyze is not installed (bench env only: pip install sslyze)"
        return [row]
    from harness.checks import load_all, run_check
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
    from harness.protocols.tls import Trust
    from harness.results import Status
    from harness.targets import Target

    load_all()
    pki = ctx.pki()
    files = pki.files("lab")
    password = random_password()
    config = FTPSServerConfig(certfile=files.cert, keyfile=files.key, users=[(USER, password)])
    try:
        with FTPSLabServer(config) as server:
            target = Target(name="bench", protocol="ftps", host=LOOPBACK, port=server.port,
                            trust=Trust(ca_file=pki.ca_file), server_name=SERVER_NAME,
                            user=USER, password=password, timeout=5.0)  # fmt: skip

            def ours() -> float:
                begin = time.perf_counter()
                results = [run_check(name, target) for name in CHECKS]
                elapsed = time.perf_counter() - begin
                bad = [r.describe() for r in results if r.status is not Status.PASS]
                if bad:
                    raise BenchError("; ".join(bad))
                return elapsed * 1000.0

            def peer() -> float:
                begin = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # cryptography warns about store entries
                    _sslyze(server.port, pki.ca_file)
                return (time.perf_counter() - begin) * 1000.0

            samples = interleave({"ours": ours, "peer": peer}, ctx.repeat, ctx.warmup)
            row.ours, row.peer = samples["ours"], samples["peer"]
            row.notes.append(
                "sslyze also validates against five bundled trust stores; ours also lints "
                "the certificate (key size, signature hash, validity, names, key usage)"
            )
    except Exception as exc:
        failure(row, exc)
    return [row]
