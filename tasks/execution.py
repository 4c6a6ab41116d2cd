"""Where the embed batches run: threads of the flow's process, or the workers of a Dask cluster.

Only the embed batches go to Dask. The flow itself, and its other stages (one
task each, on data already in the flow's memory), keep the flow's own thread
runner: shipping them to a worker would only copy their inputs. The runner is
chosen per run from :class:`tasks.config.ExecutionSettings`, a flow parameter,
so the command line, deployments, the UI and the comparison flow choose it the
same way, with no wrapped copy of the flow to keep in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from tasks.errors import InputError, MissingDependencyError

if TYPE_CHECKING:
    from prefect.futures import PrefectFuture
    from prefect.tasks import Task

    from tasks.base import Settings

T = TypeVar("T")

INSTALL_HINT = "--task-runner dask needs prefect-dask; install it with: pip install 'newsgroups-map[dask]'"
CONNECT_TIMEOUT_S = 5.0
# A worker answers once it has imported Prefect's settings: seconds, more on a loaded machine.
WORKERS_TIMEOUT_S = 60.0


def check_execution(settings: Settings) -> None:
    """Refuse a Dask run that cannot start: prefect-dask missing, or an external cluster that cannot serve it.

    ``settings`` is a :class:`tasks.config.ExecutionSettings`. Runs before any
    data is read (the command line calls it before Prefect starts), so a wrong
    ``--dask-address`` fails the run in seconds. Each step is bounded by
    :data:`CONNECT_TIMEOUT_S`: the address must answer as a Dask scheduler
    (:func:`scheduler_identity`), this process must report to a Prefect server
    (``PREFECT_API_URL``) and every worker to the same one (:func:`check_workers`),
    or a worker would start a temporary server of its own and its batch task runs
    would not show under the flow run.
    """
    if settings.task_runner != "dask":
        return
    if importlib.util.find_spec("prefect_dask") is None:  # found, not imported: the check stays quick
        raise MissingDependencyError(INSTALL_HINT)
    address = settings.dask_address
    if address is None:
        return
    identity = scheduler_identity(address)
    if identity.get("type") != "Scheduler":
        raise InputError(
            f"The 'dask_address' parameter names {address}, which answers as a Dask "
            f"{identity.get('type') or 'peer'}, not a scheduler; give the scheduler's address (`dask scheduler` prints it)."
        )
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    if not api:
        raise InputError(
            f"A run on the Dask cluster at {address} needs a Prefect server its workers can reach, and "
            "PREFECT_API_URL is not set: start one with `prefect server start`, then set "
            "PREFECT_API_URL=http://<host>:4200/api for this command and for each `dask worker`."
        )
    check_workers(address, api)


def _run_bounded(
    coroutine: Callable[[], Coroutine[Any, Any, T]],
    address: str,
    what: str,
    *,
    timeout: float = CONNECT_TIMEOUT_S,
) -> T:
    """Run ``coroutine()`` in a new event loop in its own thread, for at most ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine(), timeout)

    with ThreadPoolExecutor(1) as pool:  # the caller may be inside an event loop (a Prefect flow)
        try:
            return pool.submit(asyncio.run, bounded()).result()
        except (OSError, TimeoutError, ValueError) as error:
            reason = str(error) or f"no answer in {timeout:g} s"
            raise InputError(
                f"The 'dask_address' parameter names {address}, which {what} ({reason}); start a "
                "scheduler there with `dask scheduler`, correct --dask-address, or leave it unset to "
                "run a local cluster."
            ) from None


def scheduler_identity(address: str) -> dict[str, Any]:
    """What the Dask peer at ``address`` says it is (``type``: ``"Scheduler"`` for a scheduler).

    Raises :class:`~tasks.errors.InputError` naming the address when nothing
    answers there as Dask within :data:`CONNECT_TIMEOUT_S` (a closed port, a
    listener that stays silent, another protocol).
    """
    from distributed.comm import connect

    async def identity() -> dict[str, Any]:
        comm = await connect(address, timeout=CONNECT_TIMEOUT_S)
        try:
            await comm.write({"op": "identity", "reply": True})
            answer = await comm.read()
        finally:
            comm.abort()
        return answer if isinstance(answer, dict) else {}

    return _run_bounded(identity, address, "does not answer as a Dask scheduler")


def _prefect_api_url() -> str | None:
    """The Prefect API this process reports to (run on each Dask worker)."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def check_workers(address: str, api: str) -> None:
    """Refuse a cluster whose workers report to another Prefect API than ``api`` (or to none)."""
    from distributed import Client

    async def apis() -> dict[str, str | None]:
        async with Client(address, asynchronous=True, timeout=CONNECT_TIMEOUT_S) as client:
            return await client.run(_prefect_api_url)

    found = _run_bounded(apis, address, "did not answer for its workers", timeout=WORKERS_TIMEOUT_S)
    if not found:
        raise InputError(
            f"The Dask cluster at {address} has no worker; start some with `PREFECT_API_URL={api} dask worker {address}`."
        )
    wrong = {worker: url for worker, url in found.items() if url != api}
    if wrong:
        worker, url = next(iter(wrong.items()))
        raise InputError(
            f"{len(wrong)} of the {len(found)} Dask workers at {address} report to "
            f"{url or 'no Prefect server'} (worker {worker}), not to this run's {api}; restart them with "
            f"`PREFECT_API_URL={api} dask worker {address}`, or each would start a Prefect server of its own."
        )


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
