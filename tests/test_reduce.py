"""Reduce: t-SNE keeps neighbourhoods (contrasted with a random layout), PCA, seeding, checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import openTSNE
import pandas as pd
import pytest
import sklearn.decomposition
from sklearn.datasets import make_blobs
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from tasks.config import MapSettings
from tasks.errors import InputError
from tasks.reduce import REDUCERS, PcaReducer, TsneReducer, build_reducer
from tasks.reduce.stage import map_embeddings

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_map_made_before_from_the_same_vectors_and_settings_is_reused(blobs, tmp_path, caplog):
    doc_ids = [str(i) for i in range(120)]
    first = map_embeddings(
        doc_ids, blobs[0], TsneReducer(perplexity=15, n_iter=60, seed=0), cache_dir=tmp_path
    )
    with patch.object(openTSNE, "TSNE", wraps=openTSNE.TSNE) as tsne, caplog.at_level("INFO", "tasks.reduce"):
        again = map_embeddings(
            doc_ids, blobs[0], TsneReducer(perplexity=15, n_iter=60, seed=0), cache_dir=tmp_path
        )
    assert tsne.call_count == 0
    assert "reusing" in caplog.text
    pd.testing.assert_frame_equal(again, first)
    assert len(list(tmp_path.glob("*.npy"))) == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"reducer": TsneReducer(perplexity=15, n_iter=60, seed=1)},
        {"reducer": TsneReducer(perplexity=10, n_iter=60, seed=0)},
        {"reducer": PcaReducer(seed=0)},
        {"vectors": "one vector moved"},
    ],
    ids=["seed", "perplexity", "reducer", "vectors"],
)
def test_a_map_is_made_again_when_the_vectors_or_the_settings_differ(blobs, tmp_path, changed):
    doc_ids = [str(i) for i in range(120)]
    map_embeddings(doc_ids, blobs[0], TsneReducer(perplexity=15, n_iter=60, seed=0), cache_dir=tmp_path)
    vectors = blobs[0].copy()
    if "vectors" in changed:
        vectors[7, 0] += 1e-3
    reducer = changed.get("reducer", TsneReducer(perplexity=15, n_iter=60, seed=0))
    # Patched on the class: the reducer's own attributes are part of the key.
    cls = type(reducer)
    with patch.object(cls, "fit_transform", autospec=True, side_effect=cls.fit_transform) as fit:
        map_embeddings(doc_ids, vectors, reducer, cache_dir=tmp_path)
    assert fit.call_count == 1
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_an_unreadable_stored_map_is_made_again_and_replaced(blobs, tmp_path, caplog):
    doc_ids = [str(i) for i in range(120)]
    reducer = PcaReducer(seed=0)
    expected = map_embeddings(doc_ids, blobs[0], reducer, cache_dir=tmp_path)
    (stored,) = tmp_path.glob("*.npy")
    stored.write_bytes(b"half a file")
    with caplog.at_level("WARNING", "tasks.reduce"):
        frame = map_embeddings(doc_ids, blobs[0], reducer, cache_dir=tmp_path)
    assert "cannot read the stored map" in caplog.text
    pd.testing.assert_frame_equal(frame, expected)
    np.testing.assert_array_equal(np.load(stored), expected[["x", "y"]].to_numpy())


FIT_UMAP = """
import numpy as np
from tasks.reduce import umap_class

umap_class()(n_components=2, n_neighbors=5, random_state=0).fit_transform(
    np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
)
"""
LIST_COMPILED_AND_LOADED = """
import sys
from numba.core.dispatcher import Dispatcher

for name, module in list(sys.modules.items()):
    if module is not None and name.partition(".")[0] in ("umap", "pynndescent"):
        for attribute, value in vars(module).items():
            if isinstance(value, Dispatcher):
                if sum(value.stats.cache_misses.values()):
                    print("compiled", attribute)
                if sum(value.stats.cache_hits.values()):
                    print("loaded", attribute)
"""
# umap-learn's own uncached functions that take most of a fit's compile time.
UMAP_HEAVY = {"_nb_optimize_layout_euclidean_single_epoch", "compute_membership_strengths", "smooth_knn_dist"}


@pytest.mark.slow
def test_a_second_process_fitting_umap_loads_the_compiled_code_instead_of_compiling_it(compiled_umap):
    # compiled_umap has fitted once: it compiled and kept the code, or loaded what an earlier process kept
    # (numba's cache beside umap's source, as for a user). Either way the next process must only load.
    done = subprocess.run(
        [sys.executable, "-c", FIT_UMAP + LIST_COMPILED_AND_LOADED],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    listed = [line.split() for line in done.stdout.splitlines()]
    assert UMAP_HEAVY <= {name for how, name in listed if how == "loaded"}, done.stdout
    assert not UMAP_HEAVY & {name for how, name in listed if how == "compiled"}, done.stdout
