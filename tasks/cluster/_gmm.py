"""A Gaussian mixture on principal components."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.cluster._base import CLUSTERERS, Clusterer, check_n_clusters

if TYPE_CHECKING:
    from tasks.base import Settings


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
