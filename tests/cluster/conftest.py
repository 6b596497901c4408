"""The multi-host rig as a fixture: a fresh cluster per trial, torn down (every process,
namespace and link) whatever the trial's outcome, and the measured figures printed at the end.

Collected only when ``CLUSTER_TESTS=1`` (tests/conftest.py): ``.ci/run`` runs them once, as root.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import cloudinary
import pytest

from tests.cluster import netns
from tests.cluster.client import WebPool
from tests.cluster.rig import Cluster

#: What each trial measured, printed after the run (and quoted in the README).
FIGURES: dict[str, list[str]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ok, why = netns.available()
    if not ok:
        # Asked for explicitly (CLUSTER_TESTS=1) on a machine that cannot: fail, don't skip.
        raise pytest.UsageError(f"the cluster trials cannot run here: {why}")


@pytest.fixture
def record() -> Callable[[str, str], None]:
    def add(trial: str, line: str) -> None:
        FIGURES.setdefault(trial, []).append(line)
        print(f"[{trial}] {line}")

    return add


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., Cluster]]:
    made: list[tuple[Cluster, Path]] = []

    def make(**options: object) -> Cluster:
        tmp = Path(tempfile.mkdtemp(prefix=f"{netns.PREFIX}-"))
        cluster = Cluster(tmp, **options)  # type: ignore[arg-type]
        made.append((cluster, tmp))
        cluster.start()
        cloudinary.reset_config()
        cloudinary.config(**cluster.cloudinary_config())
        return cluster

    yield make
    for cluster, tmp in made:
        leaked = cluster.leaked_secrets()
        left = cluster.stop()
        failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else True
        if failed or os.environ.get("CLUSTER_KEEP_LOGS") == "1":
            # The logs only: the databases and photos are of no use after the run.
            for path in tmp.iterdir():
                if path.is_dir() and path.name != "logs":
                    shutil.rmtree(path, ignore_errors=True)
            print(f"cluster logs kept in {tmp / 'logs'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"the rig left behind: {left}"
        assert not leaked, f"secrets written to logs: {leaked}"


@pytest.fixture
def web() -> Callable[[Cluster], WebPool]:
    return lambda cluster: WebPool(cluster.web_urls, cluster.secrets["JWT_SECRET"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not FIGURES:
        return
    terminalreporter.section("cluster trials: measured")
    for trial, lines in FIGURES.items():
        for line in lines:
            terminalreporter.write_line(f"{trial}: {line}")
