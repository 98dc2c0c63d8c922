"""Certificate expiry watch: warn, then fail, as a target's certificate nears its end.

One shared place for both certificate-lint checks (``certificate-lint`` for FTPS,
``smtp-certificate-lint`` for mail): :func:`apply` runs on their result in
:func:`harness.checks.run_check`, reads the days left from the certificate the check
already recorded, and turns a pass into a warning within ``cert_expiry_warn_days`` (default
30) and a pass or warning into a failure within ``cert_expiry_fail_days`` (default 7). An
expired certificate is already a lint error, so it is only recorded here. The thresholds
come from the target (an inventory's defaults or the target itself).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from harness.results import CheckResult, Status

EXPIRY_CHECKS = ("certificate-lint", "smtp-certificate-lint")
DEFAULT_WARN_DAYS = 30
DEFAULT_FAIL_DAYS = 7
RENEW = ("Renew the certificate and install it before it expires (IIS: FTP SSL Settings > "
         "SSL Certificate; vsftpd rsa_cert_file; Postfix smtpd_tls_chain_files); automate "
         "renewal (ACME) so this never depends on a person.")


def days_left(evidence: Mapping[str, Any], now: dt.datetime | None = None) -> int | None:
    """Whole days to the recorded certificate's ``not_after`` (negative once expired):
    ``days_left`` when the check computed it, else from ``not_after`` (the SMTP checks)."""
    cert = evidence.get("certificate")
    cert = cert if isinstance(cert, Mapping) else {}
    for value in (cert.get("days_left"), evidence.get("days_left")):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    not_after = cert.get("not_after")
    if not isinstance(not_after, str):
        return None
    try:
        end = dt.datetime.fromisoformat(not_after)
    except ValueError:
        return None
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.timezone.utc)
    return (end - (now or dt.datetime.now(dt.timezone.utc))).days


def judge(days: int, warn_days: int, fail_days: int) -> Status:
    """pass, warn (within ``warn_days``) or fail (within ``fail_days``, or expired)."""
    if days < fail_days:
        return Status.FAIL
    if days < warn_days:
        return Status.WARN
    return Status.PASS


def apply(result: CheckResult, target: Any, now: dt.datetime | None = None) -> CheckResult:
    """``result`` with the expiry verdict folded in and ``evidence.cert_expiry`` recorded."""
    if result.check not in EXPIRY_CHECKS or result.status in (Status.SKIP, Status.ERROR):
        return result
    days = days_left(result.evidence, now)
    if days is None:
        return result
    warn_days = int(getattr(target, "cert_expiry_warn_days", DEFAULT_WARN_DAYS))
    fail_days = int(getattr(target, "cert_expiry_fail_days", DEFAULT_FAIL_DAYS))
    verdict = judge(days, warn_days, fail_days)
    result.evidence["cert_expiry"] = {"days_left": days, "warn_days": warn_days,
                                      "fail_days": fail_days, "verdict": verdict.value}
    if days < 0 or verdict is Status.PASS:
        return result  # expired: the lint already failed it, with its own advice
    order = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}
    if order.get(result.status, 3) >= order[verdict]:
        return result
    setting = "cert_expiry_fail_days" if verdict is Status.FAIL else "cert_expiry_warn_days"
    limit = fail_days if verdict is Status.FAIL else warn_days
    message = f"certificate expires in {days} day(s), within {setting} ({limit})"
    result.status = verdict
    result.observed = f"{message}; {result.observed}" if result.observed else message
    result.summary = message
    result.advice = RENEW
    return result
