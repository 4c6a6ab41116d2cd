"""HDBSCAN, on a UMAP projection as BERTopic does: finds k itself and may leave posts unassigned."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.cluster._base import CLUSTERERS, Clusterer
from tasks.errors import InputError
from tasks.layout import NOISE
from tasks.reduce import umap_class

if TYPE_CHECKING:
    from tasks.base import Settings

# BERTopic's neighbourhood for the UMAP projection HDBSCAN clusters.
UMAP_NEIGHBORS = 15


@CLUSTERERS.register
class HdbscanClusterer(Clusterer):
    """scikit-learn's HDBSCAN: finds the number of clusters itself and leaves outliers unassigned.

    As BERTopic does, it can cluster a UMAP projection to a few dimensions
    (``umap_dimensions``), where density is easier to find than in hundreds;
    with 0 it clusters the embeddings (unit length, so Euclidean ~ cosine).
    """

    name: ClassVar[str] = "hdbscan"
    needs_n_clusters: ClassVar[bool] = False
    chooses_k: ClassVar[bool] = False
    may_leave_noise: ClassVar[bool] = True

    def __init__(self, *, min_cluster_size: int = 15, umap_dimensions: int = 5, seed: int = 0) -> None:
        self.min_cluster_size = min_cluster_size
        self.umap_dimensions = umap_dimensions
        self.seed = seed

    @classmethod
    def from_settings(
        cls, settings: Settings, *, n_clusters: int | str | None, seed: int
    ) -> HdbscanClusterer:
        """Read ``min_cluster_size`` and ``hdbscan_umap_dimensions``; use the run's seed (for UMAP)."""
        if settings.hdbscan_umap_dimensions:
            umap_class()  # refused at the check step, before embedding, when umap-learn is missing
        return cls(
            min_cluster_size=settings.min_cluster_size,
            umap_dimensions=settings.hdbscan_umap_dimensions,
            seed=seed,
        )

    def check(self, n_samples: int) -> None:
        """There must be room for at least one cluster, and for UMAP's neighbourhood."""
        super().check(n_samples)
        if self.min_cluster_size > n_samples:
            raise InputError(
                f"The smallest HDBSCAN cluster ({self.min_cluster_size} posts) is larger than the sample "
                f"({n_samples}); pass a smaller --min-cluster-size or a larger sample."
            )
        if self.umap_dimensions and n_samples <= UMAP_NEIGHBORS:
            raise InputError(
                f"HDBSCAN on UMAP needs more than {UMAP_NEIGHBORS} posts; the sample has {n_samples}. "
                "Pass --hdbscan-umap-dimensions 0 or a larger sample."
            )

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Cluster (a UMAP projection of) ``vectors``; outliers get :data:`NOISE`."""
        from sklearn.cluster import HDBSCAN

        points = vectors
        if self.umap_dimensions:
            projection = umap_class()(
                n_components=self.umap_dimensions,
                n_neighbors=UMAP_NEIGHBORS,
                min_dist=0.0,
                metric="cosine",
                random_state=self.seed,
            )
            points = projection.fit_transform(vectors)
        labels = HDBSCAN(min_cluster_size=self.min_cluster_size, copy=True).fit_predict(points)
        return np.where(labels < 0, NOISE, labels).astype(np.int32)
