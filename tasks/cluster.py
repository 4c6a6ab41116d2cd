"""Clusterers: embeddings (n, d) -> integer cluster labels (n,)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from prefect import task

from tasks.errors import InputError
from tasks.layout import CLUSTERS_SCHEMA, RunLayout, write_table
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.config import ClusterSettings

CLUSTERERS: Registry[Clusterer] = Registry("clusterer")


class Clusterer(ABC):
    """Assigns each vector a cluster; sklearn's ``fit_predict`` convention."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: ClusterSettings, *, n_clusters: int, seed: int) -> Clusterer:
        """Build the clusterer; ``n_clusters`` is already resolved from "auto"."""

    @abstractmethod
    def check(self, n_samples: int) -> None:
        """Raise :class:`InputError` if ``n_samples`` points cannot be clustered so."""

    @abstractmethod
    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Cluster ``vectors`` (n, d); returns int32 labels (n,)."""


@CLUSTERERS.register
class KMeansClusterer(Clusterer):
    """scikit-learn KMeans (k-means++, ``n_init`` restarts, fixed seed)."""

    name: ClassVar[str] = "kmeans"

    def __init__(self, *, n_clusters: int, n_init: int = 10, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: ClusterSettings, *, n_clusters: int, seed: int) -> KMeansClusterer:
        """Read ``n_init``; use the resolved k and the run's seed."""
        return cls(n_clusters=n_clusters, n_init=settings.n_init, seed=seed)

    def check(self, n_samples: int) -> None:
        """K must not exceed the number of points."""
        if self.n_clusters > n_samples:
            raise InputError(
                f"The number of clusters ({self.n_clusters}) must not exceed the number of "
                f"posts ({n_samples}); pass a smaller --n-clusters or a larger sample."
            )

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Run KMeans and return its labels."""
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=self.n_clusters, n_init=self.n_init, random_state=self.seed)
        return model.fit_predict(vectors).astype(np.int32)


def resolve_n_clusters(settings: ClusterSettings, n_classes: int) -> int:
    """The k to use: ``settings.n_clusters``, or the number of classes when it is None."""
    if settings.n_clusters is not None:
        return settings.n_clusters
    if n_classes < 2:
        raise InputError(
            "The number of clusters cannot be taken from the labels (the sample has "
            f"{n_classes} class); pass --n-clusters."
        )
    return n_classes


def build_clusterer(settings: ClusterSettings, *, n_classes: int, seed: int) -> Clusterer:
    """The configured clusterer with k resolved (see :func:`resolve_n_clusters`)."""
    n_clusters = resolve_n_clusters(settings, n_classes)
    return CLUSTERERS.get(settings.clusterer).from_settings(settings, n_clusters=n_clusters, seed=seed)


def cluster_embeddings(doc_ids: list[str], vectors: np.ndarray, clusterer: Clusterer) -> pd.DataFrame:
    """Cluster ``vectors``; returns a frame with ``doc_id`` and ``cluster``."""
    clusterer.check(len(vectors))
    return pd.DataFrame({"doc_id": doc_ids, "cluster": clusterer.fit_predict(vectors)})


@task(name="cluster", task_run_name="cluster-{clusterer.name}")
def cluster_task(
    doc_ids: list[str], vectors: np.ndarray, clusterer: Clusterer, *, layout: RunLayout
) -> pd.DataFrame:
    """Prefect task: :func:`cluster_embeddings`, persisted to ``clusters.parquet``."""
    frame = cluster_embeddings(doc_ids, vectors, clusterer)
    write_table(frame, layout.clusters, CLUSTERS_SCHEMA)
    return frame
