"""pytest glue: scenario files become test items, one per check and target.

Registered under the ``pytest11`` entry point, so plain ``pytest scenarios/`` works once
the package is installed. Every option exists as a ``--lab-*`` flag, a ``LAB_*``
environment variable and an ini key; the flag wins, then the variable, then the ini.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checks import load_all, run_check
from harness.inventory import load_inventory, target_from_url
from harness.probe import DEFAULT_TIMEOUT as PROBE_TIMEOUT
from harness.probe import PortState
from harness.reach import Reach, advice, diagnosis, tcp_reach
from harness.report.plugin import ReportPlugin, add_report_options, run_scrubber
from harness.report.skips import SkipSummary
from harness.results import CheckResult, SkipKind, Status
from harness.scenario import CheckEntry, LabServer, Scenario, load_scenario
from harness.targets import Target
from harness.yamlsource import SourceError

RESULT_KEY = pytest.StashKey[CheckResult]()
POOL_KEY = pytest.StashKey[Any]()
REMOTE_KEY = pytest.StashKey[list[Target]]()
REACH_KEY = pytest.StashKey[dict[str, "TargetReach"]]()

# Checks that make a login fail on purpose: run after every other check of their target,
# so a server's penalty for the failure (Dovecot's auth_failure_delay and its doubling
# auth penalty, vsftpd's delay_failed_login) does not slow or time out the logins of the
# other checks. plaintext-login-refused sends a decoy (or a refused) password.
FAILED_LOGIN_CHECKS = ("auth-bad-password", "plaintext-login-refused")
# Checks that diagnose reachability themselves: never preflighted, never skipped as
# unreachable. wait-listening polls until a booting server is up (it refuses connections
# meanwhile), and its pass proves the target reachable; op25b-diagnose probes 25, 587 and
# 465 concurrently, and its view of the target's own port is taken as the preflight's.
WAIT_CHECK = "wait-listening"
OP25B_CHECK = "op25b-diagnose"

_OPTIONS: dict[str, tuple[str, str]] = {
    # name: (env var, help)
    "lab_inventory": ("LAB_INVENTORY", "inventory file of remote targets (default: embedded lab)"),
    "lab_target": (
        "LAB_TARGET",
        "inventory target name to run against (repeatable; env: comma list)",
    ),
    "lab_group": ("LAB_GROUP", "inventory group to run against (repeatable; env: comma list)"),
    "lab_url": (
        "LAB_URL",
        "a remote target as a URL, e.g. ftps://user@host:21?pin=AB:..; password from LAB_PASSWORD",
    ),
    "lab_timeout": ("LAB_TIMEOUT", "per-operation timeout in seconds, overriding targets"),
}
STRICT_HELP = (
    "fail a warning (a deviation from an RFC SHOULD or best practice) and a check that "
    "could not run (no credentials, a feature missing, a TLS version this client cannot "
    "offer) instead of passing or skipping it; not-applicable skips stay skips"
)
PREFLIGHT_HELP = (
    "do not test a remote target's port once before its first check (then an unreachable "
    "target costs one timeout per check instead of one in all)"
)
_TRUE = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftps-lab", "ftps-lab scenarios")
    for name, (env, help_text) in _OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        repeatable = name in ("lab_target", "lab_group", "lab_url")
        group.addoption(
            flag,
            dest=name,
            action="append" if repeatable else "store",
            default=None,
            help=f"{help_text} [env {env}]",
        )
        parser.addini(name, help=help_text, default=None)
    group.addoption(
        "--lab-shard",
        dest="lab_shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (1-based); a target's checks stay in one shard [env LAB_SHARD]",
    )
    group.addoption(
        "--lab-strict",
        dest="lab_strict",
        action="store_true",
        default=False,
        help=f"{STRICT_HELP} [env LAB_STRICT]",
    )
    parser.addini("lab_strict", help=STRICT_HELP, type="bool", default=False)
    group.addoption(
        "--lab-no-preflight",
        dest="lab_no_preflight",
        action="store_true",
        default=False,
        help=f"{PREFLIGHT_HELP} [env LAB_PREFLIGHT=0]",
    )
    parser.addini("lab_preflight", help="false: " + PREFLIGHT_HELP, type="bool", default=True)
    group.addoption(
        "--lab-full-trace",
        action="store_true",
        default=False,
        help="show Python tracebacks for internal errors",
    )
    add_report_options(parser)


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    if value:
        return value
    env = os.environ.get(_OPTIONS[name][0])
    if env:
        return (
            [v.strip() for v in env.split(",") if v.strip()]
            if name in ("lab_target", "lab_group", "lab_url")
            else env
        )
    ini = config.getini(name)
    if ini:
        return [ini] if name in ("lab_target", "lab_group", "lab_url") else ini
    return None


def strict(config: pytest.Config) -> bool:
    """``--lab-strict``, then ``LAB_STRICT`` (1/true/yes/on), then the ``lab_strict`` ini key."""
    if config.getoption("lab_strict", False):
        return True
    env = os.environ.get("LAB_STRICT")
    if env is not None and env.strip():
        return env.strip().lower() in _TRUE
    return bool(config.getini("lab_strict"))


def strict_source(config: pytest.Config, target: Target | None) -> str | None:
    """Who makes this target strict, for the failure message; None when nobody does."""
    if strict(config):
        return "--lab-strict"
    if target is not None and target.strict:
        return f"strict: true on target {target.name}"
    return None


def preflight_enabled(config: pytest.Config) -> bool:
    """Unless ``--lab-no-preflight``, ``LAB_PREFLIGHT=0`` or ini ``lab_preflight = false``."""
    if config.getoption("lab_no_preflight", False):
        return False
    env = os.environ.get("LAB_PREFLIGHT")
    if env is not None and env.strip():
        return env.strip().lower() in _TRUE
    return bool(config.getini("lab_preflight"))


class TargetReach:
    """What this process knows about one remote target's reachability.

    ``owner`` is the node id of the item that found out (the one ERROR of an unreachable
    target, retried by its own ``retry``), ``case`` its ``scenario::check-id`` for the
    skip reasons of the others.
    """

    def __init__(self, reach: Reach | None, owner: str, case: str) -> None:
        self.reach = reach  # None: proven reachable by a wait-listening pass
        self.owner = owner
        self.case = case

    @property
    def reachable(self) -> bool:
        return self.reach is None or self.reach.reachable


def _reach_from_probe(target: Target, result: CheckResult, timeout: float) -> Reach | None:
    """The target's own port as ``op25b-diagnose`` saw it (probing with ``timeout``), or
    None if it was not probed."""
    from harness.probe import PortResult

    for raw in result.evidence.get("ports") or []:
        try:
            port = PortResult.from_dict(dict(raw))
        except (TypeError, ValueError, KeyError):
            continue
        if port.port == target.port and port.host == target.host:
            state = PortState.OPEN if port.state.answered else port.state
            return Reach(target.host, target.port, timeout, state, port.detail, port.elapsed)
    return None


def skip_reason(kind: SkipKind, reason: str) -> str:
    """A pytest skip reason that starts with its kind, so ``-rs``, pytest's JUnit and the
    grouped skip summary all say which kind of skip it was."""
    return f"{kind.label}: {reason}"


def _remote_targets(config: pytest.Config) -> list[Target] | None:
    """Targets from the inventory/URL options, or None for the embedded lab."""
    if REMOTE_KEY in config.stash:
        return config.stash[REMOTE_KEY]
    inventory_path = _option(config, "lab_inventory")
    urls = _option(config, "lab_url") or []
    names = _option(config, "lab_target") or []
    groups = _option(config, "lab_group") or []
    if not inventory_path and not urls:
        if names or groups:
            raise pytest.UsageError(
                "--lab-target/--lab-group need --lab-inventory (or LAB_INVENTORY)"
            )
        return None
    targets: list[Target] = []
    try:
        if inventory_path:
            inventory = load_inventory(inventory_path)
            targets.extend(inventory.select(names, groups))
        targets.extend(target_from_url(url) for url in urls)
    except SourceError as exc:
        raise pytest.UsageError(str(exc)) from None
    timeout = _option(config, "lab_timeout")
    if timeout:
        for target in targets:
            target.timeout = float(timeout)
    config.stash[REMOTE_KEY] = targets
    return targets


def _dist_given(config: pytest.Config) -> bool:
    """Whether the user chose a pytest-xdist mode (``--dist``, ``--dl``) anywhere."""
    words = [
        *config.invocation_params.args,
        *os.environ.get("PYTEST_ADDOPTS", "").split(),
        *config.getini("addopts"),
    ]
    return any(str(w) in ("--dist", "--dl", "--distload") or str(w).startswith("--dist=")
               for w in words)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n`` and no ``--dist``, keep each target's checks on one worker.

    pytest-xdist's plain ``load`` would start the same lab servers on every worker and
    interleave one remote server's checks across workers (each worker would then
    diagnose an unreachable target again, and a failed login would no longer run after
    its target's other checks); ``loadgroup`` uses the ``xdist_group`` marks set at
    collection. pytest-xdist turns ``no`` into ``load`` in its own (equally early) hook,
    so :func:`pytest_configure` repeats the decision once both have run.
    """
    _default_loadgroup(config)


def _default_loadgroup(config: pytest.Config) -> None:
    option = config.option
    if not getattr(option, "numprocesses", None) or _dist_given(config):
        return
    if getattr(option, "dist", None) in ("no", "load"):
        option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell each pytest-xdist worker the mode the controller settled on: a worker parses
    the command line itself (no ``--dist`` there) and would not add the group names to
    its node ids, which ``loadgroup`` schedules by."""
    node.workerinput["ftps_lab_dist"] = node.config.option.dist


def pytest_configure(config: pytest.Config) -> None:
    _default_loadgroup(config)  # before pytest-xdist's (trylast) configure reads it
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("ftps_lab_dist") == "loadgroup":
        config.option.loadgroup = True
    config.addinivalue_line("markers", "lab_target(name): the target a scenario item runs against")
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist loadgroup grouping")
    _remote_targets(config)  # fail fast on a bad inventory, before collection
    config.pluginmanager.register(ReportPlugin(config), "ftps-lab-report")
    config.pluginmanager.register(SkipSummary(), "ftps-lab-skip-summary")


def pytest_report_header(config: pytest.Config) -> list[str]:
    targets = config.stash.get(REMOTE_KEY, None)
    if targets is None:
        return ["ftps-lab: embedded loopback lab (servers start on demand)"]
    return [f"ftps-lab: {len(targets)} remote target(s): " + ", ".join(t.id for t in targets)]


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and "scenarios" in file_path.parts:
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """One scenario file: items are checks x targets."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            scenario = load_scenario(self.path, load_all())
        except SourceError as exc:
            raise self.CollectError(f"invalid scenario: {exc}") from None
        remote = _remote_targets(self.config)
        if remote is None:
            targets: list[Target | LabServer] = list(scenario.lab)
            if not targets:
                return
        else:
            targets = [t for t in remote if t.protocol in scenario.protocols]
        specs = load_all()
        for entry in scenario.checks:
            for target in targets:
                if isinstance(target, LabServer) and (
                    entry.remote_only or (entry.targets and target.name not in entry.targets)
                ):
                    # Pinned to other lab servers, or a step for remote targets only.
                    continue
                protocol = target.protocol
                item = ScenarioItem.from_parent(
                    self,
                    name=f"{entry.id}[{_target_id(target)}]",
                    scenario=scenario,
                    entry=entry,
                    target=target,
                )
                # Every skip decided here is "not applicable": the step has nothing to say
                # about this target, so --lab-strict leaves it alone.
                reason = ""
                if protocol not in specs[entry.check].protocols:
                    reason = f"{entry.check} does not apply to {protocol} targets"
                elif remote is not None and scenario.lab and entry.expect != "pass":
                    # expect: fail/error describes the scenario's deliberately broken lab
                    # servers; a remote target that lacks the fault must not turn red.
                    broken = ", ".join(entry.targets or [s.name for s in scenario.lab])
                    reason = (
                        f"expect: {entry.expect} demonstrates a fault of lab "
                        f"server(s) {broken}; not applied to remote targets"
                    )
                elif remote is not None and entry.targets:
                    # A step pinned to named lab servers (one simulated network's verdict,
                    # one NAT variant) says something about those servers only.
                    reason = (
                        f"{entry.id} is about lab server(s) "
                        f"{', '.join(entry.targets)} only; not applied to remote targets"
                    )
                if reason:
                    item.skip_kind = SkipKind.NOT_APPLICABLE
                    reason = skip_reason(SkipKind.NOT_APPLICABLE, reason)
                    item.add_marker(pytest.mark.skip(reason=reason))
                item.add_marker(pytest.mark.lab_target(_target_id(target)))
                # pytest-xdist --dist loadgroup keeps one target's checks on one worker.
                # The mark must exist when the worker's own collection hook turns it into
                # the node id suffix loadgroup schedules by, i.e. before any
                # pytest_collection_modifyitems runs.
                item.add_marker(pytest.mark.xdist_group(_target_id(target)))
                yield item


def _target_id(target: Target | LabServer) -> str:
    if isinstance(target, LabServer):
        return f"{target.protocol}://lab-{target.name}"
    return target.id


class CheckFailed(Exception):
    """A check's verdict disagreed with the scenario's expectation."""

    def __init__(self, message: str, result: CheckResult) -> None:
        super().__init__(message)
        self.result = result


class ScenarioItem(pytest.Item):
    def __init__(
        self,
        *,
        scenario: Scenario,
        entry: CheckEntry,
        target: Target | LabServer,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.entry = entry
        self.lab_target = target
        self.resolved: Target | None = None
        # Set when collection decides the item is skipped (it never runs, so no result).
        self.skip_kind: SkipKind | None = None

    @property
    def target_id(self) -> str:
        """The readable target id, e.g. ``ftps://lab-iis`` or ``ftps://iis-build-42``."""
        return _target_id(self.lab_target)

    def _resolve(self) -> Target:
        if isinstance(self.lab_target, Target):
            return self.lab_target
        pool = self.config.stash.get(POOL_KEY, None)
        if pool is None:
            from harness.lab.pool import LabPool

            pool = LabPool()
            self.config.stash[POOL_KEY] = pool
        return pool.target_for(self.lab_target)

    def runtest(self) -> None:
        target = self._resolve()
        self.resolved = target
        params = dict(self.entry.params)
        pool: Any = None
        mark: Any = None
        if isinstance(self.lab_target, LabServer):
            pool = self.config.stash[POOL_KEY]
            params = pool.params_for(self.lab_target, self.entry.check, params)
            # Errors the lab's threads record from here on belong to this check.
            mark = pool.error_mark(self.lab_target)
        result = self._run_once(target, params)
        attempt = 1
        while result.status in (Status.ERROR, Status.FAIL) and attempt < self.entry.attempts:
            time.sleep(self.entry.sleep)
            attempt += 1
            result = self._run_once(target, params)
        if pool is not None:
            result = pool.verify(self.lab_target, result, since=mark)
        self.stash[RESULT_KEY] = result
        self.user_properties.extend(
            [
                ("target", target.id),
                ("protocol", target.protocol),
                ("status", result.status.value),
                ("tls_version", str(result.evidence.get("tls_version", ""))),
                *([("skip_kind", result.skip_kind.value)] if result.skip_kind else []),
            ]
        )
        expected = self.entry.expect
        # A harness bug or a lab server's own error never meets expect: error (or fail).
        internal = "traceback" in result.evidence or "lab_server_errors" in result.evidence
        if result.status.value == expected and not internal:
            if expected == "skip":
                pytest.skip(skip_reason(result.skip_kind or SkipKind.COULD_NOT_RUN,
                                        result.summary))
            return
        strictly = strict_source(self.config, target)
        if expected == "pass" and result.status is Status.WARN and not internal:
            # Secure and working, but off a SHOULD: passes unless someone asked for strict.
            if strictly:
                raise CheckFailed(f"check warned, expected pass; {strictly} fails it", result)
            return
        if expected == "pass" and result.status is Status.SKIP:
            kind = result.skip_kind or SkipKind.COULD_NOT_RUN
            if kind is SkipKind.COULD_NOT_RUN and strictly:
                raise CheckFailed(
                    f"check could not run (skip), expected pass; {strictly} fails it", result
                )
            pytest.skip(skip_reason(kind, result.summary))
        if internal:
            cause = (
                "a lab server failed during the check"
                if "lab_server_errors" in result.evidence
                else "an internal error in the harness"
            )
            raise CheckFailed(
                f"check ended {result.status.value} ({cause}): no verdict, expected {expected}",
                result,
            )
        if expected == "fail":
            raise CheckFailed(
                f"expected this check to catch the misconfiguration (status fail), "
                f"but it ended {result.status.value}",
                result,
            )
        if expected == "warn":
            raise CheckFailed(
                f"expected this check to report the deviation (status warn), "
                f"but it ended {result.status.value}",
                result,
            )
        raise CheckFailed(f"check ended {result.status.value}, expected {expected}", result)

    def _run_once(self, target: Target, params: dict[str, Any]) -> CheckResult:
        """The check, unless its remote target is known to be unreachable.

        Before the first check of a remote target (in this process: pytest-xdist's
        loadgroup keeps a target's items on one worker) one TCP connect with the
        target's timeout decides. Unreachable: this item reports the one ERROR, in the
        probe's words, and every other item of the target skips (could not run) naming
        it; so an unreachable target costs one timeout, not one per check.
        """
        if not isinstance(self.lab_target, Target) or not preflight_enabled(self.config):
            return run_check(self.entry.check, target, params)
        known_targets = self.config.stash.setdefault(REACH_KEY, {})
        known = known_targets.get(target.id)
        case = f"{self.scenario.name}::{self.entry.id}"
        if self.entry.check == WAIT_CHECK:
            result = run_check(self.entry.check, target, params)
            if result.status is Status.PASS and (known is None or not known.reachable):
                known_targets[target.id] = TargetReach(None, self.nodeid, case)
            return result
        if self.entry.check == OP25B_CHECK:
            result = run_check(self.entry.check, target, params)
            # op25b-diagnose probes with params.timeout, else min(target timeout, 3 s).
            timeout = float(params.get("timeout", min(target.timeout, PROBE_TIMEOUT)))
            reach = _reach_from_probe(target, result, timeout)
            if known is None and reach is not None:
                known_targets[target.id] = TargetReach(reach, self.nodeid, case)
            return result
        if known is None or (not known.reachable and known.owner == self.nodeid):
            known = TargetReach(
                tcp_reach(target.host, target.port, target.timeout), self.nodeid, case
            )
            known_targets[target.id] = known
        if known.reachable:
            return run_check(self.entry.check, target, params)
        reach = known.reach
        assert reach is not None
        if known.owner == self.nodeid:
            return CheckResult(
                check=self.entry.check,
                status=Status.ERROR,
                summary=diagnosis(reach),
                expected=f"a TCP connection to {reach.host}:{reach.port} within "
                f"{reach.timeout:g} s",
                observed=f"{reach.state.value}: {reach.detail}",
                evidence={"reachability": reach.to_dict(), "check_run": False},
                advice=advice(reach),
                duration=reach.elapsed,
            )
        return CheckResult(
            check=self.entry.check,
            status=Status.SKIP,
            summary=f"target unreachable: see {known.case} ({reach.state.value})",
            evidence={"reachability": reach.to_dict(), "check_run": False,
                      "diagnosed_by": known.case},
            skip_kind=SkipKind.COULD_NOT_RUN,
        )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            result = excinfo.value.result
            target = self.resolved.id if self.resolved else _target_id(self.lab_target)
            text = "\n".join(
                [
                    f"target:   {target}",
                    f"scenario: {self.scenario.name} ({self.path.name}:{self.entry.line})",
                    f"step:     {self.entry.id}",
                    f"verdict:  {excinfo.value}",
                    result.describe(),
                ]
            )
            # The server's replies are in there: a server that echoes the password must not
            # put it in pytest's output (the report plugin scrubs the whole report again).
            return run_scrubber(self.config, [self.resolved]).text(text)
        if self.config.getoption("lab_full_trace"):
            return super().repr_failure(excinfo)
        return (
            f"internal error while running {self.entry.id} against "
            f"{_target_id(self.lab_target)}: {excinfo.type.__name__}: {excinfo.value}\n"
            "(run with --lab-full-trace for the traceback)"
        )

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.entry.line or 1) - 1, f"{self.scenario.name}::{self.name}"


def parse_shard(value: str) -> tuple[int, int]:
    """``"2/5"`` -> ``(2, 5)``; anything else is a usage error that says what is wanted."""
    index, slash, total = value.partition("/")
    try:
        shard, shards = int(index), int(total)
    except ValueError:
        shard = shards = 0
    if not slash or not 1 <= shard <= shards:
        raise pytest.UsageError(f"--lab-shard wants I/N with 1 <= I <= N, e.g. 2/4; got {value!r}")
    return shard, shards


def _group_suffixes(items: list[ScenarioItem]) -> None:
    """Append ``@<target>`` to each node id on a pytest-xdist worker, as loadgroup needs.

    pytest-xdist does it in its own collection hook by assigning ``item._nodeid``; pytest
    9 keeps node ids in ``item._id`` (a ``NodeId``), so that assignment is lost and
    loadgroup silently schedules like ``load``, spreading one target's checks over every
    worker. Only missing suffixes are added, so an xdist/pytest pair that works is left
    alone.
    """
    for item in items:
        suffix = f"@{item.target_id}"
        if item.nodeid.endswith(suffix):
            continue
        if hasattr(item, "_id"):
            from _pytest.nodeid import NodeId  # pytest >= 9

            item._id = NodeId.parse(item.nodeid + suffix)
        else:  # pragma: no cover - pytest < 9, where pytest-xdist's own suffix works
            item._nodeid = item.nodeid + suffix


def failed_logins_last(items: list[pytest.Item]) -> list[pytest.Item]:
    """The same items with every check that fails a login on purpose moved to the end.

    A stable partition: both parts keep collection order, so the order is deterministic,
    each target's failed logins come after all its other checks, and pytest-xdist's
    loadgroup (which sends a target's items to one worker in this order) keeps it too.
    """
    late = [i for i in items if isinstance(i, ScenarioItem)
            and i.entry.check in FAILED_LOGIN_CHECKS]
    if not late:
        return list(items)
    moved = {id(item) for item in late}
    return [i for i in items if id(i) not in moved] + late


def shard_of(target_ids: list[str], shards: int) -> dict[str, int]:
    """Deterministic target -> shard (1-based): sorted ids dealt round-robin.

    Every CI job collects the same items, so each computes the same split; keeping all of a
    target's checks in one shard means its lab servers start in one job only.
    """
    return {target: index % shards + 1 for index, target in enumerate(sorted(set(target_ids)))}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    items[:] = failed_logins_last(items)
    scenario_items = [item for item in items if isinstance(item, ScenarioItem)]
    if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):
        _group_suffixes(scenario_items)
    value = config.getoption("lab_shard") or os.environ.get("LAB_SHARD")
    if not value:
        return
    shard, shards = parse_shard(str(value))
    owner = shard_of([item.target_id for item in scenario_items], shards)
    keep = [i for i in items if not isinstance(i, ScenarioItem) or owner[i.target_id] == shard]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()
