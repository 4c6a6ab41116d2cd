"""Cluster stage: the clusterers (embeddings (n, d) -> labels (n,)), their registry, and the cluster step.

The clusterers register on import and import their libraries only when they
run. The step (``tasks.cluster.stage``: the Prefect task) imports Prefect, so
only the stages that run it import it; ``tasks.config`` reads the clusterers'
names from here on the command line's way to refusing a bad flag.
"""

# In registration order, the default first: the command line's help and the Prefect UI list them so.
from tasks.cluster._kmeans import KMeansClusterer  # noqa: I001
from tasks.cluster._gmm import GaussianMixtureClusterer
from tasks.cluster._hdbscan import HdbscanClusterer
from tasks.cluster._base import CLUSTERERS, Clusterer, build_clusterer, predict, resolve_n_clusters

__all__ = [
    "CLUSTERERS",
    "Clusterer",
    "GaussianMixtureClusterer",
    "HdbscanClusterer",
    "KMeansClusterer",
    "build_clusterer",
    "predict",
    "resolve_n_clusters",
]
