"""Client-side pacing for remote embedding services: stay under a quota instead of bouncing off it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager


class RateLimiter:
    """Spaces request starts so that neither requests nor tokens per minute exceed their limits.

    Each call reserves the earliest start that keeps both budgets, so concurrent
    callers queue in order instead of bursting. In any minute at most one request
    beyond the limits can start (the one that opens the minute).

    Parameters
    ----------
    requests_per_minute, tokens_per_minute : int
        The limits.
    clock, sleep : callables
        ``time.monotonic`` and ``time.sleep``, replaceable in tests.
    """

    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requests_per_minute, self.tokens_per_minute = requests_per_minute, tokens_per_minute
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._free_at = -math.inf

    def acquire(self, tokens: int) -> float:
        """Wait until a request of ``tokens`` tokens may start; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._free_at)
            self._free_at = start + 60.0 * max(1 / self.requests_per_minute, tokens / self.tokens_per_minute)
        if start > now:
            self._sleep(start - now)
        return start - now

    def wait_s(self) -> float:
        """Seconds a request asking now would wait before it may start (0: it may start at once)."""
        with self._lock:
            return max(0.0, self._free_at - self._clock())

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (a 429's ``retryDelay`` applies to the whole quota)."""
        with self._lock:
            self._free_at = max(self._free_at, self._clock() + seconds)


class LocalPacing:
    """The limits of one process: requests in flight (a semaphore) and per minute (a :class:`RateLimiter`).

    Parameters
    ----------
    max_concurrency : int
        Requests in flight at once, at most.
    requests_per_minute, tokens_per_minute : int
        Pacing limits, as in :class:`RateLimiter`.
    """

    def __init__(self, max_concurrency: int, requests_per_minute: int, tokens_per_minute: int) -> None:
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._in_flight = threading.BoundedSemaphore(max_concurrency)

    def slot(self) -> AbstractContextManager[object]:
        """Hold one of the in-flight slots while a request is out."""
        return self._in_flight

    def acquire(self, tokens: int) -> float:
        """Wait until a request of ``tokens`` tokens may start; returns the seconds waited."""
        return self.limiter.acquire(tokens)

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds``."""
        self.limiter.pause(seconds)

    def wait_s(self) -> float:
        """Seconds until the next request may start (0 when it may start now)."""
        return self.limiter.wait_s()


class SharedPacing:
    """The same limits for every process of a run, held by the Dask scheduler the workers share.

    In-flight slots are a :class:`distributed.Semaphore` (a dead worker's slots
    come back when its lease expires). Pacing keeps :class:`RateLimiter`'s rule,
    "reserve the earliest start that keeps both budgets", with the next free
    start (wall-clock seconds) in a :class:`distributed.Variable` updated under a
    :class:`distributed.Lock`, so callers in any worker queue in one order and a
    429's pause holds back every worker. The Dask objects are made on first use,
    in the worker that uses them.

    Parameters
    ----------
    name : str
        Prefix of the scheduler-side objects; unique per run (see :func:`forget_shared`).
    max_concurrency, requests_per_minute, tokens_per_minute : int
        The run's limits.
    """

    def __init__(
        self, name: str, max_concurrency: int, requests_per_minute: int, tokens_per_minute: int
    ) -> None:
        self.name, self.max_concurrency = name, max_concurrency
        self.requests_per_minute, self.tokens_per_minute = requests_per_minute, tokens_per_minute
        self._made = threading.Lock()
        self._objects: tuple[object, object, object] | None = None

    def _dask(self) -> tuple[object, object, object]:
        """The semaphore, lock and variable, made once per process (a Semaphore registers a heartbeat)."""
        import distributed

        with self._made:
            if self._objects is None:
                self._objects = (
                    distributed.Semaphore(max_leases=self.max_concurrency, name=f"{self.name}-in-flight"),
                    distributed.Lock(f"{self.name}-pace"),
                    distributed.Variable(f"{self.name}-free-at"),
                )
            return self._objects

    def slot(self) -> AbstractContextManager[object]:
        """Hold one of the run's in-flight slots while a request is out."""
        semaphore, _, _ = self._dask()
        return semaphore  # type: ignore[return-value]

    def _reserve(self, after: Callable[[float], float]) -> tuple[float, float]:
        """Under the shared lock, set the next free start to ``after(start)``; returns (now, start)."""
        _, lock, free_at = self._dask()
        with lock:  # type: ignore[attr-defined]
            now = time.time()
            try:
                previous = float(free_at.get(timeout=0))  # type: ignore[attr-defined]
            except TimeoutError:  # not set yet: the run's first request
                previous = -math.inf
            start = max(now, previous)
            free_at.set(max(previous, after(start)))  # type: ignore[attr-defined]
        return now, start

    def acquire(self, tokens: int) -> float:
        """Wait until a request of ``tokens`` tokens may start, run-wide; returns the seconds waited."""
        spacing = 60.0 * max(1 / self.requests_per_minute, tokens / self.tokens_per_minute)
        now, start = self._reserve(lambda start: start + spacing)
        if start > now:
            time.sleep(start - now)
        return start - now

    def pause(self, seconds: float) -> None:
        """Let no request of the run start for ``seconds``, in any worker."""
        self._reserve(lambda start: time.time() + seconds)

    def wait_s(self) -> float:
        """Seconds until the next request of the run may start, in any worker (0: now)."""
        _, _, free_at = self._dask()
        try:
            return max(0.0, float(free_at.get(timeout=0)) - time.time())  # type: ignore[attr-defined]
        except TimeoutError:
            return 0.0


def forget_shared(name: str, client: object) -> None:
    """Delete the scheduler-side pacing state of :class:`SharedPacing` ``name`` (a remote scheduler outlives runs)."""
    import distributed

    distributed.Variable(f"{name}-free-at", client=client).delete()
