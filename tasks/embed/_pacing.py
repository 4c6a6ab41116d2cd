"""Client-side pacing for remote embedding services: stay under a quota instead of bouncing off it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


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
