"""The embedder interface and its registry."""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

EMBEDDERS: Registry[Embedder] = Registry(
    "embedder", declares={"default_batch_size": (int, type(None)), "cacheable": bool}
)


class Embedder(ABC):
    """Turns texts into vectors: one method, ``embed(texts) -> (n, d) float32``.

    Subclasses declare their quirks as class attributes; provider details
    (batching limits, retries, rate limits) stay inside the subclass.

    Attributes
    ----------
    name : str
        Registry name, used on the command line (``--embedder NAME``).
    default_batch_size : int or None
        Texts per batch task when ``--batch-size`` is not given. ``None`` means
        the whole corpus in one batch (for embedders fitted on the corpus).
    max_concurrency : int
        Batches of this embedder that may run at once in one process.
    cacheable : bool
        Whether a text's vector depends on that text alone, so it may be reused
        across runs.
    typical_texts_per_second : float or None
        Throughput on a 2-core CPU, for ``--plan`` on a machine that has not
        measured its own yet.
    max_input_chars : int or None
        Characters of a text the embedder sends on (the rest is truncated), for
        the plan's token estimate; None: all of it.
    """

    name: ClassVar[str]
    default_batch_size: ClassVar[int | None] = 64
    max_concurrency: int = 1
    cacheable: ClassVar[bool] = True
    typical_texts_per_second: ClassVar[float | None] = None
    max_input_chars: ClassVar[int | None] = None

    @classmethod
    def check_ready(cls, settings: Settings) -> dict[str, Any]:
        """Raise a :class:`~tasks.errors.PipelineError` if this embedder cannot run at all.

        Called before any data is read, so a missing package or API key fails
        the run in its first second. Must be cheap: no model loading. Returns
        what the check resolved (an API key), as keyword arguments that
        :meth:`from_settings` takes, so the run resolves nothing twice.
        """
        return {}

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int, **resolved: Any) -> Embedder:
        """Build the embedder from the run's embedding settings (override to read options).

        ``resolved`` is what :meth:`check_ready` returned, when the caller checked first.
        """
        return cls()

    def share_limits(self, name: str) -> None:
        """Keep this embedder's service limits for the whole run when its batches run in several processes.

        Called in each process of a Dask run with a name unique to the run. The
        default does nothing: only remote services (Gemini) have limits to share.
        """

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape (len(texts), dimensions)."""

    def estimate(
        self, n_texts: int, tokens: int, requests: int, *, texts_per_second: float | None
    ) -> Estimate:
        """How long embedding ``n_texts`` texts (``tokens`` tokens, ``requests`` batches) takes, and costs.

        Local embedders take ``texts_per_second`` (measured, or typical); remote
        ones override this with their quotas and price.
        """
        seconds = n_texts / texts_per_second if texts_per_second else None
        return Estimate(seconds=seconds, cost_usd=None)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What identifies these vectors (model, dimensions, ...), for the manifest and cache keys."""


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


@dataclass(frozen=True)
class Estimate:
    """Seconds an embedding will take and what it will cost (None: unknown, or free)."""

    seconds: float | None
    cost_usd: float | None


class Tally:
    """Counters of one batch (requests, retries, seconds waited, ...), safe to add to from threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, float] = {}

    def add(self, **amounts: float) -> None:
        """Add ``amounts`` to the counters of the same names."""
        with self._lock:
            for key, amount in amounts.items():
                self.counts[key] = self.counts.get(key, 0) + amount


_TALLY: ContextVar[Tally | None] = ContextVar("embed_batch_tally", default=None)


def count(**amounts: float) -> None:
    """Count ``amounts`` towards the batch being embedded (nothing happens outside a batch).

    Embedders call this instead of keeping counters themselves, so the counts of
    a batch travel back with its vectors, whichever process embedded it. Threads
    an embedder starts must run in a copy of the caller's context
    (``contextvars.copy_context().run``) to count towards the same batch.
    """
    tally = _TALLY.get()
    if tally is not None:
        tally.add(**amounts)


@contextlib.contextmanager
def tallying() -> Iterator[Tally]:
    """Collect, in ``tally.counts``, what :func:`count` is given inside the ``with`` block."""
    tally = Tally()
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def sum_counts(batches: Sequence[dict[str, float]]) -> dict[str, float]:
    """Add up per-batch counters; seconds (``*_s``) are rounded to ms, the rest are whole numbers.

    >>> sum_counts([{"requests": 2, "backoff_s": 0.25}, {"requests": 1}])
    {'backoff_s': 0.25, 'requests': 3}
    """
    totals: dict[str, float] = {}
    for counts in batches:
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    return {key: round(v, 3) if key.endswith("_s") else int(v) for key, v in sorted(totals.items())}
