"""The embedder interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.config import EmbeddingSettings

EMBEDDERS: Registry[Embedder] = Registry("embedder")


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
    """

    name: ClassVar[str]
    default_batch_size: ClassVar[int | None] = 64
    max_concurrency: int = 1
    cacheable: ClassVar[bool] = True

    @classmethod
    def check_ready(cls, settings: EmbeddingSettings) -> None:
        """Raise a :class:`~tasks.errors.PipelineError` if this embedder cannot run at all.

        Called before any data is read, so a missing package or API key fails
        the run in its first second. Must be cheap: no model loading.
        """

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings, *, seed: int) -> Embedder:
        """Build the embedder from the run's embedding settings (override to read options)."""
        return cls()

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape (len(texts), dimensions)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What identifies these vectors (model, dimensions, ...), for the manifest and cache keys."""

    def stats(self) -> dict[str, Any]:
        """Counters gathered while embedding (requests, retries, ...), for the manifest."""
        return {}


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
