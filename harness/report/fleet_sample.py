"""A synthetic fleet run (N targets x C checks), for the fleet report tests and benches.

Deterministic (a seeded generator), with every status, certificates at every distance from
expiry and realistic evidence, so renderers, ``lab diff`` and ``lab report merge`` can be
measured at 500 targets without 500 servers.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from harness.report.model import ResultRecord, RunInfo, RunModel, ScenarioInfo, TargetInfo

SCENARIOS = ("iis-ftps", "ftps-data", "submission-587", "certificates")
GROUPS = ("iis", "vsftpd", "postfix", "exim")


def fleet_model(targets: int = 500, checks: int = 40, *, seed: int = 7,
                shard: tuple[int, int] | None = None, run_id: str = "fleet-1") -> RunModel:
    """``targets`` remote targets with ``checks`` checks each, spread over four scenarios;
    with ``shard`` only the targets of that shard (round-robin over sorted ids)."""
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    infos: list[TargetInfo] = []
    results: list[ResultRecord] = []
    ids = sorted(f"{'ftps' if i % 3 else 'submission'}://host-{i:04d}" for i in range(targets))
    for index, target_id in enumerate(ids):
        if shard and index % shard[1] + 1 != shard[0]:
            continue
        protocol, name = target_id.split("://")
        group = GROUPS[int(name[-4:]) % len(GROUPS)]
        infos.append(TargetInfo(id=target_id, name=name, protocol=protocol, kind="remote",
                                host=f"{name}.example.net",
                                port=21 if protocol == "ftps" else 587,
                                user="deploy", groups=[group], labels={"site": f"site {index}"}))
        days = rng.choice([-3, 2, 5, 12, 25, 40, 90, 200, 365])
        cert = {
            "subject": f"CN={name}.example.net", "issuer": "CN=Example CA,O=Example",
            "not_after": (start + timedelta(days=days)).isoformat(), "days_left": days,
            "sha256": ":".join(f"{rng.randrange(256):02X}" for _ in range(32)),
        }
        for number in range(checks):
            roll = rng.random()
            status = ("pass" if roll < 0.86 else "warn" if roll < 0.92 else
                      "fail" if roll < 0.96 else "skip" if roll < 0.985 else "error")
            scenario = SCENARIOS[number * len(SCENARIOS) // checks]
            check = f"check-{number:02d}"
            evidence: dict[str, object] = {"tls_version": "TLSv1.3",
                                           "cipher": "TLS_AES_256_GCM_SHA384"}
            if number == 0:
                check, evidence["certificate"] = "certificate-lint", cert
                status = "fail" if days < 7 else "warn" if days < 30 else "pass"
            outcome = ("failed" if status in ("fail", "error") else
                       "skipped" if status == "skip" else "passed")
            results.append(ResultRecord(
                nodeid=f"scenarios/{scenario}.yaml::{check}[{target_id}]", scenario=scenario,
                scenario_file=f"scenarios/{scenario}.yaml", line=number + 1, check=check,
                check_id=check, target=target_id, protocol=protocol, status=status,
                expect="pass", outcome=outcome,
                message="" if outcome == "passed" else f"check ended {status}, expected pass",
                summary=f"{check} {status} on {name}", expected="the server behaves",
                observed=f"{status}", replies=["220 ready"], evidence=evidence,
                advice="Fix the server configuration." if status != "pass" else "",
                transcript=["  0.001 > AUTH TLS", "  0.002 < 234 go ahead"],
                duration=0.01, tls_version="TLSv1.3", order=number + 1,
                skip_kind="could-not-run" if status == "skip" else None))
    info = RunInfo(started=start.isoformat(), finished=(start + timedelta(seconds=60)).isoformat(),
                   duration=60.0, ftps_lab_version="0.1.0", python="CPython 3.11.7",
                   platform="Linux-test", pytest_version="8.0.0", exit_status=1, run_id=run_id,
                   plan="fleetplan",
                   shard={"index": shard[0], "total": shard[1]} if shard else None)
    scenarios = [ScenarioInfo(s, f"scenarios/{s}.yaml", f"the {s} checks") for s in SCENARIOS]
    results.sort(key=lambda r: (r.scenario_file, r.scenario, r.order, r.check_id, r.target))
    return RunModel(run=info, targets=infos, scenarios=scenarios, results=results)
