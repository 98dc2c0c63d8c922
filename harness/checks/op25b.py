"""OP25B diagnosis: from what the mail ports look like, say what blocks mail and what to use.

Many access networks block outbound port 25 ("Outbound Port 25 Blocking") so that
infected machines cannot send spam directly; mail clients must then submit on 587
(STARTTLS + AUTH) or 465 (implicit TLS + AUTH). :func:`diagnose` is pure: probe results
(:mod:`harness.probe`) and optional facts from the submission checks go in, a
:class:`Verdict` with a plain-words fix comes out, so every row of the decision table is
unit-tested without sockets. Only :func:`op25b_diagnose`, the registered check at the
end, touches the network, through the probe and the SMTP checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.checks import check, identify
from harness.probe import (
    DEFAULT_ROLES,
    DEFAULT_TIMEOUT,
    MAIL_ROLES,
    PortResult,
    PortSpec,
    PortState,
    probe,
)
from harness.results import CheckResult, Status
from harness.targets import SMTP_PROTOCOLS, Target

CHECK = "op25b-diagnose"

# Verdict codes (stable: scenario files name them in ``expect_verdict``).
PORT25_OPEN = "port25-open"
PORT25_FILTERED = "port25-filtered"
PORT25_REFUSED = "port25-refused"
PORT25_UNREACHABLE = "port25-unreachable"
PORT25_SILENT = "port25-silent"
SUBMISSION_OK = "submission-ok"
USE_465 = "use-465"
TLS_MISSING = "tls-missing"
AUTH_MISSING = "auth-missing"
SUBMISSION_SILENT = "submission-silent"
SUBMISSION_MISSING = "submission-missing"
ALL_BLOCKED = "all-blocked"
INTERCEPTED = "intercepted"
PROBE_ERROR = "probe-error"
VERDICT_CODES = (
    PORT25_OPEN, PORT25_FILTERED, PORT25_REFUSED, PORT25_UNREACHABLE, PORT25_SILENT,
    SUBMISSION_OK, USE_465, TLS_MISSING, AUTH_MISSING, SUBMISSION_SILENT, SUBMISSION_MISSING,
    ALL_BLOCKED, INTERCEPTED, PROBE_ERROR,
)
DEFAULT_PORTS = {role: port for port, role in DEFAULT_ROLES.items()}

_PHRASES = {
    PortState.OPEN: "open",
    PortState.OPEN_SILENT: "open but silent",
    PortState.INTERCEPTED: "answered by something other than the server",
    PortState.TLS_ERROR: "open, but the TLS handshake fails",
    PortState.CLOSED: "refused",
    PortState.FILTERED: "filtered (no answer)",
    PortState.UNREACHABLE: "unreachable (ICMP error / administratively prohibited)",
    PortState.ERROR: "not probed (error)",
}
# Port 25's state when 587 works: verdict code, title, and how the fix names the block.
_PORT25 = {
    PortState.OPEN: (PORT25_OPEN, "Port 25 is not blocked; submission on 587 works", ""),
    PortState.FILTERED: (PORT25_FILTERED, "Port 25 is filtered (OP25B); use 587", "filtered"),
    PortState.CLOSED: (PORT25_REFUSED, "Port 25 is refused; use 587", "refused"),
    PortState.UNREACHABLE: (PORT25_UNREACHABLE, "Port 25 is administratively prohibited; use "
                            "587", "administratively prohibited"),
    PortState.OPEN_SILENT: (PORT25_SILENT, "Port 25 is held silent; use 587", "silent"),
}
_USE_587 = "set the client's outgoing server to port 587 with STARTTLS and SMTP authentication"
_USE_465 = (
    "set the client's outgoing server to port 465 with SSL/TLS (implicit TLS) and SMTP "
    "authentication"
)


@dataclass(frozen=True)
class SubmissionFacts:
    """What the submission checks saw; ``None`` means not checked (or no verdict)."""

    starttls: bool | None = None  # 587 advertises STARTTLS and the handshake works
    auth_after_tls: bool | None = None  # 587 offers AUTH PLAIN/LOGIN inside TLS
    implicit_tls: bool | None = None  # 465: TLS handshake, then 220 inside TLS
    auth_implicit: bool | None = None  # 465 offers AUTH PLAIN/LOGIN

    @classmethod
    def of(cls, value: SubmissionFacts | Mapping[str, Any] | None) -> SubmissionFacts:
        if value is None:
            return cls()
        if isinstance(value, SubmissionFacts):
            return value
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"unknown submission fact(s): {', '.join(unknown)}")
        return cls(**{key: None if v is None else bool(v) for key, v in value.items()})

    def to_dict(self) -> dict[str, bool | None]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The diagnosis: a stable code, a title, what was seen and what to do about it.

    ``ok`` says whether a mail client on this network can submit mail securely.
    """

    code: str
    title: str
    explanation: str
    fix: str
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- pure diagnosis ------------------------------------------------------------------


def role_of(result: PortResult) -> str:
    """The mail role of a probed port: its recorded role, else the well-known number."""
    if result.role in MAIL_ROLES:
        return result.role
    return DEFAULT_ROLES.get(result.port, "tcp")


def _seen(results: list[PortResult]) -> str:
    parts = []
    for result in results:
        text = f"port {result.port} {_PHRASES[result.state]}"
        if result.banner and result.state in (PortState.OPEN, PortState.INTERCEPTED):
            text += f" ({result.banner[:80]})"
        parts.append(text)
    return "From this network: " + ", ".join(parts) + "."


def _port25_meaning(state: PortState) -> str:
    return {
        PortState.FILTERED: (
            "Connections to port 25 get no answer: a filter on the way drops them, the "
            "usual form of outbound port 25 blocking (OP25B)."
        ),
        PortState.CLOSED: (
            "Port 25 answers with a reset. That is either a firewall rejecting with "
            "tcp-reset (some providers block 25 that way) or no MTA listening on 25; "
            "from outside the two look the same."
        ),
        PortState.UNREACHABLE: (
            "Port 25 is refused with an ICMP error (administratively prohibited): a "
            "firewall on the way says explicitly that this traffic is not allowed."
        ),
        PortState.OPEN_SILENT: (
            "Port 25 accepts the connection but never greets: a proxy or tarpit on the "
            "way holds it, which is another form of port 25 blocking."
        ),
        PortState.OPEN: "Port 25 reaches the server: nothing blocks it from this network.",
    }.get(state, "")


def diagnose(
    port_results: Iterable[PortResult],
    submission: SubmissionFacts | Mapping[str, Any] | None = None,
) -> Verdict:
    """Decide what blocks mail submission from the probed network and what to use instead.

    ``port_results`` are one host's probes (any of the roles smtp/25, submission/587,
    submissions/465); ``submission`` adds what the session checks saw on 587/465.
    """
    results = list(port_results)
    facts = SubmissionFacts.of(submission)
    seen = _seen(results) if results else "Nothing was probed."
    if not results or all(r.state is PortState.ERROR for r in results):
        detail = results[0].detail if results else "no ports given"
        return Verdict(PROBE_ERROR, "The ports could not be probed", f"{seen} {detail}",
                       "Check the host name (DNS) and this machine's network connection.")
    roles: dict[str, PortResult] = {}
    for result in results:
        roles.setdefault(role_of(result), result)
    mta, sub, subs = roles.get("smtp"), roles.get("submission"), roles.get("submissions")

    use_587 = (sub is not None and sub.state is PortState.OPEN
               and facts.starttls is not False and facts.auth_after_tls is not False)
    use_465 = (subs is not None and subs.state is PortState.OPEN
               and facts.implicit_tls is not False and facts.auth_implicit is not False)
    path = _path_text(use_587, use_465, facts)

    intercepted = [r for r in results if r.state is PortState.INTERCEPTED]
    if intercepted:
        return _intercepted(intercepted, seen, path, ok=use_587 or use_465)
    if use_587 or use_465:
        return _working(mta, use_587, seen, path)
    return _broken(results, sub, subs, facts, seen)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _path_text(use_587: bool, use_465: bool, facts: SubmissionFacts) -> str:
    if use_587:
        checked = facts.starttls and facts.auth_after_tls
        proof = "with STARTTLS and AUTH" if checked else "(STARTTLS and AUTH not checked)"
        return f"587 open {proof}: {_USE_587}"
    if use_465:
        checked = facts.implicit_tls and facts.auth_implicit
        proof = "with TLS and AUTH" if checked else "(TLS and AUTH not checked)"
        return f"465 open {proof}: {_USE_465}"
    return ""


def _intercepted(found: list[PortResult], seen: str, path: str, *, ok: bool) -> Verdict:
    ports = ", ".join(str(r.port) for r in found)
    details = " ".join(f"Port {r.port}: {r.detail}." for r in found)
    fix = (
        "Turn off SMTP/mail scanning in the antivirus or security suite, or ask the "
        "provider whether it redirects mail ports to its own relay"
    )
    fix += f"; meanwhile {path}" if path else "; no clean submission port is left from here"
    return Verdict(
        INTERCEPTED,
        f"Something in the path answers in place of the server on port {ports}",
        f"{seen} {details} Transparent interception breaks STARTTLS and exposes "
        "credentials to the middlebox.",
        _sentence(fix),
        ok=ok,
    )


def _working(mta: PortResult | None, use_587: bool, seen: str, path: str) -> Verdict:
    if not use_587:
        state = mta.state.value if mta is not None else "not probed"
        return Verdict(
            USE_465,
            f"Submit on 465 (587 is not usable; port 25 {state})",
            f"{seen} {_port25_meaning(mta.state) if mta else ''}".strip(),
            _sentence(path),
            ok=True,
        )
    if mta is None or mta.state not in _PORT25:
        return Verdict(SUBMISSION_OK, "Submission on 587 works", seen,
                       _sentence(path), ok=True)
    code, title, blocked = _PORT25[mta.state]
    if blocked:
        fix = f"Port 25 {blocked} from this network, {path}."
    else:
        fix = _sentence(f"{path}; clients configured that way also work on networks that "
                        "block port 25")
    return Verdict(code, title, f"{seen} {_port25_meaning(mta.state)}".strip(), fix, ok=True)


def _broken(
    results: list[PortResult],
    sub: PortResult | None,
    subs: PortResult | None,
    facts: SubmissionFacts,
    seen: str,
) -> Verdict:
    if sub is not None and sub.state is PortState.OPEN:
        if facts.starttls is False:
            return Verdict(
                TLS_MISSING, "587 answers but offers no working STARTTLS",
                f"{seen} Without TLS a client must either refuse to log in or send the "
                "password in clear.",
                "Enable STARTTLS on 587, or offer 465 with implicit TLS. "
                + identify.generic("smtp-starttls"),
            )
        if facts.auth_after_tls is False:
            return Verdict(
                AUTH_MISSING, "587 offers TLS but no AUTH",
                f"{seen} Inside TLS the server lists no AUTH PLAIN/LOGIN, so clients "
                "cannot log in to submit.",
                identify.generic("smtp-auth-missing"),
            )
    if subs is not None and subs.state is PortState.OPEN and facts.auth_implicit is False:
        return Verdict(
            AUTH_MISSING, "465 offers TLS but no AUTH",
            f"{seen} Inside TLS the server lists no AUTH PLAIN/LOGIN.",
            "Enable SASL authentication on the submissions service (465).",
        )
    if subs is not None and (subs.state is PortState.TLS_ERROR
                             or (subs.state is PortState.OPEN and facts.implicit_tls is False)):
        return Verdict(
            TLS_MISSING, "465 answers but does not speak implicit TLS",
            f"{seen} {subs.detail}.",
            "Configure 465 for implicit TLS (RFC 8314: TLS from the first byte, then the "
            "220 greeting), or submit on 587 with STARTTLS.",
        )
    silent = [r for r in (sub, subs) if r is not None and r.state is PortState.OPEN_SILENT]
    if silent:
        ports = " and ".join(str(r.port) for r in silent)
        return Verdict(
            SUBMISSION_SILENT, f"Submission port {ports} accepts but never greets",
            f"{seen} A firewall or proxy on the way may hold the connection, or the server "
            "is overloaded.",
            "Try again from another network to tell which; check the server's load and any "
            "security appliance between client and server.",
        )
    if not any(r.state.answered for r in results):
        refused = all(r.state is PortState.CLOSED for r in results)
        fix = (
            "Every mail port answers with a reset: check that the address is the mail "
            "server's and that the MTA listens there."
            if refused else
            "Nothing answers on any mail port: the address is wrong, the host is down, or "
            "this network filters all mail ports. Try from another network (a mobile "
            "hotspot) to tell which; if only this network fails, use the provider's relay "
            "or a VPN."
        )
        return Verdict(ALL_BLOCKED, "No mail port is reachable", seen, fix)
    return Verdict(
        SUBMISSION_MISSING, "No submission port is reachable",
        f"{seen} Port 25 is for server-to-server mail; clients need 587 or 465, and "
        "networks with OP25B block 25 anyway.",
        "Enable submission on the server: 587 with STARTTLS and AUTH (and/or 465 with "
        "implicit TLS), and open it in the server's firewall.",
    )


# -- the registered check --------------------------------------------------------------


def diagnosis_ports(target: Target, params: Mapping[str, Any]) -> dict[str, int]:
    """Role -> port: 25/587/465, the target's own port for its role, the target's
    ``op25b_ports`` (an inventory's), then ``params.ports``.

    A role mapped to 0 or null is not probed (the lab's ports are ephemeral, so its
    scenarios pass the real numbers; a loopback rehearsal of an inventory names them).
    """
    ports: dict[str, int | None] = dict(DEFAULT_PORTS)
    if target.protocol in MAIL_ROLES:
        ports[target.protocol] = target.port
    for where, given in (("op25b_ports", target.op25b_ports),
                         ("params.ports", params.get("ports") or {})):
        if not isinstance(given, Mapping):
            raise ValueError(f"{where} must map smtp/submission/submissions to port numbers")
        for role, port in given.items():
            if role not in MAIL_ROLES:
                raise ValueError(f"unknown role {role!r} in {where}")
            ports[role] = int(port) if port else None
    return {role: port for role, port in ports.items() if port}


def facts_from_checks(
    starttls: CheckResult | None = None,
    auth_after_tls: CheckResult | None = None,
    implicit_tls: CheckResult | None = None,
    auth_implicit: CheckResult | None = None,
) -> SubmissionFacts:
    """Pass -> True, fail -> False, no verdict (error/skip/not run) -> None."""

    def fact(result: CheckResult | None) -> bool | None:
        if result is None or result.status not in (Status.PASS, Status.FAIL):
            return None
        return result.status is Status.PASS

    return SubmissionFacts(fact(starttls), fact(auth_after_tls), fact(implicit_tls),
                           fact(auth_implicit))


def gather_submission_facts(
    target: Target, results: Iterable[PortResult], timeout: float
) -> SubmissionFacts:
    """Run the STARTTLS and AUTH-after-TLS checks on whichever of 587/465 greeted."""
    from harness.checks import smtp as smtp_checks

    found: dict[str, CheckResult] = {}
    params = {"timeout": timeout}
    for result in results:
        role = role_of(result)
        if role not in ("submission", "submissions") or result.state is not PortState.OPEN:
            continue
        session = dataclasses.replace(target, protocol=role, host=result.host,
                                      port=result.port, timeout=timeout)
        found[f"{role}-tls"] = smtp_checks.smtp_starttls(session, params)
        found[f"{role}-auth"] = smtp_checks.ehlo_after_tls_lists_auth(session, params)
    return facts_from_checks(
        found.get("submission-tls"), found.get("submission-auth"),
        found.get("submissions-tls"), found.get("submissions-auth"),
    )


def _known_verdict(code: str) -> str:
    if code not in VERDICT_CODES:
        raise ValueError(f"unknown verdict {code!r}; use one of {', '.join(VERDICT_CODES)}")
    return code


def expected_verdicts(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``expect_verdict`` as a tuple of known codes: one code, a list, or nothing."""
    if value is None:
        return ()
    codes = (value,) if isinstance(value, str) else tuple(str(code) for code in value)
    return tuple(_known_verdict(code) for code in codes)


def judge_diagnosis(
    verdict: Verdict,
    results: list[PortResult],
    facts: SubmissionFacts,
    expect_verdict: str | Iterable[str] | None = None,
) -> CheckResult:
    """The verdict as a check result: pass on one of the expected codes, else (none
    expected) on ``verdict.ok``, a working submission path."""
    expected_codes = expected_verdicts(expect_verdict)
    if expected_codes:
        status = Status.PASS if verdict.code in expected_codes else Status.FAIL
        expected = "verdict " + " or ".join(expected_codes)
    elif verdict.code == PROBE_ERROR:
        status, expected = Status.ERROR, "a verdict"
    else:
        status = Status.PASS if verdict.ok else Status.FAIL
        expected = "a secure submission path (587 with STARTTLS and AUTH, or 465)"
    return CheckResult(
        check=CHECK,
        status=status,
        summary=f"{verdict.code}: {verdict.title}",
        expected=expected,
        observed=f"verdict {verdict.code}; " + "; ".join(
            f"{r.port} {r.state.value}" for r in results),
        replies=[f"{r.port}: {r.banner}" for r in results if r.banner],
        evidence={
            "verdict": verdict.to_dict(),
            "ports": [r.to_dict() for r in results],
            "submission": facts.to_dict(),
            "expected_verdicts": list(expected_codes),
        },
        advice=verdict.fix,
    )


@check(CHECK, SMTP_PROTOCOLS)
def op25b_diagnose(target: Target, params: dict[str, Any]) -> CheckResult:
    """Probe 25/587/465 and say whether port 25 is blocked and which port to submit on.

    ``params.expect_verdict`` (one code or a list), else the target's ``op25b_expect``
    (an inventory's), names the verdicts that pass; with neither, a working submission
    path passes.
    """
    ports = diagnosis_ports(target, params)
    expect_verdict = params.get("expect_verdict")
    if expect_verdict is None and target.op25b_expect:
        expect_verdict = list(target.op25b_expect)
    # a typo must not cost a probe timeout first
    expect_verdict = list(expected_verdicts(expect_verdict)) or None
    timeout = float(params.get("timeout", min(target.timeout, DEFAULT_TIMEOUT)))
    expect_host = params.get("expect_host")
    results = probe([target.host], [PortSpec(port, role) for role, port in ports.items()],
                    timeout, expect_host=expect_host)
    facts = (gather_submission_facts(target, results, timeout)
             if params.get("sessions", True) else SubmissionFacts())
    result = judge_diagnosis(diagnose(results, facts), results, facts, expect_verdict)
    # The fix in the greeting server's own settings (Postfix, Exim, sendmail, Exchange).
    identify.apply(result, (), [r.banner for r in results if r.banner])
    return result
