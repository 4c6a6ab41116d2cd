"""The clusterer interface and its registry: embeddings (n, d) -> integer cluster labels (n,)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.errors import InputError
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

CLUSTERERS: Registry[Clusterer] = Registry(
    "clusterer", declares={"needs_n_clusters": bool, "may_leave_noise": bool, "chooses_k": bool}
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
    chooses_k : bool
        Whether it takes ``--n-clusters auto`` (choosing k by silhouette).
        :class:`tasks.config.ClusterSettings` refuses "auto" for the others.
    may_leave_noise : bool
        Whether some points may stay unassigned, labelled :data:`~tasks.layout.NOISE` (-1).
        Evaluation, plots and maps share that convention.
    """

    name: ClassVar[str]
    needs_n_clusters: ClassVar[bool]
    chooses_k: ClassVar[bool]
    may_leave_noise: ClassVar[bool]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, n_clusters: int | str | None, seed: int) -> Clusterer:
        """Build the clusterer; ``n_clusters`` is resolved (None when it does not need one)."""

    def check(self, n_samples: int) -> None:
        """Raise :class:`InputError` if ``n_samples`` points cannot be clustered so."""
        if n_samples < 2:
            raise InputError(f"Clustering needs at least 2 posts; the sample has {n_samples}.")

    @abstractmethod
    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Cluster ``vectors`` (n, d); returns int32 labels (n,), :data:`~tasks.layout.NOISE` for unassigned."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records of the clustering once it has run (resolved values included)."""
        return {"clusterer": self.name}

    def fitted(self) -> dict[str, np.ndarray]:
        """The fitted model as plain arrays, for :func:`predict` to assign new posts (empty: none)."""
        return {}


AUTO = "auto"


def check_n_clusters(n_clusters: int, n_samples: int) -> None:
    """Refuse more clusters than posts, naming both numbers and the fix."""
    if n_clusters > n_samples:
        raise InputError(
            f"The number of clusters ({n_clusters}) must not exceed the number of "
            f"posts ({n_samples}); pass a smaller --n-clusters or a larger sample."
        )


def resolve_n_clusters(settings: Settings, n_classes: int) -> int | str:
    """The k to use: ``settings.n_clusters`` (a number or "auto"), or the number of classes when it is None."""
    if settings.n_clusters is not None:
        return settings.n_clusters
    if n_classes < 2:
        raise InputError(
            "The number of clusters cannot be taken from the labels (the sample has "
            f"{n_classes} class); pass --n-clusters with a number, or --n-clusters auto."
        )
    return n_classes


def build_clusterer(settings: Settings, *, n_classes: int, seed: int) -> Clusterer:
    """The configured clusterer, with k resolved (see :func:`resolve_n_clusters`) if it needs one."""
    cls = CLUSTERERS.get(settings.clusterer)
    n_clusters = resolve_n_clusters(settings, n_classes) if cls.needs_n_clusters else None
    return cls.from_settings(settings, n_clusters=n_clusters, seed=seed)


def predict(kind: str, fitted: dict[str, np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """Assign ``vectors`` (n, d) to the clusters of a fitted ``kind`` ("kmeans" or "gmm") model.

    ``fitted`` is that clusterer's :meth:`Clusterer.fitted`: KMeans takes the
    nearest centre, the mixture its likeliest component, as their ``predict`` does.
    """
    if kind == "kmeans":
        centres = fitted["centres"]
        distances = (vectors**2).sum(1)[:, None] - 2 * vectors @ centres.T + (centres**2).sum(1)[None, :]
        return distances.argmin(axis=1).astype(np.int32)
    from scipy.stats import multivariate_normal

    points = (vectors - fitted["pca_mean"]) @ fitted["pca_components"].T
    scores = np.column_stack(
        [
            np.atleast_1d(multivariate_normal(mean, covariance, allow_singular=True).logpdf(points))
            + np.log(weight)
            for weight, mean, covariance in zip(
                fitted["weights"], fitted["means"], fitted["covariances"], strict=True
            )
        ]
    )
    return scores.argmax(axis=1).astype(np.int32)
