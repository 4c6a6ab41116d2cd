"""The embed stage: batches of texts fanned out as Prefect tasks, collected in order."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import tags, task
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.states import Cancelled, State

from tasks.embed._base import EMBEDDERS, Embedder, sum_counts, tallying
from tasks.embed._pacing import forget_shared
from tasks.embed.cache import EmbeddingCache, text_keys
from tasks.embed.plan import EmbedStart, record_throughput, run_cache_dir, start_embedding
from tasks.errors import is_transient
from tasks.execution import BatchRunner, batch_runner
from tasks.layout import RunLayout, write_embeddings
from tasks.progress import progress

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJob:
    """What a batch needs to find its embedder in whichever process runs it.

    ``key`` is unique per embed stage, so two stages in one process (a
    comparison flow) never share an embedder, its rate limiter or its counters.
    A batch running in another process (a Dask worker) builds the embedder there
    from ``settings`` the first time, and that job's later batches reuse it.
    With ``shared``, the batches may run in several processes, so each process's
    embedder keeps its service limits for the whole job, under :attr:`limits_name`.
    ``stopped`` is set by :meth:`stop`; it stays in this process (a copy sent to
    a Dask worker gets a flag of its own).
    """

    key: str
    settings: Settings
    seed: int
    shared: bool = False
    stopped: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def __getstate__(self) -> dict:
        return {name: value for name, value in self.__dict__.items() if name != "stopped"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, stopped=threading.Event())

    @property
    def limits_name(self) -> str:
        """The name of the job's shared limits in the Dask scheduler."""
        return f"newsgroups-embed-{self.key}"

    def embedder(self) -> tuple[Embedder, threading.BoundedSemaphore]:
        """The job's embedder in this process, and the slots bounding its batches in flight."""
        with _LIVE_LOCK:  # batches start together; build (load the model) once, not once per thread
            if self.key not in _LIVE:
                embedder = EMBEDDERS.get(self.settings.embedder).from_settings(self.settings, seed=self.seed)
                if self.shared:
                    embedder.share_limits(self.limits_name)
                _LIVE[self.key] = (embedder, threading.BoundedSemaphore(embedder.max_concurrency))
            return _LIVE[self.key]

    def adopt(self, embedder: Embedder) -> None:
        """Use ``embedder``, already built (by the plan), as this job's embedder in this process."""
        if self.shared:
            embedder.share_limits(self.limits_name)
        with _LIVE_LOCK:
            _LIVE[self.key] = (embedder, threading.BoundedSemaphore(embedder.max_concurrency))

    def stop(self) -> None:
        """Let none of this job's batches start from now on; those already embedding finish (and are cached)."""
        self.stopped.set()

    def release(self) -> None:
        """Drop this job's embedder from this process once its stage is done."""
        with _LIVE_LOCK:
            _LIVE.pop(self.key, None)


# Fewer texts than this measure start-up more than throughput: keep no figure from them.
MIN_TEXTS_TO_MEASURE = 64

_LIVE: dict[str, tuple[Embedder, threading.BoundedSemaphore]] = {}
_LIVE_LOCK = threading.Lock()


def new_job(settings: Settings, *, seed: int, shared: bool = False) -> EmbedJob:
    """A job for one embed stage, with a key of its own (``shared``: its batches run in several processes)."""
    return EmbedJob(uuid.uuid4().hex, settings, seed, shared)


def release_job(key: str) -> None:
    """Drop job ``key``'s embedder from this process (run in each Dask worker when the stage ends)."""
    with _LIVE_LOCK:
        _LIVE.pop(key, None)


def by_length(texts: Sequence[str], indices: np.ndarray) -> np.ndarray:
    """``indices`` ordered by their text's length, longest first (ties keep their order).

    Batches cut from this order hold texts of similar length, so a model pads
    little (it pads each batch to its longest text); longest first also makes
    the first batches' rate a cautious estimate. Characters stand for tokens:
    counting tokens would need the model's tokenizer in the flow's process.
    """
    lengths = np.fromiter((len(texts[i]) for i in indices), dtype=np.int64, count=len(indices))
    return np.asarray(indices)[np.argsort(-lengths, kind="stable")]


def plan_batches(n_texts: int, batch_size: int | None) -> list[tuple[int, int]]:
    """Split ``range(n_texts)`` into ``(start, stop)`` batches of ``batch_size`` (None: one batch).

    >>> plan_batches(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    size = batch_size or max(n_texts, 1)
    return [(start, min(start + size, n_texts)) for start in range(0, n_texts, size)]


class BatchNotStarted(Exception):
    """The job was stopped while this batch waited for a slot (see :meth:`EmbedJob.stop`)."""


def embed_batch(
    texts: Sequence[str], job: EmbedJob, *, cache: EmbeddingCache | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Embed one batch; returns float32 (len(texts), dimensions), checked for shape and NaN, and its counters.

    At most ``embedder.max_concurrency`` batches of one job run at once in a process.
    With a ``cache``, the batch's vectors are stored as soon as they are checked,
    so a run killed later loses none of them.
    """
    embedder, slots = job.embedder()
    with slots, tallying() as tally:
        if job.stopped.is_set():
            raise BatchNotStarted("The run was stopped before this batch started.")
        vectors = embedder.embed(texts)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise RuntimeError(
            f"The {embedder.name} embedder returned shape {vectors.shape} for {len(texts)} texts."
        )
    if not np.isfinite(vectors).all():
        raise RuntimeError(f"The {embedder.name} embedder returned NaN or infinite values.")
    vectors = vectors.astype(np.float32, copy=False)
    if cache is not None:
        cache.add(text_keys(texts), vectors)
    return vectors, dict(tally.counts)


@task(
    name="embed-batch",
    task_run_name="embed-{job.settings.embedder}-batch-{batch:05d}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=is_transient,
)
def embed_batch_task(
    texts: list[str], job: EmbedJob, *, batch: int, cache: EmbeddingCache | None
) -> tuple[np.ndarray, dict[str, float]] | State:
    """Prefect task: :func:`embed_batch`; failures other than permanent ones are retried."""
    try:
        return embed_batch(texts, job, cache=cache)
    except BatchNotStarted as stopped:
        # Shown as Cancelled in the UI, with no traceback: nothing went wrong in the batch.
        return Cancelled(message=str(stopped))


def embed_documents(
    doc_ids: list[str],
    texts: list[str],
    settings: Settings,
    *,
    seed: int,
    layout: RunLayout,
    cache_dir: Path | None = None,
    execution: Settings | None = None,
    start: EmbedStart | None = None,
) -> tuple[np.ndarray, dict]:
    """Embed ``texts`` as concurrent batch tasks and write ``embeddings.parquet``.

    Must run inside a flow. With a ``cache_dir`` (and ``settings.cache`` on, and
    a cacheable embedder) texts already in the cache are not embedded again,
    a text repeated in ``texts`` is embedded once, and each batch is stored as
    soon as it is done. Returns the vectors (n_texts, dimensions), in the order
    of ``texts``, and the embedder's description and counters, with ``cache``:
    ``{"dir", "hits", "misses", "embedded"}`` (None when the cache is off) and
    ``texts_per_second`` (measured on the texts embedded, and kept for the next plan).

    ``execution`` (a :class:`tasks.config.ExecutionSettings`; None: threads)
    says where the batches run; on Dask, workers write the cache themselves,
    each batch as its own part, so the cache folder must be one they can reach.
    ``start`` is the stage's first step (:func:`start_embedding` of the same
    texts and settings) when the run has planned already.
    """
    start = start or start_embedding(texts, settings, seed=seed, cache_dir=cache_dir)
    with batch_runner(execution) as runner:
        job = new_job(settings, seed=seed, shared=runner.shared)
        job.adopt(start.embedder)
        try:
            return _embed_job(doc_ids, texts, job, runner, start, layout=layout)
        finally:
            job.release()
            if runner.shared:
                runner.on_workers(release_job, job.key)
                forget_shared(job.limits_name, runner.client)


def _embed_job(
    doc_ids: list[str],
    texts: list[str],
    job: EmbedJob,
    runner: BatchRunner,
    start: EmbedStart,
    *,
    layout: RunLayout,
) -> tuple[np.ndarray, dict]:
    settings, embedder, store, lookup, cache_dir = (
        job.settings,
        start.embedder,
        start.store,
        start.lookup,
        start.cache_dir,
    )
    n_texts, todo = len(texts), by_length(texts, lookup.todo)
    batches = plan_batches(len(todo), settings.batch_size or embedder.default_batch_size)
    reused = n_texts - len(todo)
    if reused:
        get_run_logger().info(
            "embed: %d/%d texts need no embedding (in the cache or repeated)", reused, n_texts
        )
    started = time.monotonic()
    futures = {
        runner.submit(
            embed_batch_task,
            {"texts": [texts[i] for i in todo[start:stop]], "job": job, "batch": index, "cache": store},
        ): (start, stop)
        for index, (start, stop) in enumerate(batches)
    }
    parts: dict[int, np.ndarray] = {}
    counts: list[dict[str, float]] = []
    embedded, rate = 0, None
    description = f"Texts embedded ({settings.embedder}); {reused} of {n_texts} were in the cache or repeated"
    try:
        with progress("embed", n_texts, "texts", done=reused, description=description) as bar:
            for future in as_completed(list(futures)):
                start, stop = futures[future]
                parts[start], batch_counts = future.result()
                counts.append(batch_counts)
                bar.advance(stop - start)
                embedded += stop - start
                # Kept as it goes: a run stopped part-way (Ctrl-C ends the process at once) still
                # leaves the next plan this machine's figure.
                rate = _keep_throughput(cache_dir, embedder, embedded, time.monotonic() - started)
    except BaseException:
        # A batch failed, or the run is being stopped: a cancel from the UI is a SIGTERM to this
        # process, and the flow's task runner waits for every batch it started before the process
        # can exit. Batches waiting for a slot give up; those embedding finish and are cached.
        job.stop()
        raise
    computed = [parts[start] for start, _ in batches]
    vectors = _assemble(n_texts, lookup.found, lookup.cached, todo, computed, lookup.keys)
    write_embeddings(doc_ids, vectors, layout.embeddings)
    info = {**embedder.describe(), "dimensions": vectors.shape[1], **sum_counts(counts)}
    info["cache"] = (
        None
        if store is None
        else {
            "dir": str(store.folder.parent),
            "hits": int(lookup.found.sum()),
            "misses": int(n_texts - lookup.found.sum()),
            "embedded": len(todo),
        }
    )
    info["texts_per_second"] = None if rate is None else round(rate, 2)
    return vectors, info


def _keep_throughput(
    cache_dir: Path | None, embedder: Embedder, embedded: int, seconds: float
) -> float | None:
    """Texts per second so far; kept for the next plan once enough texts measure it."""
    rate = embedded / seconds if embedded and seconds > 0 else None
    if rate and cache_dir is not None and embedded >= MIN_TEXTS_TO_MEASURE:
        record_throughput(cache_dir, embedder, rate)
    return rate


def _assemble(
    n_texts: int,
    found: np.ndarray,
    cached: np.ndarray | None,
    todo: np.ndarray,
    computed: list[np.ndarray],
    keys: np.ndarray | None,
) -> np.ndarray:
    """Cached and computed vectors in text order; repeated texts take their first copy's vector."""
    blocks = [block for block in (cached, *computed) if block is not None and len(block)]
    vectors = np.empty((n_texts, blocks[0].shape[1]), dtype=np.float32)
    if cached is not None and len(cached):
        vectors[found] = cached
    if len(todo):
        vectors[todo] = np.concatenate(computed)
    rest = np.setdiff1d(np.flatnonzero(~found), todo)
    if len(rest):
        row = {key: index for key, index in zip(keys[todo].tolist(), todo.tolist(), strict=True)}
        vectors[rest] = vectors[[row[key] for key in keys[rest].tolist()]]
    return vectors


def embed_sample(
    sample: pd.DataFrame, settings: Settings, start: EmbedStart | None = None, *, layout: RunLayout
) -> tuple[np.ndarray, dict]:
    """:func:`embed_documents` for a run: the sample's texts with the run's embedding settings and seed.

    ``settings`` is the run's :class:`tasks.config.RunSettings`; ``start`` its
    :func:`~tasks.embed.plan.plan_sample` (None: made here). Batch tasks are tagged ``embedder-<name>``, so a tag
    concurrency limit can throttle one embedder.
    """
    embedding = settings.embedding
    with tags(f"embedder-{embedding.embedder}"):
        return embed_documents(
            sample["doc_id"].tolist(),
            sample["text"].tolist(),
            embedding,
            seed=settings.seed,
            layout=layout,
            cache_dir=run_cache_dir(settings),
            execution=settings.execution,
            start=start,
        )
