"""One Prefect server for the whole test session, started while the test workers start.

The pytest process that starts the xdist workers (or runs the tests itself,
without xdist) starts, in a background thread, one ``prefect server start``
(``prefect_server``), which all workers share, and keeps a copy of its home as
it is once the server has migrated its database: the home every other test
server starts from (``started_prefect_home``). It stops the server when the
session ends.

Each worker used to start a server of its own, after the migrated home, before
its first test: about 14 s with one core idle at the start of every run, 4.3 s
of CPU per server, and about 0.8 s of CPU per 30 s while it idled. Now that
work overlaps the workers' imports and collection.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
import traceback
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from tests.servers import running_prefect_server

FOLDER_ENV = "NEWSGROUPS_TEST_SESSION_FOLDER"
TEMPLATE, API_URL, FAILED = "started-prefect-home", "api-url", "failed"
WAIT_S = 300
# The server's loop services that act on their own (schedules, late and stuck runs, automations, pauses,
# cancellation clean-up): no test on the session's server is about them, and their passes cost it CPU all
# session long. Those that record what clients send (events, task runs, logs) stay on; the servers that
# test deployments and cancelling (test_ui) keep every service but the scheduler.
IDLE_SERVICES = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "SCHEDULER",
        "LATE_RUNS",
        "FOREMAN",
        "REPOSSESSOR",
        "PAUSE_EXPIRATIONS",
        "CANCELLATION_CLEANUP",
        "TRIGGERS",
        "CLEANUP_RECONCILER",
    )
}


class _SessionServer:
    """The template home and the shared server, made in a thread; stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="newsgroups-test-session-"))
        self._servers = ExitStack()
        self._thread = threading.Thread(target=self._start, name="session-prefect-server", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            home = self.folder / "server-home"
            home.mkdir()
            # On an empty home the server migrates its database and registers its blocks (memo_store.toml
            # remembers that), before it answers; no client knows its address yet, so that state is the
            # template: SQLite's online backup copies the database consistently while the server runs.
            url = self._servers.enter_context(
                running_prefect_server(home, environ={**os.environ, **IDLE_SERVICES})
            )
            partial = self.folder / f"{TEMPLATE}.partial"
            partial.mkdir()
            shutil.copy2(home / "memo_store.toml", partial)
            with closing(sqlite3.connect(home / "prefect.db")) as source:
                with closing(sqlite3.connect(partial / "prefect.db")) as copy:
                    source.backup(copy)
            partial.rename(self.folder / TEMPLATE)
            _write(self.folder / API_URL, url)
        except BaseException:
            _write(self.folder / FAILED, traceback.format_exc())
            raise

    def stop(self) -> None:
        self._thread.join()
        self._servers.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _write(path: Path, text: str) -> None:
    """Write ``text`` so that other processes see all of it or nothing."""
    from tasks.layout import atomic_path  # here: it loads pandas and pyarrow, which the controller needs not

    with atomic_path(path) as partial:
        partial.write_text(text)


def _ready(name: str) -> Path:
    """``name`` in the session's folder, once the thread that makes it has made it."""
    folder = Path(os.environ[FOLDER_ENV])
    deadline = time.monotonic() + WAIT_S
    while not (folder / name).exists():
        if (folder / FAILED).exists():
            raise RuntimeError(
                "the session's Prefect server did not start:\n" + (folder / FAILED).read_text()
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"the session's Prefect server made no {name} in {WAIT_S} s")
        time.sleep(0.1)
    return folder / name


_KEY = pytest.StashKey[_SessionServer]()


@pytest.hookimpl(tryfirst=True)  # before xdist starts the workers: they inherit the environment
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    config.stash[_KEY] = server = _SessionServer()
    os.environ[FOLDER_ENV] = str(server.folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    if (server := config.stash.get(_KEY, None)) is not None:
        server.stop()


@pytest.fixture(scope="session")
def started_prefect_home() -> Path:
    """A Prefect home whose database a server has already migrated and filled with its blocks.

    A server that starts on an empty home first migrates its database (about
    6 s of CPU here), and every temporary server a command starts in a new home
    would pay it again; a copy of this one (``new_prefect_home``) starts as on
    a user's second run.
    """
    return _ready(TEMPLATE)


@pytest.fixture(scope="session")
def prefect_server() -> str:
    """The API URL of the session's one real ``prefect server start``, shared by all test workers.

    A command run without ``PREFECT_API_URL`` starts a temporary server of its
    own (20-25 s each); tests that run the command line set ``PREFECT_API_URL``
    to this one instead, unless that temporary server's lifecycle is what they test.
    The in-process flows use it too (``prefect_api``).
    """
    return _ready(API_URL).read_text()
