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
from harness.report.plugin import ReportPlugin, add_report_options
from harness.report.skips import SkipSummary
from harness.results import CheckResult, Status
from harness.scenario import CheckEntry, LabServer, Scenario, load_scenario
from harness.targets import Target
from harness.yamlsource import SourceError

RESULT_KEY = pytest.StashKey[CheckResult]()
POOL_KEY = pytest.StashKey[Any]()
REMOTE_KEY = pytest.StashKey[list[Target]]()

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


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n`` and no ``--dist``, keep each target's checks on one worker.

    pytest-xdist's plain ``load`` would start the same lab servers on every worker and
    interleave one remote server's checks across workers; ``loadgroup`` uses the
    ``xdist_group`` marks set at collection.
    """
    option = config.option
    if getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no":
        option.dist = "loadgroup"


def pytest_configure(config: pytest.Config) -> None:
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
                if (
                    isinstance(target, LabServer)
                    and entry.targets
                    and target.name not in entry.targets
                ):
                    continue
                protocol = target.protocol
                item = ScenarioItem.from_parent(
                    self,
                    name=f"{entry.id}[{_target_id(target)}]",
                    scenario=scenario,
                    entry=entry,
                    target=target,
                )
                if protocol not in specs[entry.check].protocols:
                    item.add_marker(
                        pytest.mark.skip(
                            reason=f"{entry.check} does not apply to {protocol} targets"
                        )
                    )
                elif remote is not None and scenario.lab and entry.expect != "pass":
                    # expect: fail/error describes the scenario's deliberately broken lab
                    # servers; a remote target that lacks the fault must not turn red.
                    broken = ", ".join(entry.targets or [s.name for s in scenario.lab])
                    item.add_marker(
                        pytest.mark.skip(
                            reason=f"expect: {entry.expect} demonstrates a fault of lab "
                            f"server(s) {broken}; not applied to remote targets"
                        )
                    )
                elif remote is not None and entry.targets:
                    # A step pinned to named lab servers (one simulated network's verdict,
                    # one NAT variant) says something about those servers only.
                    item.add_marker(
                        pytest.mark.skip(
                            reason=f"{entry.id} is about lab server(s) "
                            f"{', '.join(entry.targets)} only; not applied to remote targets"
                        )
                    )
                item.add_marker(pytest.mark.lab_target(_target_id(target)))
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
        if isinstance(self.lab_target, LabServer):
            params = self.config.stash[POOL_KEY].params_for(
                self.lab_target, self.entry.check, params
            )
        result = run_check(self.entry.check, target, params)
        attempt = 1
        while result.status in (Status.ERROR, Status.FAIL) and attempt < self.entry.attempts:
            time.sleep(self.entry.sleep)
            attempt += 1
            result = run_check(self.entry.check, target, params)
        if isinstance(self.lab_target, LabServer):
            result = self.config.stash[POOL_KEY].verify(self.lab_target, result)
        self.stash[RESULT_KEY] = result
        self.user_properties.extend(
            [
                ("target", target.id),
                ("protocol", target.protocol),
                ("status", result.status.value),
                ("tls_version", str(result.evidence.get("tls_version", ""))),
            ]
        )
        expected = self.entry.expect
        internal = "traceback" in result.evidence  # a harness bug never meets expect: error
        if result.status.value == expected and not internal:
            if expected == "skip":
                pytest.skip(f"{result.summary}")
            return
        if expected == "pass" and result.status is Status.SKIP:
            pytest.skip(result.summary)
        if expected == "fail":
            raise CheckFailed(
                f"expected this check to catch the misconfiguration (status fail), "
                f"but it ended {result.status.value}",
                result,
            )
        raise CheckFailed(f"check ended {result.status.value}, expected {expected}", result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            result = excinfo.value.result
            target = self.resolved.id if self.resolved else _target_id(self.lab_target)
            return "\n".join(
                [
                    f"target:   {target}",
                    f"scenario: {self.scenario.name} ({self.path.name}:{self.entry.line})",
                    f"step:     {self.entry.id}",
                    f"verdict:  {excinfo.value}",
                    result.describe(),
                ]
            )
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
    scenario_items = [item for item in items if isinstance(item, ScenarioItem)]
    for item in scenario_items:
        # pytest-xdist --dist loadgroup keeps one target's checks on one worker.
        item.add_marker(pytest.mark.xdist_group(item.target_id))
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
