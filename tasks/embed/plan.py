"""The first step of an embed stage, and what the rest will do: texts to embed, tokens, requests, minutes, dollars.

:func:`start_embedding` builds the embedder, opens its cache and looks the
texts up, once per stage; the embedding (``tasks/embed/stage.py``) goes on
from what it found.

``--plan`` prints this and stops; every run logs it first and its manifest
keeps the estimate beside what happened. Local throughput comes from what
this machine measured on earlier runs (kept beside the embedding cache), else
from the embedder's typical figure.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.embed._base import EMBEDDERS, Embedder
from tasks.embed.cache import EmbeddingCache, default_cache_dir, text_keys
from tasks.layout import write_json
from tasks.logs import run_logger

if TYPE_CHECKING:
    import pandas as pd

    from tasks.base import Settings

log = logging.getLogger(__name__)

THROUGHPUT_FILE = "throughput.json"
CHARS_PER_TOKEN = 4  # the rule of thumb the Gemini embedder paces by


@dataclass(frozen=True)
class Lookup:
    """Which texts need embedding.

    ``found`` (n,) marks texts in the cache, whose vectors are ``cached``;
    ``todo`` indexes the first copy of each text not found; ``keys`` are the
    texts' content keys (None without a cache).
    """

    found: np.ndarray
    cached: np.ndarray | None
    todo: np.ndarray
    keys: np.ndarray | None


def look_up(texts: list[str], store: EmbeddingCache | None) -> Lookup:
    """Split ``texts`` into those the cache holds and the first copy of each one it does not."""
    n_texts = len(texts)
    if store is None:
        return Lookup(np.zeros(n_texts, dtype=bool), None, np.arange(n_texts), None)
    keys = text_keys(texts)
    found, cached = store.lookup(keys)
    misses = np.flatnonzero(~found)
    _, first = np.unique(keys[misses], return_index=True)
    return Lookup(found, cached, misses[np.sort(first)], keys)


@dataclass(frozen=True)
class EmbeddingPlan:
    """The estimate of one embed stage.

    Attributes
    ----------
    embedder, model : str
    texts, in_cache, repeated, to_embed : int
        Texts in the sample, found in the cache, repeats of another text, and left to embed.
    estimated_tokens : int
        Input tokens of the texts to embed, estimated as characters / 4.
    requests : int
        Requests (remote embedders) or batches (local) the texts to embed take.
    texts_per_second : float or None
        The throughput the estimate assumes; ``throughput_source`` says where it comes from.
    estimated_minutes : float or None
    estimated_cost_usd : float or None
        Remote embedders that charge by the token only.
    """

    embedder: str
    model: str
    texts: int
    in_cache: int
    repeated: int
    to_embed: int
    estimated_tokens: int
    requests: int
    texts_per_second: float | None
    throughput_source: str
    estimated_minutes: float | None
    estimated_cost_usd: float | None

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain values, for the manifest."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the log and the terminal."""
        minutes = (
            "time unknown" if self.estimated_minutes is None else f"about {self.estimated_minutes:.1f} min"
        )
        if self.to_embed and self.estimated_minutes is not None and self.texts_per_second is not None:
            # A typical figure may be far from this machine's; a run here replaces it with its own.
            minutes += f" at {self.texts_per_second:g} texts/s ({self.throughput_source})"
        cost = "" if self.estimated_cost_usd is None else f", about ${self.estimated_cost_usd:.4f}"
        units = ("batch", "batches") if self.estimated_cost_usd is None else ("request", "requests")
        return (
            f"plan: {self.texts} texts, {self.in_cache} in the cache, {self.repeated} repeated, "
            f"{self.to_embed} to embed with {self.model} (~{self.estimated_tokens:,} tokens, "
            f"{self.requests} {units[self.requests != 1]}), "
            f"{minutes}{cost}"
        )


def estimate_tokens(texts: list[str]) -> int:
    """Input tokens, estimated as characters / 4 per text (Google's rule of thumb)."""
    return sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts)


def plan_embedding(
    texts: list[str],
    embedder: Embedder,
    lookup: Lookup,
    *,
    batch_size: int | None,
    throughput_dir: Path | None,
) -> EmbeddingPlan:
    """Estimate what embedding ``texts`` will take, given what ``lookup`` found in the cache."""
    todo = [texts[i][: embedder.max_input_chars] for i in lookup.todo]
    tokens = estimate_tokens(todo)
    size = batch_size or embedder.default_batch_size or max(len(todo), 1)
    requests = math.ceil(len(todo) / size) if todo else 0
    measured = read_throughput(throughput_dir, embedder) if throughput_dir else None
    rate = measured or embedder.typical_texts_per_second
    estimate = embedder.estimate(len(todo), tokens, requests, texts_per_second=rate)
    return EmbeddingPlan(
        embedder=embedder.name,
        model=str(embedder.describe().get("model", embedder.name)),
        texts=len(texts),
        in_cache=int(lookup.found.sum()),
        repeated=len(texts) - int(lookup.found.sum()) - len(todo),
        to_embed=len(todo),
        estimated_tokens=tokens,
        requests=requests,
        texts_per_second=None if rate is None else round(rate, 2),
        throughput_source="measured here" if measured else "typical figure" if rate else "none",
        estimated_minutes=None if estimate.seconds is None else round(estimate.seconds / 60, 2),
        estimated_cost_usd=estimate.cost_usd,
    )


def _identity(embedder: Embedder) -> str:
    return json.dumps(embedder.describe(), sort_keys=True) + "@" + platform.node()


def read_throughput(folder: Path, embedder: Embedder) -> float | None:
    """Texts per second this machine measured for this embedder, if an earlier run recorded it."""
    try:
        return float(json.loads((folder / THROUGHPUT_FILE).read_text())[_identity(embedder)])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_throughput(folder: Path, embedder: Embedder, texts_per_second: float) -> None:
    """Keep the measured throughput for the next plan; a folder that cannot be written is skipped."""
    path = folder / THROUGHPUT_FILE
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        known[_identity(embedder)] = round(texts_per_second, 3)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(known, path)
    except (OSError, ValueError):
        pass  # a better estimate next time is not worth failing a finished embedding for


def _open_cache(embedder: Embedder, settings: Settings, cache_dir: Path | None) -> EmbeddingCache | None:
    logger = run_logger(log)
    if cache_dir is None or not settings.cache:
        logger.info("embed: cache off")
        return None
    if not embedder.cacheable:
        logger.info("embed: the %s embedder is fitted on the corpus, so it is never cached", embedder.name)
        return None
    store = EmbeddingCache.open(cache_dir, embedder.describe())
    if store is not None:
        logger.info("embed: cache %s", store.folder)
    return store


@dataclass(frozen=True)
class EmbedStart:
    """The first step of an embed stage, done once: the embedder, the cache, what it holds, the plan.

    Attributes
    ----------
    embedder : Embedder
        Built once per stage (a remote embedder's key is resolved here).
    store : EmbeddingCache or None
        The cache of this embedder (None: off, or an embedder fitted on the corpus).
    lookup : Lookup
        Which texts the cache holds and which are left to embed.
    plan : EmbeddingPlan
        What embedding the rest will take.
    cache_dir : Path or None
        The cache folder, where the measured throughput is kept too.
    """

    embedder: Embedder
    store: EmbeddingCache | None
    lookup: Lookup
    plan: EmbeddingPlan
    cache_dir: Path | None


def start_embedding(
    texts: list[str],
    settings: Settings,
    *,
    seed: int,
    cache_dir: Path | None,
    resolved: dict[str, Any] | None = None,
) -> EmbedStart:
    """Build the embedder, open its cache, look ``texts`` up and plan the rest; embeds nothing.

    ``settings`` is a :class:`tasks.config.EmbeddingSettings`; ``resolved`` what
    the embedder's ``check_ready`` returned for them (its API key), if the run checked.
    """
    embedder = EMBEDDERS.get(settings.embedder).from_settings(settings, seed=seed, **(resolved or {}))
    store = _open_cache(embedder, settings, cache_dir)
    lookup = look_up(texts, store)
    plan = plan_embedding(texts, embedder, lookup, batch_size=settings.batch_size, throughput_dir=cache_dir)
    return EmbedStart(embedder, store, lookup, plan, cache_dir)


def run_cache_dir(settings: Settings) -> Path:
    """The run's embedding cache folder (default ``<output_dir>/.embedding-cache``), absolute.

    Absolute, because Dask workers write the cache and need not share the flow's working folder.
    """
    embedding = settings.embedding
    return (embedding.cache_dir or default_cache_dir(settings.output.output_dir)).absolute()


def plan_sample(sample: pd.DataFrame, settings: Settings, resolved: dict[str, Any]) -> EmbedStart:
    """The first step of the run's embed stage for ``sample``, logged: embedder, cache, lookup and plan.

    ``settings`` is the run's :class:`tasks.config.RunSettings`; ``resolved`` what
    :func:`tasks.check.check_settings` returned for them.
    """
    start = start_embedding(
        sample["text"].tolist(),
        settings.embedding,
        seed=settings.seed,
        cache_dir=run_cache_dir(settings),
        resolved=resolved,
    )
    run_logger(log).info("embed: %s", start.plan.summary())
    return start
