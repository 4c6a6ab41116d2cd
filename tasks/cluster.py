"""Clusterers: embeddings (n, d) -> integer cluster labels (n,)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from tasks.errors import InputError
from tasks.layout import NOISE
from tasks.reduce import umap_class
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

# BERTopic's neighbourhood for the UMAP projection HDBSCAN clusters.
UMAP_NEIGHBORS = 15

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
        Whether some points may stay unassigned, labelled :data:`NOISE` (-1).
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
        """Cluster ``vectors`` (n, d); returns int32 labels (n,), :data:`NOISE` for unassigned."""

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


@CLUSTERERS.register
class KMeansClusterer(Clusterer):
    """scikit-learn KMeans (k-means++, ``n_init`` restarts, fixed seed).

    With ``n_clusters="auto"`` it tries every k from 2 to ``max_auto_clusters``
    and keeps the one with the best cosine silhouette; the choice is logged and
    kept in ``n_clusters_``, the scores in ``sweep_``, and ``n_clusters`` keeps
    what the user asked for.
    """

    name: ClassVar[str] = "kmeans"
    needs_n_clusters: ClassVar[bool] = True
    chooses_k: ClassVar[bool] = True
    may_leave_noise: ClassVar[bool] = False

    def __init__(
        self, *, n_clusters: int | str, n_init: int = 10, max_auto_clusters: int = 12, seed: int = 0
    ) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_auto_clusters = max_auto_clusters
        self.seed = seed
        self.n_clusters_: int | None = None
        self.sweep_: pd.DataFrame | None = None
        self.centres_: np.ndarray | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, n_clusters: int | str | None, seed: int) -> KMeansClusterer:
        """Read ``n_init`` and ``max_auto_clusters``; use the resolved k and the run's seed."""
        return cls(
            n_clusters=n_clusters,
            n_init=settings.n_init,
            max_auto_clusters=settings.max_auto_clusters,
            seed=seed,
        )

    def check(self, n_samples: int) -> None:
        """K (or the largest k "auto" tries) must leave at least one post more than clusters."""
        super().check(n_samples)
        if self.n_clusters == AUTO and n_samples < 3:
            raise InputError(f"--n-clusters auto needs at least 3 posts; the sample has {n_samples}.")
        if self.n_clusters != AUTO:
            check_n_clusters(self.n_clusters, n_samples)

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Run KMeans (after choosing k, for "auto") and return its labels."""
        if self.n_clusters == AUTO:
            self.n_clusters_, self.sweep_ = self._choose_k(vectors)
            log.info(
                "cluster: --n-clusters auto chose %d (best silhouette %.3f of k = 2..%d)",
                self.n_clusters_,
                self.sweep_["silhouette"].max(),
                self.sweep_["n_clusters"].max(),
            )
        else:
            self.n_clusters_ = int(self.n_clusters)
        model = self._kmeans(self.n_clusters_)
        labels = model.fit_predict(vectors).astype(np.int32)
        self.centres_ = model.cluster_centers_
        return labels

    def fitted(self) -> dict[str, np.ndarray]:
        """The cluster centres (label i is row i)."""
        return {"centres": self.centres_}

    def describe(self) -> dict[str, Any]:
        """The k asked for, the k used, and for "auto" the silhouette of every k tried."""
        sweep = None if self.sweep_ is None else self.sweep_.to_dict(orient="records")
        return {
            **super().describe(),
            "n_clusters": self.n_clusters,
            "n_clusters_resolved": self.n_clusters_,
            "sweep": sweep,
        }

    def _kmeans(self, k: int):
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=self.n_init, random_state=self.seed)

    def _choose_k(self, vectors: np.ndarray) -> tuple[int, pd.DataFrame]:
        from sklearn.metrics import silhouette_score

        ks = range(2, min(self.max_auto_clusters, len(vectors) - 1) + 1)
        scores = [
            silhouette_score(
                vectors, self._kmeans(k).fit_predict(vectors), metric="cosine", random_state=self.seed
            )
            for k in ks
        ]
        sweep = pd.DataFrame({"n_clusters": list(ks), "silhouette": np.round(scores, 6)})
        return int(sweep.loc[sweep["silhouette"].idxmax(), "n_clusters"]), sweep


@CLUSTERERS.register
class GaussianMixtureClusterer(Clusterer):
    """A Gaussian mixture (full covariances) on a PCA projection of the embeddings.

    Mixtures let clusters differ in shape and spread, where KMeans assumes equal
    spheres; on hundreds of dimensions they overfit, so they are fitted on the
    first ``pca_dimensions`` principal components (15 measured best for
    EmbeddingGemma on the tutorial's sample).
    """

    name: ClassVar[str] = "gmm"
    needs_n_clusters: ClassVar[bool] = True
    chooses_k: ClassVar[bool] = False
    may_leave_noise: ClassVar[bool] = False

    def __init__(
        self, *, n_clusters: int | str, pca_dimensions: int = 15, n_init: int = 3, seed: int = 0
    ) -> None:
        self.n_clusters = n_clusters
        self.pca_dimensions = pca_dimensions
        self.n_init = n_init
        self.seed = seed
        self.fitted_: dict[str, np.ndarray] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, n_clusters: int | str | None, seed: int
    ) -> GaussianMixtureClusterer:
        """Read ``gmm_pca_dimensions`` and ``gmm_n_init``; use the resolved k and the run's seed."""
        return cls(
            n_clusters=n_clusters,
            pca_dimensions=settings.gmm_pca_dimensions,
            n_init=settings.gmm_n_init,
            seed=seed,
        )

    def check(self, n_samples: int) -> None:
        """A number of clusters no larger than the sample ("auto" is refused by the settings), and room for the projection."""
        super().check(n_samples)
        check_n_clusters(self.n_clusters, n_samples)

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """Project on the principal components, fit the mixture, return each post's likeliest component."""
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        dimensions = min(self.pca_dimensions, vectors.shape[1], len(vectors) - 1)
        pca = PCA(n_components=dimensions, random_state=self.seed)
        points = pca.fit_transform(vectors)
        mixture = GaussianMixture(
            n_components=int(self.n_clusters),
            covariance_type="full",
            n_init=self.n_init,
            random_state=self.seed,
        )
        labels = mixture.fit_predict(points).astype(np.int32)
        self.fitted_ = {
            "pca_mean": pca.mean_,
            "pca_components": pca.components_,
            "weights": mixture.weights_,
            "means": mixture.means_,
            "covariances": mixture.covariances_,
        }
        return labels

    def fitted(self) -> dict[str, np.ndarray]:
        """The projection and the mixture: PCA mean and components, weights, means, covariances."""
        return self.fitted_


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
