"""Test order for ``--dist worksteal``: each xdist worker's share about equally long, its long tests first.

worksteal hands each worker a contiguous slice of the collection (the first
``n // workers`` tests to the first, and so on) and later moves tests only from
the end of a busy worker's queue to an idle one. Left in file order, one worker
ended with test_faults' two long tests and ran 49 s after the other had nothing
left to take. So the modules are dealt into one share per worker,
longest first, to the share with the least time so far (each module whole,
since its module fixtures are made once per worker that runs it); each share
runs its longest modules first, and the shares are cut to the slice sizes
worksteal will use by moving the shortest tests from the end of one share to
the end of another. What is left to steal at the end is then short tests.

Times come from ``tests/durations.json`` (``python -m pytest --record-durations``
writes it); a test not in it counts as :data:`SLOW_S` if marked ``slow``,
otherwise :data:`FAST_S`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
SLOW_S, FAST_S = 15.0, 0.5


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"record each test's time (setup, call and teardown) in tests/{DURATIONS.name}, for the test order",
    )


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        items[:] = [item for share in shares(items, workers) for item in share]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than this machine's cores.

    About a fifth of the suite's time is spent waiting on other processes (a
    command's temporary server, a worker's flow run, a fake service's latency);
    measured on 2 cores, three workers took 6:20 and two 6:40.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return len(os.sched_getaffinity(0)) + 1


def recorded() -> dict[str, float]:
    """The recorded seconds of each test by node id (none before the first ``--record-durations``)."""
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


def shares(items: list[pytest.Item], workers: int) -> list[list[pytest.Item]]:
    """``items`` dealt into ``workers`` lists, sized as worksteal slices the collection."""
    seconds = recorded()

    def duration(item: pytest.Item) -> float:
        return seconds.get(item.nodeid, SLOW_S if item.get_closest_marker("slow") else FAST_S)

    modules: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        modules[item.nodeid.partition("::")[0]].append(item)
    module_s = {name: sum(map(duration, tests)) for name, tests in modules.items()}
    dealt: list[list[str]] = [[] for _ in range(workers)]
    share_s = [0.0] * workers
    for name in sorted(modules, key=lambda name: (-module_s[name], name)):
        least = share_s.index(min(share_s))
        dealt[least].append(name)
        share_s[least] += module_s[name]
    # Within a share, a module with one long test (often its module fixture's setup) goes before a module of
    # many short ones: the end of a queue is what other workers steal, and a stolen test takes its fixtures along.
    longest = {name: max(map(duration, tests)) for name, tests in modules.items()}
    result = [
        [item for name in sorted(names, key=lambda name: -longest[name]) for item in modules[name]]
        for names in dealt
    ]

    sizes, left = [], len(items)
    for remaining in range(workers, 0, -1):
        sizes.append(left // remaining)
        left -= sizes[-1]
    while over := [i for i, share in enumerate(result) if len(share) > sizes[i]]:
        under = next(i for i, share in enumerate(result) if len(share) < sizes[i])
        result[under].append(result[over[0]].pop())
    return result


class _Recorder:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration

    def pytest_sessionfinish(self) -> None:
        # Merged into the times already recorded, so a run of some tests (-m, -k, a file) updates only theirs.
        times = recorded() | {nodeid: round(seconds, 1) for nodeid, seconds in self.seconds.items()}
        DURATIONS.write_text(json.dumps(dict(sorted(times.items())), indent=0) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    # On the xdist controller only: it receives every worker's reports.
    if config.getoption("--record-durations") and not os.environ.get("PYTEST_XDIST_WORKER"):
        config.pluginmanager.register(_Recorder(), "record-durations")
