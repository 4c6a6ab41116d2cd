"""Clusterers: embeddings (n, d) -> integer cluster labels (n,)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from prefect import task

from tasks.errors import InputError
from tasks.layout import CLUSTERS_SCHEMA, NOISE, RunLayout, write_table
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

CLUSTERERS: Registry[Clusterer] = Registry(
    "clusterer", declares={"needs_n_clusters": bool, "may_leave_noise": bool}
)


class Clusterer(ABC):
    """Assigns each vector a cluster; sklearn's ``fit_predict`` convention.

    Attributes
    ----------
    name : str
        Registry name, used on the command line (``--clusterer NAME``).
    needs_n_clusters : bool
        Whether it must be told how many clusters to make (KMeans) or finds
        that number itself (HDBSCAN). When it does, ``from_settings`` gets the
        resolved ``n_clusters``; otherwise ``n_clusters`` is None.
    may_leave_noise : bool
        Whether some points may stay unassigned, labelled :data:`NOISE` (-1).
        Evaluation, plots and maps share that convention.
    """

    name: ClassVar[str]
    needs_n_clusters: ClassVar[bool]
    may_leave_noise: ClassVar[bool]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, n_clusters: int | None, seed: int) -> Clusterer:
        """Build the clusterer; ``n_clusters`` is resolved (None when it does not need one)."""

    def check(self, n_samples: int) -> None:
        """Raise :class:`InputError` if ``n_samples`` points cannot be clustered so."""
        if n_samples < 2:
            raise InputError(f"Clustering needs at least 2 posts; the sample has {n_samples}.")

    @abstractmethod
    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Cluster ``vectors`` (n, d); returns int32 labels (n,), :data:`NOISE` for unassigned."""


@CLUSTERERS.register
class KMeansClusterer(Clusterer):
    """scikit-learn KMeans (k-means++, ``n_init`` restarts, fixed seed)."""

    name: ClassVar[str] = "kmeans"
    needs_n_clusters: ClassVar[bool] = True
    may_leave_noise: ClassVar[bool] = False

    def __init__(self, *, n_clusters: int, n_init: int = 10, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, n_clusters: int | None, seed: int) -> KMeansClusterer:
        """Read ``n_init``; use the resolved k and the run's seed."""
        return cls(n_clusters=n_clusters, n_init=settings.n_init, seed=seed)

    def check(self, n_samples: int) -> None:
        """K must not exceed the number of points."""
        super().check(n_samples)
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


def resolve_n_clusters(settings: Settings, n_classes: int) -> int:
    """The k to use: ``settings.n_clusters``, or the number of classes when it is None."""
    if settings.n_clusters is not None:
        return settings.n_clusters
    if n_classes < 2:
        raise InputError(
            "The number of clusters cannot be taken from the labels (the sample has "
            f"{n_classes} class); pass --n-clusters."
        )
    return n_classes


def build_clusterer(settings: Settings, *, n_classes: int, seed: int) -> Clusterer:
    """The configured clusterer, with k resolved (see :func:`resolve_n_clusters`) if it needs one."""
    cls = CLUSTERERS.get(settings.clusterer)
    n_clusters = resolve_n_clusters(settings, n_classes) if cls.needs_n_clusters else None
    return cls.from_settings(settings, n_clusters=n_clusters, seed=seed)


def cluster_embeddings(doc_ids: list[str], vectors: np.ndarray, clusterer: Clusterer) -> pd.DataFrame:
    """Cluster ``vectors``; returns a frame with ``doc_id`` and ``cluster``."""
    clusterer.check(len(vectors))
    labels = np.asarray(clusterer.fit_predict(vectors), dtype=np.int32)
    if labels.shape != (len(vectors),):
        raise RuntimeError(
            f"The {clusterer.name} clusterer returned {labels.shape} labels for {len(vectors)} posts."
        )
    lowest = NOISE if clusterer.may_leave_noise else 0
    if len(labels) and labels.min() < lowest:
        raise RuntimeError(
            f"The {clusterer.name} clusterer returned label {labels.min()}; the lowest allowed is {lowest}."
        )
    return pd.DataFrame({"doc_id": doc_ids, "cluster": labels})


@task(name="cluster", task_run_name="cluster-{clusterer.name}")
def cluster_task(
    sample: pd.DataFrame, vectors: np.ndarray, clusterer: Clusterer, *, layout: RunLayout
) -> np.ndarray:
    """Prefect task: :func:`cluster_embeddings` on the sample, persisted to ``clusters.parquet``.

    Returns the labels (n,), in the sample's order.
    """
    frame = cluster_embeddings(sample["doc_id"].tolist(), vectors, clusterer)
    write_table(frame, layout.clusters, CLUSTERS_SCHEMA)
    return frame["cluster"].to_numpy()
