"""Real ``prefect server start`` processes for the tests that need a server of their own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import TaskRun


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_prefect_server(
    home: Path, *, environ: Mapping[str, str] | None = None, ui: bool = False
) -> Iterator[str]:
    """``prefect server start`` on ``home``, answering at the API URL it yields; stopped on exit.

    ``environ`` is the server's environment (default: this process's); the UI is served only when asked.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **(os.environ if environ is None else environ),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": str(ui).lower(),
        # The UI's own calls go here; left to itself it derives the API's port from settings, not --port.
        "PREFECT_UI_API_URL": url,
    }
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server start did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def recorded_task_runs(flow_run_id: UUID, *, timeout: float = 30) -> list[TaskRun]:
    """The task runs of ``flow_run_id`` as the Prefect API records them, once each is in a final state.

    A task run reaches the API as events, which this process sends from a
    background worker and the server's task-run recorder writes later: read as
    soon as the flow returns, a run could still have its first record (seen
    once: "ingest-087" with run count 0, where the final record is "ingest", 1).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if all(run.state is not None and run.state.is_final() for run in runs):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"task runs not final after {timeout:.0f} s: {runs}")
            time.sleep(0.1)
