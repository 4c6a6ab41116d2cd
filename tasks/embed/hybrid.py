"""Model vectors with the sample's own TF-IDF vectors beside them.

Sentence models blur rare, decisive words (part numbers, drug names, "PGP")
into their neighbours; TF-IDF keeps them. Appending the sample's TF-IDF-SVD
vectors, scaled by a weight, lets the clusterer use both: on the tutorial's
protocol EmbeddingGemma rose from .958 to .960 (train) and from .906 to .921
(test) with weight .5 (docs/models.md, "Quality"). This is the features stage
(``--tfidf-weight``); its Prefect task is :func:`features_task`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prefect import task

from tasks.embed._tfidf import TfidfEmbedder, TfidfState


def append_tfidf(
    vectors: np.ndarray, texts: Sequence[str], *, weight: float, dimensions: int = 256, seed: int = 0
) -> np.ndarray:
    """``vectors`` with ``weight`` times the unit-length TF-IDF-SVD vectors of ``texts`` appended.

    The TF-IDF vocabulary and SVD are fitted on ``texts`` (the sample), so the
    result depends on the sample and is never cached. ``weight`` 0 returns
    ``vectors`` unchanged. Returns float32 (len(texts), vectors' dimensions + k).
    """
    if len(vectors) != len(texts):
        raise ValueError(f"{len(vectors)} vectors for {len(texts)} texts")
    if weight == 0:
        return vectors
    tfidf = TfidfEmbedder(dimensions=dimensions, seed=seed).embed(texts)
    return weighted(vectors, tfidf, weight)


def append_fitted_tfidf(
    vectors: np.ndarray, texts: Sequence[str], state: TfidfState, *, weight: float
) -> np.ndarray:
    """:func:`append_tfidf` for texts that came after the fit: ``state`` embeds them (a living map's new posts)."""
    return weighted(vectors, state.transform(texts), weight) if weight else vectors


def weighted(vectors: np.ndarray, tfidf: np.ndarray, weight: float) -> np.ndarray:
    """``vectors`` with ``weight`` times ``tfidf`` beside them, float32."""
    return np.hstack([vectors, np.float32(weight) * tfidf]).astype(np.float32)


@task(name="features", task_run_name="features-tfidf-{weight}")
def features_task(
    vectors: np.ndarray, texts: list[str], *, weight: float, dimensions: int, seed: int
) -> np.ndarray:
    """Prefect task: :func:`append_tfidf`."""
    return append_tfidf(vectors, texts, weight=weight, dimensions=dimensions, seed=seed)
