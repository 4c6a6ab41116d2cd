"""Where the embed batches run: threads of the flow's process, or the workers of a Dask cluster.

Only the embed batches go to Dask. The flow itself, and its other stages (one
task each, on data already in the flow's memory), keep the flow's own thread
runner: shipping them to a worker would only copy their inputs. The runner is
chosen per run from :class:`tasks.config.ExecutionSettings`, a flow parameter,
so the command line, deployments, the UI and the comparison flow choose it the
same way, with no wrapped copy of the flow to keep in step.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prefect.futures import PrefectFuture
from prefect.tasks import Task

from tasks.errors import InputError, MissingDependencyError

if TYPE_CHECKING:
    from tasks.base import Settings

INSTALL_HINT = "--task-runner dask needs prefect-dask; install it with: pip install 'newsgroups-map[dask]'"
CONNECT_TIMEOUT_S = 5.0


def check_execution(settings: Settings) -> None:
    """Refuse a Dask run that cannot start: prefect-dask missing, or a scheduler that does not answer.

    ``settings`` is a :class:`tasks.config.ExecutionSettings`. Runs before any
    data is read, so a wrong ``--dask-address`` fails the run in seconds, not
    after Dask's 30-second connection timeout deep inside the embed stage.
    """
    if settings.task_runner != "dask":
        return
    try:
        import prefect_dask  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(INSTALL_HINT) from error
    if settings.dask_address is None:
        return
    parts = urlsplit(settings.dask_address)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise InputError(
            f"The 'dask_address' parameter names a Dask scheduler that does not answer "
            f"({settings.dask_address}: {error}); start one there with `dask scheduler`, correct "
            "--dask-address, or leave it unset to run a local cluster."
        ) from None


class BatchRunner:
    """Submits batch tasks to the flow's own task runner (threads) or to a Dask cluster.

    Attributes
    ----------
    shared : bool
        Whether batches may run in other processes, so per-run state (an
        embedder's service limits) must be shared through the Dask scheduler.
    """

    def __init__(self, dask_runner: Any | None = None) -> None:
        self._dask = dask_runner
        self.shared = dask_runner is not None

    def submit(self, task: Task[..., Any], parameters: dict[str, Any]) -> PrefectFuture[Any]:
        """Start ``task`` with ``parameters`` (every parameter, by name); returns its future."""
        if self._dask is None:
            return task.submit(**parameters)
        return self._dask.submit(task, parameters)

    def on_workers(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` once in every Dask worker (nothing without Dask)."""
        if self._dask is not None:
            self._dask.client.run(function, *args)

    @property
    def client(self) -> Any | None:
        """The Dask client, or None with the thread runner."""
        return None if self._dask is None else self._dask.client


@contextlib.contextmanager
def batch_runner(settings: Settings | None) -> Iterator[BatchRunner]:
    """A :class:`BatchRunner` for ``settings`` (a :class:`tasks.config.ExecutionSettings`; None: threads).

    With ``task_runner="dask"`` and no ``dask_address``, a local cluster of
    ``dask_workers`` processes with one thread each is started for the stage and
    closed after it: one thread per process, because a batch is already
    parallel inside (torch uses the cores; Gemini sends its requests at once).
    Must run inside a flow: batch task runs are children of the flow run.
    """
    if settings is None or settings.task_runner == "thread":
        yield BatchRunner()
        return
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:
        raise MissingDependencyError(INSTALL_HINT) from error
    if settings.dask_address:
        runner = DaskTaskRunner(address=settings.dask_address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,  # no port to collide with another run's cluster
            }
        )
    with runner:
        yield BatchRunner(runner)
