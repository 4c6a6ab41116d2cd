"""Reducers: embeddings (n, d) -> a 2-D map (n, 2)."""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from tasks.errors import InputError, MissingDependencyError
from tasks.progress import advance_to, progress
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

REDUCERS: Registry[Reducer] = Registry("reducer", declares={"label": str, "package": str})
MAP_CACHE_DIR = ".map-cache"
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
    package : str
        The distribution that computes the map; its version is part of a
        stored map's key, as an upgrade may change the map.

    A reducer's settings are its instance attributes (also part of the key).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    package: ClassVar[str]

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
    package: ClassVar[str] = "openTSNE"

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
    package: ClassVar[str] = "scikit-learn"

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
    package: ClassVar[str] = "umap-learn"

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


def default_map_cache_dir(output_dir: Path) -> Path:
    """The stored maps used when none is given: ``<output_dir>/.map-cache``, beside the run folders."""
    return Path(output_dir) / MAP_CACHE_DIR


def map_key(vectors: np.ndarray, reducer: Reducer) -> str:
    """What a map depends on, hashed: the vectors, the reducer, its settings and its package's version."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.sha256(repr(vectors.shape).encode())
    digest.update(vectors.data)
    settings = {"reducer": reducer.name, "version": version(reducer.package), **vars(reducer)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def map_embeddings(
    doc_ids: list[str], vectors: np.ndarray, reducer: Reducer, *, cache_dir: Path | None = None
) -> pd.DataFrame:
    """Map ``vectors`` (n, d) to 2-D with ``reducer``.

    With a ``cache_dir``, a map made before from the same vectors by the same
    reducer and settings is read back instead of computed (t-SNE takes minutes
    on a whole corpus, so a run that changes only the clustering need not wait
    again), and a new map is stored there. Returns a frame with columns
    ``doc_id``, ``x``, ``y`` in the order of ``doc_ids``.
    """
    reducer.check(len(vectors))
    stored = None if cache_dir is None else Path(cache_dir) / f"{map_key(vectors, reducer)}.npy"
    coords = _read_map(stored, len(vectors))
    if coords is None:
        coords = reducer.fit_transform(vectors)
        if stored is not None:
            _store_map(coords, stored)
    else:
        log.info(
            "map: the %s map of these vectors and settings was made before; reusing %s", reducer.label, stored
        )
    return pd.DataFrame({"doc_id": doc_ids, "x": coords[:, 0], "y": coords[:, 1]})


def _read_map(path: Path | None, n_points: int) -> np.ndarray | None:
    """The stored map at ``path``, or None when there is none (or it is not a whole map)."""
    if path is None or not path.exists():
        return None
    try:
        coords = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        log.warning("map: cannot read the stored map %s (%s); computing it again", path, error)
        return None
    return coords if coords.shape == (n_points, 2) and coords.dtype == np.float32 else None


def _store_map(coords: np.ndarray, path: Path) -> None:
    """Keep ``coords`` for later runs; a store that cannot be written costs only the reuse."""
    from tasks.layout import atomic_path  # pyarrow with it: not on the command line's refusal path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, tmp.open("wb") as file:
            np.save(file, coords, allow_pickle=False)
    except OSError as error:  # an OutputError too
        log.warning("map: could not keep the map in %s (%s); a later run will compute it again", path, error)
