"""Reduce: t-SNE keeps neighbourhoods (contrasted with a random layout), PCA, seeding, checks."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import openTSNE
import pytest
import sklearn.decomposition
from sklearn.datasets import make_blobs
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from tasks.config import MapSettings
from tasks.errors import InputError
from tasks.reduce import REDUCERS, PcaReducer, TsneReducer, build_reducer, map_embeddings


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    vectors, labels = make_blobs(n_samples=120, centers=3, n_features=10, cluster_std=2.0, random_state=0)
    return vectors.astype(np.float32), labels


@pytest.fixture(scope="module")
def tsne_map(blobs) -> np.ndarray:
    return TsneReducer(perplexity=15, n_iter=100, seed=0).fit_transform(blobs[0])


def knn_accuracy(coords: np.ndarray, labels: np.ndarray) -> float:
    """Mean 5-fold accuracy of 5-nearest-neighbour classification on the map."""
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=5), coords, labels, cv=5).mean())


def test_a_random_layout_scores_near_chance_on_knn_accuracy(blobs):
    random_layout = np.random.default_rng(0).normal(size=(len(blobs[1]), 2))
    assert knn_accuracy(random_layout, blobs[1]) < 0.5


def test_the_tsne_map_keeps_the_blobs_apart(tsne_map, blobs):
    assert knn_accuracy(tsne_map, blobs[1]) > 0.9


def test_the_tsne_map_is_float32_of_shape_n_by_2(tsne_map):
    assert tsne_map.shape == (120, 2)
    assert tsne_map.dtype == np.float32
    assert np.isfinite(tsne_map).all()


def test_tsne_with_the_same_seed_gives_identical_coordinates(tsne_map, blobs):
    again = TsneReducer(perplexity=15, n_iter=100, seed=0).fit_transform(blobs[0])
    np.testing.assert_array_equal(again, tsne_map)


def test_the_tsne_seed_reaches_opentsne(blobs):
    with patch.object(openTSNE, "TSNE", wraps=openTSNE.TSNE) as tsne:
        TsneReducer(perplexity=5, n_iter=50, seed=123).fit_transform(blobs[0][:30])
    assert tsne.call_count == 1
    assert tsne.call_args.kwargs["random_state"] == 123
    assert tsne.call_args.kwargs["perplexity"] == 5
    assert tsne.call_args.kwargs["n_iter"] == 50


def test_map_embeddings_passes_the_run_seed_and_settings_to_tsne(blobs):
    settings = MapSettings(reducer="tsne", perplexity=5, tsne_iterations=50)
    with patch.object(openTSNE, "TSNE", wraps=openTSNE.TSNE) as tsne:
        map_embeddings([str(i) for i in range(30)], blobs[0][:30], build_reducer(settings, seed=77))
    assert tsne.call_args.kwargs["random_state"] == 77
    assert tsne.call_args.kwargs["n_iter"] == 50


@pytest.mark.parametrize("perplexity", [30, 31])
def test_a_perplexity_not_below_the_number_of_posts_is_refused(perplexity):
    with pytest.raises(
        InputError, match=rf"perplexity \({perplexity}\) must be less than the number of posts \(30\)"
    ):
        TsneReducer(perplexity=perplexity).check(30)


def test_a_perplexity_just_below_the_number_of_posts_is_accepted():
    TsneReducer(perplexity=29.5).check(30)


def test_pca_gives_the_first_two_principal_components():
    # Centred points spread 3 along x and 1 along y: PCA keeps these axes (up to sign).
    vectors = np.array([[3, 0, 0], [-3, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=np.float64) + 5
    coords = PcaReducer(seed=0).fit_transform(vectors)
    assert coords.dtype == np.float32
    np.testing.assert_allclose(np.abs(coords), [[3, 0], [3, 0], [0, 1], [0, 1]], atol=1e-6)


def test_the_pca_seed_reaches_sklearn(blobs):
    with patch.object(sklearn.decomposition, "PCA", wraps=sklearn.decomposition.PCA) as pca:
        map_embeddings(
            [str(i) for i in range(120)], blobs[0], build_reducer(MapSettings(reducer="pca"), seed=11)
        )
    assert pca.call_args.kwargs["random_state"] == 11


def test_map_embeddings_returns_doc_ids_and_coordinates_in_order(blobs):
    doc_ids = [f"doc-{i}" for i in range(120)]
    frame = map_embeddings(doc_ids, blobs[0], build_reducer(MapSettings(reducer="pca"), seed=0))
    assert list(frame.columns) == ["doc_id", "x", "y"]
    assert frame["doc_id"].tolist() == doc_ids
    np.testing.assert_array_equal(frame[["x", "y"]].to_numpy(), PcaReducer(seed=0).fit_transform(blobs[0]))


def test_the_builtin_reducers_are_registered():
    assert {"tsne", "pca"} <= set(REDUCERS.names())
    with pytest.raises(InputError, match=r"The reducer must be one of .*'tsne'.*Got 'umapp' instead"):
        REDUCERS.get("umapp")
