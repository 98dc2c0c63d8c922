"""The FTPS checks end to end: each one against a lab server that passes it and one
configured (or patched) to fail it. Everything listens on 127.0.0.1; a masqueraded
10.99.99.99 is announced but never connected to."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.filesystems import AbstractedFS

from harness.certs import LabPKI, lab_pki
from harness.checks import REGISTRY, load_all, run_check
from harness.checks import ftps as ftps_checks
from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.lab.ftps_handlers import REUSE_REQUIRED_REPLY, LabTLSHandler
from harness.lab.pool import free_port_range
from harness.protocols.tls import Trust
from harness.results import CheckResult, SkipKind, Status
from harness.targets import Target

USER = "lab"
PASSWORD = "Chk-secret-9021"
EXPLICIT_ONLY = {"feat-auth-tls", "pbsz-before-auth-refused", "plaintext-login-refused"}
FTPS_CHECKS = {
    "banner", "feat-auth-tls", "auth-tls", "certificate-trust", "certificate-lint",
    "legacy-tls-refused", "pbsz-before-auth-refused", "pbsz-prot-p", "login",
    "plaintext-login-refused", "prot-c-refused", "pasv-address", "epsv", "data-session-reuse",
    "transfers", "quit",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def lab(pki: LabPKI) -> Callable[..., Any]:
    """``with lab(certificate=..., target={...}, **server_config) as (server, target)``."""

    @contextmanager
    def make(
        certificate: str = "lab",
        target: dict[str, Any] | None = None,
        server_class: type[FTPSLabServer] = FTPSLabServer,
        **config: Any,
    ) -> Iterator[tuple[FTPSLabServer, Target]]:
        files = pki.files(certificate)
        config.setdefault("certfile", files.cert)
        config.setdefault("keyfile", files.key)
        config.setdefault("users", [(USER, PASSWORD)])
        with server_class(FTPSServerConfig(**config)) as server:
            fields: dict[str, Any] = {
                "name": "lab",
                "protocol": "ftps-implicit" if server.config.implicit else "ftps",
                "host": server.host,
                "port": server.port,
                "trust": Trust(ca_file=pki.ca_file),
                "server_name": "localhost",
                "user": USER,
                "password": PASSWORD,
                "timeout": 3.0,
                "policy": server.config.policy,
            }
            fields.update(target or {})
            yield server, Target(**fields)

    return make


def run(name: str, target: Target, **params: Any) -> CheckResult:
    result = run_check(name, target, params)
    assert result.check == name
    dumped = json.dumps(result.to_dict(), default=str)
    assert PASSWORD not in dumped, f"{name} leaked the password"
    # Every check that talked to the server shows how the conversation went.
    assert result.transcript or result.status is Status.SKIP or result.summary.startswith("param")
    return result


def test_every_ftps_check_is_registered() -> None:
    load_all()
    names = {name for name, spec in REGISTRY.items() if "ftps" in spec.protocols}
    names.discard("wait-listening")  # protocol-neutral, tests/checks/test_wait.py
    assert names == FTPS_CHECKS
    for name in FTPS_CHECKS:
        assert REGISTRY[name].protocols == ("ftps", "ftps-implicit")
        assert REGISTRY[name].description


# --- servers that pass everything ---------------------------------------------------------


def test_a_compliant_explicit_server_passes_every_check(lab: Any) -> None:
    ports = free_port_range(4, ("127.0.0.1",))
    with lab(require_session_reuse=True, passive_ports=ports,
             target={"passive_ports": ports, "session_reuse_required": True}) as (_, target):
        results = {name: run(name, target) for name in sorted(FTPS_CHECKS)}
    failed = [r.describe() for r in results.values() if r.status is not Status.PASS]
    assert not failed, "\n".join(failed)
    tls = results["auth-tls"].evidence
    assert tls["tls_version"] == "TLSv1.3" and tls["cipher"]
    cert = tls["certificate"]
    assert cert["subject"] == "CN=localhost" and "localhost" in cert["dns_names"]
    assert cert["issuer"] and cert["not_after"] and len(cert["sha256"]) == 95
    assert results["certificate-trust"].evidence["verified"] is True
    reuse = results["data-session-reuse"].evidence
    assert reuse["server_requires_session_reuse"] == "yes"
    assert all(c["session_reused"] for c in reuse["data_connections"])
    transfers = results["transfers"].evidence
    assert transfers["data_connections"] == transfers["data_sessions_reused"] == 13
    assert all(f["sent_sha256"] == f["received_sha256"] for f in transfers["files"])
    assert transfers["control_tls_shutdown"] == "clean"
    assert ports[0] <= results["pasv-address"].evidence["announced_port"] <= ports[1]
    assert ports[0] <= results["epsv"].evidence["port"] <= ports[1]
    assert results["plaintext-login-refused"].replies[0].startswith("550")


def test_a_compliant_implicit_server_passes_or_skips(lab: Any) -> None:
    with lab(implicit=True, require_session_reuse=True) as (_, target):
        results = {name: run(name, target) for name in sorted(FTPS_CHECKS)}
    for name, result in results.items():
        wanted = Status.SKIP if name in EXPLICIT_ONLY else Status.PASS
        assert result.status is wanted, result.describe()
    assert results["auth-tls"].evidence["mode"] == "implicit"
    assert "plaintext phase" in results["feat-auth-tls"].summary


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_transfers_over_a_forced_tls_version(lab: Any, tls: str) -> None:
    with lab() as (_, target):
        result = run("transfers", target, tls=tls, files=6, size=64 * 1024)
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["tls_version"] == f"TLSv{tls}"
    assert result.evidence["data_tls_versions"] == [f"TLSv{tls}"]


# --- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_policy", "target_policy", "status"),
    [
        ("require", "require", Status.PASS),
        ("allow", "allow", Status.PASS),
        ("allow", "require", Status.FAIL),
        ("require", "allow", Status.FAIL),
    ],
)
def test_policy_checks_both_ways(
    lab: Any, server_policy: str, target_policy: str, status: Status
) -> None:
    with lab(policy=server_policy, target={"policy": target_policy}) as (_, target):
        plaintext = run("plaintext-login-refused", target)
        prot_c = run("prot-c-refused", target)
    assert plaintext.status is status, plaintext.describe()
    assert prot_c.status is status, prot_c.describe()
    if status is Status.FAIL and target_policy == "require":
        assert "ACCEPTED (230)" in plaintext.summary
        assert "force_local_logins_ssl=YES" in plaintext.advice
        assert "bytes unprotected" in prot_c.summary
        assert "force_local_data_ssl=YES" in prot_c.advice
    assert plaintext.evidence["password_sent"] == "real"  # loopback target


def test_plaintext_password_is_a_decoy_unless_allowed(lab: Any) -> None:
    """This server ALLOWS plaintext login, and a refused decoy cannot tell: the check
    used to pass here ("refused at PASS"); it could not run, and says so."""
    with lab(policy="allow", target={"policy": "require"}) as (_, target):
        result = run("plaintext-login-refused", target, plaintext_password=False)
    assert (result.status, result.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert "decoy" in result.summary and "not proven" in result.summary
    assert result.evidence["password_sent"] == "decoy"  # the real password stayed home
    assert result.transcript  # it did connect and try USER/PASS


def test_policy_allow_with_a_decoy_could_not_run(lab: Any) -> None:
    """Policy allow, real password kept home: acceptance unproven, a could-not-run skip
    (it used to pass, saying acceptance was "not proven")."""
    with lab(policy="allow", target={"policy": "allow"}) as (_, target):
        result = run("plaintext-login-refused", target, plaintext_password=False)
    assert (result.status, result.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert "whether the real password logs in without TLS is not proven" in result.summary
    assert "plaintext_password: true" in result.advice


# --- session reuse ------------------------------------------------------------------------


def test_session_reuse_required_but_not_enforced(lab: Any) -> None:
    with lab(require_session_reuse=False,
             target={"session_reuse_required": True}) as (_, target):
        result = run("data-session-reuse", target)
    assert result.status is Status.FAIL, result.describe()
    assert result.evidence["server_requires_session_reuse"] == "no"
    assert "require_ssl_reuse=YES" in result.advice


def test_session_reuse_not_supported(lab: Any) -> None:
    """No resumption at all (Pure-FTPd 1.0.50 behaves so): every transfer works, so a
    warning unless the target must require reuse, which such a server cannot enforce."""
    with lab(session_resumption=False, require_session_reuse=False) as (_, target):
        result = run("data-session-reuse", target)
        required = run("data-session-reuse", target, session_reuse_required=True)
    assert result.status is Status.WARN and "did not resume" in result.summary
    assert required.status is Status.FAIL and "did not resume" in required.summary


def test_session_reuse_refusal_is_recorded_exactly(lab: Any) -> None:
    """The 522 itself is checked and kept: code, text, where it came, and that no byte of
    the listing came before it. ``params`` can demand reuse when the target does not."""
    with lab(require_session_reuse=True) as (server, target):
        (server.home(USER) / "listed.txt").write_text("not for a hijacker\n")
        assert target.session_reuse_required is None
        result = run("data-session-reuse", target, session_reuse_required=True)
    assert result.status is Status.PASS, result.describe()
    evidence = result.evidence
    assert evidence["session_reuse_required_by_target"] is True
    assert evidence["without_reuse_refusal"] == {
        "code": 522, "text": "SSL connection failed; session reuse required",
        "reply": REUSE_REQUIRED_REPLY, "stage": "final"}
    assert evidence["without_reuse_bytes_before_refusal"] == 0
    assert evidence["without_reuse"]["replies"][-1] == REUSE_REQUIRED_REPLY


class _RefusesWith550(LabTLSHandler):
    """A server that refuses a data connection without reuse, but with a reply that does
    not say so (some servers answer 550 or 451 for any data-channel problem)."""

    def data_session_refusal(self, conn: Any) -> str | None:
        refusal = super().data_session_refusal(conn)
        return "550 Permission denied." if refusal is not None else None


class _Refusing550Server(FTPSLabServer):
    tls_control_handler = _RefusesWith550


def test_session_reuse_required_but_refused_with_another_code_is_an_error(lab: Any) -> None:
    with lab(server_class=_Refusing550Server, require_session_reuse=True,
             target={"session_reuse_required": True}) as (_, target):
        result = run("data-session-reuse", target)
        assert run("data-session-reuse", target, session_reuse_required=False).status \
            is Status.PASS
    assert result.status is Status.ERROR, result.describe()
    assert "cannot tell whether the server requires session reuse" in result.summary
    assert "'550 Permission denied.'" in result.summary
    assert result.evidence["server_requires_session_reuse"] == "unknown"
    assert result.evidence["without_reuse_refusal"]["code"] == 550


def test_session_reuse_param_must_be_a_boolean(lab: Any) -> None:
    with lab() as (_, target):
        result = run("data-session-reuse", target, session_reuse_required="yes")
    assert result.status is Status.ERROR
    assert "session_reuse_required must be true or false" in result.summary


# --- passive mode -------------------------------------------------------------------------


def test_pasv_private_address_behind_nat(lab: Any) -> None:
    with lab(masquerade_address="10.99.99.99") as (_, target):
        result = run("pasv-address", target)
        epsv = run("epsv", target)
    assert result.status is Status.FAIL
    assert "server behind NAT hands out its private address 10.99.99.99" in result.summary
    assert "pasv_address=" in result.advice and "MasqueradeAddress" in result.advice
    evidence = result.evidence
    assert evidence["announced_address"] == "10.99.99.99"
    assert evidence["connected_to"] == "127.0.0.1"  # never the announced address
    assert evidence["transfer"]["error"] is None  # the port itself works on the target host
    assert not any("10.99.99.99:" in line and "data connection to" in line
                   for line in result.transcript)
    assert epsv.status is Status.PASS  # EPSV carries no address to get wrong


def test_pasv_masquerade_matching_the_target_address_passes(lab: Any) -> None:
    with lab(masquerade_address="10.99.99.99",
             target={"passive_address": "10.99.99.99"}) as (_, target):
        result = run("pasv-address", target)
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["connected_to"] == "127.0.0.1"


def test_passive_port_outside_the_expected_range(lab: Any) -> None:
    ports = free_port_range(4, ("127.0.0.1",))
    elsewhere = (ports[1] + 1000, ports[1] + 1010)
    with lab(passive_ports=ports, target={"passive_ports": elsewhere}) as (_, target):
        pasv = run("pasv-address", target)
        epsv = run("epsv", target)
    for result in (pasv, epsv):
        assert result.status is Status.FAIL and "outside the passive range" in result.summary
        assert "pasv_min_port" in result.advice


# --- TLS versions and certificates --------------------------------------------------------


def test_legacy_tls_accepting_server_fails(lab: Any) -> None:
    with lab(legacy_tls_version="1.0") as (_, target):
        result = run("legacy-tls-refused", target)
        only_11 = run("legacy-tls-refused", target, versions=["1.1"])
    assert result.status is Status.FAIL, result.describe()
    assert result.evidence["TLS 1.0"]["negotiated"] == "TLSv1"
    assert "SCHANNEL" in result.advice
    assert only_11.status is Status.FAIL and list(only_11.evidence).count("TLS 1.1") == 1


def test_legacy_tls_check_skips_when_this_client_cannot_offer(
    lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def modern_only(version: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # default security level
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
        return context

    monkeypatch.setattr(ftps_checks, "legacy_client_context", modern_only)
    with lab(legacy_tls_version="1.0") as (_, target):
        result = run("legacy-tls-refused", target)
    # The server WOULD accept TLS 1.0; a client that cannot offer it must not say "refused".
    assert result.status is Status.SKIP, result.describe()
    assert "cannot offer" in result.summary
    assert {o["outcome"] for o in result.evidence.values() if isinstance(o, dict)} == {
        "untestable"}


def test_forced_tls_version_the_server_cannot_do(lab: Any) -> None:
    with lab(max_tls="1.2") as (_, target):
        result = run("transfers", target, tls="1.3", files=1)
    assert result.status is Status.FAIL
    assert "server cannot negotiate TLS 1.3" in result.summary


@pytest.mark.parametrize(
    ("certificate", "trust_text", "lint_status"),
    [
        ("expired", "certificate expired", Status.FAIL),
        ("not-yet-valid", "certificate not yet valid", Status.FAIL),
        ("wrong-host", "wrong host name", Status.FAIL),
        ("unknown-ca", "unknown CA", Status.PASS),
    ],
)
def test_certificate_faults(
    lab: Any, certificate: str, trust_text: str, lint_status: Status
) -> None:
    with lab(certificate=certificate) as (_, target):
        trust = run("certificate-trust", target)
        lint = run("certificate-lint", target)
        login = run("login", target)
    assert trust.status is Status.FAIL and trust_text in trust.summary, trust.describe()
    assert trust.evidence["certificate"]["sha256"]
    assert lint.status is lint_status, lint.describe()
    # No password goes to a server whose certificate is not trusted.
    assert login.status is Status.ERROR and "certificate verification failed" in login.summary
    assert "certificate-trust" in login.advice
    assert not any(line.endswith("> PASS ********") for line in login.transcript)


def test_pinned_self_signed_certificate(lab: Any, pki: LabPKI) -> None:
    pin = Trust(pin_sha256=pki.iis_fingerprint)
    with lab(certificate="iis", target={"trust": pin}) as (_, target):
        trust = run("certificate-trust", target)
        lint = run("certificate-lint", target)
        login = run("login", target)
    assert trust.status is Status.PASS and trust.evidence["trust"] == "pin"
    assert lint.status is Status.PASS and lint.evidence["self_signed"] is True
    assert login.status is Status.PASS
    wrong = Trust(pin_sha256=pki.server_fingerprint)
    with lab(certificate="iis", target={"trust": wrong}) as (_, target):
        trust = run("certificate-trust", target)
        login = run("login", target)
    assert trust.status is Status.FAIL and "pin mismatch" in trust.summary
    assert login.status is Status.ERROR and "pin" in login.summary


def test_insecure_trust_could_not_run(lab: Any) -> None:
    """An expired certificate under trust insecure: nothing is verified, so no pass (it
    used to pass); a could-not-run skip, as smtp-certificate-trust does."""
    with lab(certificate="expired", target={"trust": Trust(insecure=True)}) as (_, target):
        result = run("certificate-trust", target)
    assert (result.status, result.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert "nothing is verified under insecure trust" in result.summary
    assert result.evidence["verified"] is False


# --- broken servers -----------------------------------------------------------------------


class _FlipFirstByte:
    """A file whose first byte reads back changed: a server that corrupts downloads."""

    def __init__(self, fd: Any) -> None:
        self._fd = fd
        self._flipped = False

    def read(self, size: int = -1) -> bytes:
        data = self._fd.read(size)
        if data and not self._flipped:
            self._flipped = True
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fd, name)


class CorruptingFS(AbstractedFS):  # type: ignore[misc]
    def open(self, filename: str, mode: str) -> Any:
        fd = super().open(filename, mode)
        return _FlipFirstByte(fd) if "r" in mode else fd


class CorruptingServer(FTPSLabServer):
    def handler_attributes(self) -> dict[str, Any]:
        return {**super().handler_attributes(), "abstracted_fs": CorruptingFS}


class SloppyHandler(LabTLSHandler):
    """Accepts PBSZ on a plaintext connection and refuses PROT P."""

    def ftp_PBSZ(self, line: str) -> None:
        self.respond("200 PBSZ=0 successful.")
        self._pbsz = True

    def ftp_PROT(self, line: str) -> None:
        self.respond("536 Requested PROT level not supported by mechanism.")


class SloppyServer(FTPSLabServer):
    tls_control_handler = SloppyHandler


def test_corrupted_download_names_the_file_and_both_hashes(lab: Any) -> None:
    with lab(server_class=CorruptingServer) as (_, target):
        result = run("transfers", target, files=2, size=1000)
    assert result.status is Status.FAIL
    name = result.evidence["files"][0]["name"]
    sent = result.evidence["files"][0]["sent_sha256"]
    received = result.evidence["files"][0]["received_sha256"]
    assert sent != received
    assert f"{name} differs" in result.summary
    assert sent in result.summary and received in result.summary


def test_sloppy_pbsz_and_prot(lab: Any) -> None:
    with lab(server_class=SloppyServer) as (_, target):
        before = run("pbsz-before-auth-refused", target)
        prot = run("pbsz-prot-p", target)
    assert before.status is Status.FAIL and "plaintext" in before.summary
    assert prot.status is Status.FAIL and "PROT P answered 536" in prot.summary


def test_plain_ftp_server_has_no_tls(lab: Any) -> None:
    with lab(tls=False) as (_, target):
        feat = run("feat-auth-tls", target)
        auth = run("auth-tls", target)
        pbsz = run("pbsz-before-auth-refused", target)
    # FEAT without AUTH TLS, and AUTH TLS tried anyway is refused: no FTPS at all.
    assert feat.status is Status.FAIL and "does not list AUTH TLS" in feat.summary
    assert "AUTH TLS: " in feat.observed
    assert auth.status is Status.FAIL and "not 234" in auth.summary
    assert pbsz.status is Status.PASS and "PBSZ before AUTH refused" in pbsz.summary


def test_feat_without_auth_tls_warns_when_auth_tls_works(lab: Any) -> None:
    """vsftpd 3.0.x with ssl_tlsv1=NO: FEAT without AUTH TLS, AUTH TLS answered 234 all
    the same. Clients are served, nothing is weaker: a warning (it was a fail)."""
    with lab(feat_lists_auth_tls=False) as (_, target):
        result = run("feat-auth-tls", target)
    assert result.status is Status.WARN, result.describe()
    assert result.summary.startswith("FEAT does not list AUTH TLS, but AUTH TLS works (234, TLSv1.")
    assert result.evidence["auth_tls_anyway"]["reply"].startswith("234")
    assert any("> AUTH TLS" in line for line in result.transcript)
    assert "vsftpd 3.0.x lists it only with ssl_tlsv1=YES" in result.advice  # generic


def test_login_failures_and_missing_credentials(lab: Any) -> None:
    with lab(target={"password": "Wrong-" + PASSWORD}) as (_, target):
        wrong = run("login", target)
    assert wrong.status is Status.FAIL and "530" in wrong.summary
    assert "Wrong-" + PASSWORD not in json.dumps(wrong.to_dict(), default=str)
    with lab(target={"user": None, "password": None}) as (_, target):
        for name in ("login", "transfers", "pasv-address", "data-session-reuse"):
            assert run(name, target).status is Status.SKIP
        assert run("pbsz-prot-p", target).status is Status.PASS  # works before login too


def test_no_banner_and_no_server(lab: Any) -> None:
    # An explicit-FTPS client at an implicit server: both wait for the other.
    with lab(implicit=True, target={"protocol": "ftps", "timeout": 0.5}) as (_, target):
        silent = run("banner", target)
    assert silent.status is Status.FAIL and silent.summary == "no banner within 0.5 s"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        port = holder.getsockname()[1]
        target = Target(name="gone", protocol="ftps", host="127.0.0.1", port=port, timeout=1.0)
        refused = run("banner", target)
    assert refused.status is Status.ERROR and "connection refused" in refused.summary
    assert "firewall" in refused.advice


def test_implicit_client_at_an_explicit_server_fails_the_handshake(lab: Any) -> None:
    with lab(target={"protocol": "ftps-implicit", "timeout": 1.0}) as (_, target):
        result = run("auth-tls", target)
    assert result.status is Status.FAIL and "TLS handshake failed" in result.summary


def test_checks_run_in_parallel_against_one_server(lab: Any) -> None:
    """Unique file names per run: two transfers checks on one account do not collide."""
    results: list[CheckResult] = []
    with lab() as (_, target):
        threads = [threading.Thread(target=lambda: results.append(
            run("transfers", target, files=3, size=32 * 1024))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert [r.status for r in results] == [Status.PASS, Status.PASS], [
        r.describe() for r in results]


def test_home_is_left_clean(lab: Any) -> None:
    with lab() as (server, target):
        assert run("transfers", target, files=2, size=1000).status is Status.PASS
        assert run("data-session-reuse", target).status is Status.PASS
        assert list(Path(server.home(USER)).iterdir()) == []


def test_bad_params_are_errors_not_verdicts(lab: Any) -> None:
    with lab() as (_, target):
        for name, params in (("legacy-tls-refused", {"versions": ["1.2"]}),
                             ("transfers", {"tls": "1.1"}),
                             ("transfers", {"mode": "PORT"})):
            result = run(name, target, **params)
            assert result.status is Status.ERROR and "param" in result.summary, result.summary
        epsv = run("transfers", target, mode="epsv", files=1, size=1000)
    assert epsv.status is Status.PASS, epsv.describe()


def test_certificate_trust_records_the_negotiated_tls_version(lab: Any) -> None:
    with lab() as (_server, target):
        result = run_check("certificate-trust", target, {})
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert result.evidence["cipher"]
