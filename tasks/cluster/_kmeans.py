"""KMeans, with k given or chosen by silhouette: the default clusterer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from tasks.cluster._base import AUTO, CLUSTERERS, Clusterer, check_n_clusters
from tasks.errors import InputError

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)


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
