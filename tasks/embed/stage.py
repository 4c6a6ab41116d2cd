"""The embed stage: batches of texts fanned out as Prefect tasks, collected in order."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from tasks.embed._base import EMBEDDERS, Embedder
from tasks.errors import PipelineError
from tasks.layout import RunLayout, write_embeddings

if TYPE_CHECKING:
    from tasks.config import EmbeddingSettings

log = logging.getLogger(__name__)


_build_lock = threading.Lock()


def get_embedder(settings: EmbeddingSettings, seed: int) -> Embedder:
    """The embedder for ``settings``, built once per process and shared by its batch tasks."""
    with _build_lock:  # batch tasks start together; load the model once, not once per thread
        return _build_embedder(settings, seed)


@cache
def _build_embedder(settings: EmbeddingSettings, seed: int) -> Embedder:
    return EMBEDDERS.get(settings.embedder).from_settings(settings, seed=seed)


@cache
def _slots(name: str, limit: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(limit)


def plan_batches(n_texts: int, batch_size: int | None) -> list[tuple[int, int]]:
    """Split ``range(n_texts)`` into ``(start, stop)`` batches of ``batch_size`` (None: one batch).

    >>> plan_batches(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    size = batch_size or max(n_texts, 1)
    return [(start, min(start + size, n_texts)) for start in range(0, n_texts, size)]


def embed_batch(texts: Sequence[str], settings: EmbeddingSettings, *, seed: int) -> np.ndarray:
    """Embed one batch; returns float32 (len(texts), dimensions), checked for shape and NaN.

    At most ``embedder.max_concurrency`` batches of one embedder run at once in a process.
    """
    embedder = get_embedder(settings, seed)
    with _slots(embedder.name, embedder.max_concurrency):
        vectors = embedder.embed(texts)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise RuntimeError(
            f"The {embedder.name} embedder returned shape {vectors.shape} for {len(texts)} texts."
        )
    if not np.isfinite(vectors).all():
        raise RuntimeError(f"The {embedder.name} embedder returned NaN or infinite values.")
    return vectors.astype(np.float32, copy=False)


def _retry_unless_permanent(task, task_run, state) -> bool:
    return not isinstance(state.result(raise_on_failure=False), PipelineError)


@task(
    name="embed-batch",
    task_run_name="embed-{settings.embedder}-batch-{batch:05d}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_permanent,
)
def embed_batch_task(texts: list[str], settings: EmbeddingSettings, *, seed: int, batch: int) -> np.ndarray:
    """Prefect task: :func:`embed_batch`; failures other than permanent ones are retried."""
    return embed_batch(texts, settings, seed=seed)


class Progress:
    """Logs embedded/total with rate and ETA, and mirrors it in a Prefect progress artifact."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.logger = get_run_logger()
        self.artifact_id = create_progress_artifact(
            progress=0.0, key="embed-progress", description=f"Texts embedded ({what})"
        )

    def advance(self, count: int) -> None:
        """Record ``count`` more texts embedded."""
        self.done += count
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed else float("inf")
        eta = (self.total - self.done) / rate if rate else float("nan")
        self.logger.info(
            "embed: %d/%d texts (%.0f%%), %.1f texts/s, about %.0f s left",
            self.done,
            self.total,
            100 * self.done / self.total,
            rate,
            eta,
        )
        update_progress_artifact(self.artifact_id, progress=100.0 * self.done / self.total)


def embed_documents(
    doc_ids: list[str], texts: list[str], settings: EmbeddingSettings, *, seed: int, layout: RunLayout
) -> tuple[np.ndarray, dict]:
    """Embed ``texts`` as concurrent batch tasks and write ``embeddings.parquet``.

    Must run inside a flow. Returns the vectors (n_texts, dimensions), in the
    order of ``texts``, and the embedder's description and counters.
    """
    _build_embedder.cache_clear()  # each run gets a fresh embedder: its own counters, key and state
    embedder_cls = EMBEDDERS.get(settings.embedder)
    batches = plan_batches(len(texts), settings.batch_size or embedder_cls.default_batch_size)
    progress = Progress(len(texts), settings.embedder)
    futures = {
        embed_batch_task.submit(texts[start:stop], settings, seed=seed, batch=index): (start, stop)
        for index, (start, stop) in enumerate(batches)
    }
    parts: dict[int, np.ndarray] = {}
    for future in as_completed(list(futures)):
        start, stop = futures[future]
        parts[start] = future.result()
        progress.advance(stop - start)
    vectors = np.concatenate([parts[start] for start, _ in batches])
    write_embeddings(doc_ids, vectors, layout.embeddings)
    embedder = get_embedder(settings, seed)
    return vectors, {**embedder.describe(), "dimensions": vectors.shape[1], **embedder.stats()}
