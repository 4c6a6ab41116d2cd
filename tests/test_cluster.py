"""Cluster: KMeans recovers separated blobs, k is resolved from the labels, the seed is passed on."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import sklearn.cluster
from sklearn.datasets import make_blobs
from sklearn.metrics import v_measure_score

from tasks.cluster import CLUSTERERS, KMeansClusterer, build_clusterer, resolve_n_clusters
from tasks.cluster.stage import cluster_embeddings
from tasks.config import ClusterSettings
from tasks.errors import InputError


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=60, centers=4, n_features=5, cluster_std=0.3, random_state=1)


def test_kmeans_recovers_well_separated_blobs_exactly(blobs):
    vectors, labels = blobs
    clusters = KMeansClusterer(n_clusters=4, seed=0).fit_predict(vectors)
    assert v_measure_score(labels, clusters) == pytest.approx(1.0)
    assert clusters.dtype == np.int32
    assert sorted(set(clusters.tolist())) == [0, 1, 2, 3]


def test_kmeans_with_the_same_seed_gives_the_same_labels(blobs):
    first = KMeansClusterer(n_clusters=3, n_init=1, seed=5).fit_predict(blobs[0])
    second = KMeansClusterer(n_clusters=3, n_init=1, seed=5).fit_predict(blobs[0])
    np.testing.assert_array_equal(first, second)


def test_the_seed_and_restarts_reach_sklearn_kmeans(blobs):
    with patch.object(sklearn.cluster, "KMeans", wraps=sklearn.cluster.KMeans) as kmeans:
        KMeansClusterer(n_clusters=4, n_init=3, seed=99).fit_predict(blobs[0])
    assert kmeans.call_args.kwargs == {"n_clusters": 4, "n_init": 3, "random_state": 99}


def test_build_clusterer_passes_the_run_seed_and_settings(blobs):
    clusterer = build_clusterer(ClusterSettings(n_init=2), n_classes=4, seed=17)
    with patch.object(sklearn.cluster, "KMeans", wraps=sklearn.cluster.KMeans) as kmeans:
        clusterer.fit_predict(blobs[0])
    assert kmeans.call_args.kwargs == {"n_clusters": 4, "n_init": 2, "random_state": 17}


def test_more_clusters_than_posts_is_refused():
    with pytest.raises(
        InputError, match=r"number of clusters \(6\) must not exceed the number of posts \(5\)"
    ):
        KMeansClusterer(n_clusters=6).check(5)


def test_as_many_clusters_as_posts_is_accepted():
    KMeansClusterer(n_clusters=5).check(5)


def test_the_number_of_clusters_defaults_to_the_number_of_classes():
    assert resolve_n_clusters(ClusterSettings(), n_classes=4) == 4


def test_an_explicit_number_of_clusters_wins_over_the_classes():
    assert resolve_n_clusters(ClusterSettings(n_clusters=7), n_classes=4) == 7
    assert resolve_n_clusters(ClusterSettings(n_clusters=3), n_classes=0) == 3


@pytest.mark.parametrize("n_classes", [0, 1])
def test_without_two_classes_the_number_of_clusters_must_be_given(n_classes):
    with pytest.raises(InputError, match=rf"sample has {n_classes} class\); pass --n-clusters"):
        resolve_n_clusters(ClusterSettings(), n_classes=n_classes)


def test_cluster_embeddings_returns_a_cluster_per_doc_id_in_order(blobs):
    vectors, labels = blobs
    doc_ids = [f"doc-{i}" for i in range(len(vectors))]
    frame = cluster_embeddings(doc_ids, vectors, KMeansClusterer(n_clusters=4, seed=0))
    assert list(frame.columns) == ["doc_id", "cluster"]
    assert frame["doc_id"].tolist() == doc_ids
    assert v_measure_score(labels, frame["cluster"]) == pytest.approx(1.0)


def test_cluster_embeddings_checks_k_before_fitting():
    with pytest.raises(InputError, match=r"number of clusters \(3\) must not exceed"):
        cluster_embeddings(["a", "b"], np.zeros((2, 2)), KMeansClusterer(n_clusters=3))


def test_kmeans_is_registered():
    assert "kmeans" in CLUSTERERS.names()
    with pytest.raises(InputError, match=r"The clusterer must be one of .*'kmeans'.*Got 'kmedians' instead"):
        CLUSTERERS.get("kmedians")
