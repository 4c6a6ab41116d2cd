"""Reducers: embeddings (n, d) -> a 2-D map (n, 2)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from tasks.errors import InputError, MissingDependencyError
from tasks.progress import advance_to, progress
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

REDUCERS: Registry[Reducer] = Registry("reducer", declares={"label": str})
# openTSNE's (and the tutorial's scikit-learn's) early exaggeration phase.
EARLY_EXAGGERATION_ITERATIONS = 250
# Each report makes openTSNE evaluate the KL divergence, so not every iteration.
PROGRESS_EVERY = 50


class Reducer(ABC):
    """Maps vectors to 2-D; sklearn's ``fit_transform`` convention.

    Attributes
    ----------
    name : str
        Registry name, used on the command line (``--reducer NAME``).
    label : str
        Display name, for plot axes and titles ("t-SNE").
    """

    name: ClassVar[str]
    label: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> Reducer:
        """Build the reducer from the run's map settings."""

    def check(self, n_samples: int) -> None:
        """Raise :class:`InputError` if ``n_samples`` points cannot be mapped."""
        if n_samples < 3:
            raise InputError(f"A map needs at least 3 posts; the sample has {n_samples}.")

    @abstractmethod
    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Map ``vectors`` (n, d) to float32 (n, 2)."""


@REDUCERS.register
class TsneReducer(Reducer):
    """openTSNE with PCA initialisation and a fixed seed, on one thread.

    openTSNE picks Barnes-Hut gradients below 10,000 points and FFT-accelerated
    ones above; benchmarks/tsne_implementations.py measured that choice against
    scikit-learn's TSNE (the tutorial's). One thread keeps the map identical on
    every machine: openTSNE's result changes with its thread count.
    """

    name: ClassVar[str] = "tsne"
    label: ClassVar[str] = "t-SNE"

    def __init__(self, *, perplexity: float = 30.0, n_iter: int = 750, seed: int = 0) -> None:
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> TsneReducer:
        """Read perplexity and iterations; use the run's seed."""
        return cls(perplexity=settings.perplexity, n_iter=settings.tsne_iterations, seed=seed)

    def check(self, n_samples: int) -> None:
        """Perplexity must be below the number of points."""
        super().check(n_samples)
        if self.perplexity >= n_samples:
            raise InputError(
                f"The t-SNE perplexity ({self.perplexity:g}) must be less than the number of "
                f"posts ({n_samples}); pass a smaller --perplexity or a larger sample."
            )

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Run early exaggeration (250 iterations) then ``n_iter`` more, logging progress."""
        from openTSNE import TSNE

        total = EARLY_EXAGGERATION_ITERATIONS + self.n_iter
        calls = [0]

        def report(iteration: int, error: float, embedding: np.ndarray) -> None:
            # Both phases number their iterations from 1, so count calls instead.
            calls[0] += 1
            advance_to(calls[0] * PROGRESS_EVERY)

        model = TSNE(
            n_components=2,
            perplexity=self.perplexity,
            n_iter=self.n_iter,
            early_exaggeration_iter=EARLY_EXAGGERATION_ITERATIONS,
            initialization="pca",
            negative_gradient_method="auto",
            random_state=self.seed,
            n_jobs=1,
            callbacks=report,
            callbacks_every_iters=PROGRESS_EVERY,
        )
        with progress("map", total, "t-SNE iterations", description="t-SNE iterations done"):
            embedding = model.fit(vectors)
            advance_to(total)
        log.info("map: t-SNE KL divergence %.3f", embedding.kl_divergence)
        return np.asarray(embedding, dtype=np.float32)


@REDUCERS.register
class PcaReducer(Reducer):
    """The first two principal components: instant, linear, deterministic."""

    name: ClassVar[str] = "pca"
    label: ClassVar[str] = "PCA"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> PcaReducer:
        """PCA has no options beyond the seed."""
        return cls(seed=seed)

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Project ``vectors`` on their first two principal components."""
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=self.seed).fit_transform(vectors).astype(np.float32)


UMAP_INSTALL = "UMAP needs umap-learn; install it with: pip install 'umap-learn>=0.5.12' (or the project's [umap] extra)."


def umap_class() -> type:
    """``umap.UMAP``, or a :class:`MissingDependencyError` that says how to install it."""
    try:
        from umap import UMAP
    except ImportError as error:
        raise MissingDependencyError(UMAP_INSTALL) from error
    return UMAP


@REDUCERS.register
class UmapReducer(Reducer):
    """umap-learn with the cosine metric and a fixed seed (which makes it single-threaded and repeatable).

    UMAP keeps more of the global layout than t-SNE (clusters that are near in
    the embedding stay near on the map) and scales to large corpora.
    """

    name: ClassVar[str] = "umap"
    label: ClassVar[str] = "UMAP"

    def __init__(self, *, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> UmapReducer:
        """Read ``umap_neighbors`` and ``umap_min_dist``; use the run's seed."""
        umap_class()  # a missing package is refused at the check step, before embedding
        return cls(n_neighbors=settings.umap_neighbors, min_dist=settings.umap_min_dist, seed=seed)

    def check(self, n_samples: int) -> None:
        """The neighbourhood must be smaller than the sample."""
        super().check(n_samples)
        if self.n_neighbors >= n_samples:
            raise InputError(
                f"The UMAP neighbourhood ({self.n_neighbors}) must be less than the number of posts "
                f"({n_samples}); pass a smaller --umap-neighbors or a larger sample."
            )

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Embed ``vectors`` in 2-D with UMAP."""
        model = umap_class()(
            n_components=2,
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            metric="cosine",
            random_state=self.seed,
        )
        return np.asarray(model.fit_transform(vectors), dtype=np.float32)


def build_reducer(settings: Settings, *, seed: int) -> Reducer:
    """The reducer ``settings.reducer`` names, built from the map settings and the run's seed."""
    return REDUCERS.get(settings.reducer).from_settings(settings, seed=seed)


def map_embeddings(doc_ids: list[str], vectors: np.ndarray, reducer: Reducer) -> pd.DataFrame:
    """Map ``vectors`` (n, d) to 2-D with ``reducer``.

    Returns a frame with columns ``doc_id``, ``x``, ``y`` in the order of ``doc_ids``.
    """
    reducer.check(len(vectors))
    coords = reducer.fit_transform(vectors)
    return pd.DataFrame({"doc_id": doc_ids, "x": coords[:, 0], "y": coords[:, 1]})
