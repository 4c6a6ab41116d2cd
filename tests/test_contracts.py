"""One contract per pluggable stage, checked for every registered offline backend.

Adding a reducer or a clusterer is one module in its stage's package; these tests
then hold it to the same promises as the others: shape, dtype, seeded
reproducibility, and the cluster-count and noise declarations.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from tasks.cluster import CLUSTERERS, Clusterer, build_clusterer
from tasks.cluster.stage import cluster_embeddings
from tasks.config import ClusterSettings, EmbeddingSettings, MapSettings
from tasks.embed import EMBEDDERS, new_job
from tasks.layout import NOISE
from tasks.reduce import REDUCERS, build_reducer

OFFLINE_EMBEDDERS = [name for name in EMBEDDERS.names() if name != "gemini"]


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    vectors, labels = make_blobs(n_samples=90, centers=3, n_features=16, cluster_std=0.6, random_state=4)
    return vectors.astype(np.float32), labels


@pytest.fixture(scope="module")
def texts(train_posts) -> list[str]:
    return train_posts.groupby("class_name").head(2)["text"].str[:400].tolist()


@pytest.mark.parametrize("name", OFFLINE_EMBEDDERS)
def test_every_offline_embedder_returns_float32_rows_of_its_dimensions_reproducibly(name, texts):
    settings = EmbeddingSettings(embedder=name, tfidf_dimensions=8)
    first, _ = new_job(settings, seed=3).embedder()
    second, _ = new_job(settings, seed=3).embedder()
    vectors = first.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape[0] == len(texts) and vectors.ndim == 2
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(second.embed(texts), vectors, atol=1e-5)
    assert first.describe()["embedder"] == name


@pytest.mark.parametrize("name", REDUCERS.names())
def test_every_reducer_maps_to_float32_n_by_2_reproducibly_and_has_a_label(name, blobs):
    settings = MapSettings(reducer=name, perplexity=10, tsne_iterations=100)
    reducer = build_reducer(settings, seed=5)
    coords = reducer.fit_transform(blobs[0])
    assert coords.dtype == np.float32 and coords.shape == (90, 2)
    np.testing.assert_array_equal(build_reducer(settings, seed=5).fit_transform(blobs[0]), coords)
    assert isinstance(reducer.label, str) and reducer.label


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_every_clusterer_labels_each_point_reproducibly_within_its_declarations(name, blobs):
    settings = ClusterSettings(clusterer=name)
    clusterer = build_clusterer(settings, n_classes=3, seed=5)
    labels = cluster_embeddings([str(i) for i in range(90)], blobs[0], clusterer)["cluster"].to_numpy()
    assert labels.dtype == np.int32 and labels.shape == (90,)
    again = cluster_embeddings(
        [str(i) for i in range(90)], blobs[0], build_clusterer(settings, n_classes=3, seed=5)
    )
    np.testing.assert_array_equal(again["cluster"], labels)
    assert labels.min() >= (NOISE if clusterer.may_leave_noise else 0)
    found = set(labels.tolist()) - {NOISE}
    if clusterer.needs_n_clusters:
        assert len(found) == 3
    # Well separated blobs: every clusterer finds them, whatever the label numbers.
    assigned = labels != NOISE
    assert adjusted_rand_score(blobs[1][assigned], labels[assigned]) > 0.95


def test_a_backend_that_does_not_declare_what_it_needs_is_refused_at_registration():
    class Vague(Clusterer):
        name: ClassVar[str] = "vague"
        needs_n_clusters: ClassVar[bool] = True

        @classmethod
        def from_settings(cls, settings, *, n_clusters, seed):
            return cls()

        def fit_predict(self, vectors):
            return np.zeros(len(vectors), dtype=np.int32)

    with pytest.raises(TypeError, match="must declare 'may_leave_noise'"):
        CLUSTERERS.register(Vague)
    assert "vague" not in CLUSTERERS.names()


def test_a_clusterer_that_returns_noise_without_declaring_it_is_caught(blobs):
    class Leaky(Clusterer):
        name: ClassVar[str] = "leaky"
        needs_n_clusters: ClassVar[bool] = False
        may_leave_noise: ClassVar[bool] = False

        @classmethod
        def from_settings(cls, settings, *, n_clusters, seed):
            return cls()

        def fit_predict(self, vectors):
            return np.full(len(vectors), NOISE, dtype=np.int32)

    with pytest.raises(RuntimeError, match="leaky clusterer returned label -1; the lowest allowed is 0"):
        cluster_embeddings([str(i) for i in range(90)], blobs[0], Leaky())


def test_n_clusters_auto_picks_the_best_silhouette_and_keeps_the_users_setting(blobs):
    clusterer = build_clusterer(ClusterSettings(n_clusters="auto", max_auto_clusters=6), n_classes=0, seed=1)
    labels = cluster_embeddings([str(i) for i in range(90)], blobs[0], clusterer)["cluster"].to_numpy()
    described = clusterer.describe()
    assert described["n_clusters"] == "auto" and described["n_clusters_resolved"] == 3
    assert [row["n_clusters"] for row in described["sweep"]] == [2, 3, 4, 5, 6]
    best = max(described["sweep"], key=lambda row: row["silhouette"])
    assert best["n_clusters"] == 3 and len(set(labels.tolist())) == 3
