"""Plots: figures are returned, not written, and carry the expected legend, labels and matrix."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from tasks.evaluate import evaluate_clusters
from tasks.mapdata import NOISE_COLOUR, prepare_map
from tasks.plots import confusion_figure, map_figure, point_size


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def coords() -> pd.DataFrame:
    return pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [0.0, 1.0, 0.0, 1.0, 0.0]})


@pytest.mark.parametrize(
    ("n_points", "size"), [(1, 40.0), (100, 40.0), (1000, 6.0), (20_000, 2.0), (0, 40.0)]
)
def test_point_size_shrinks_with_the_number_of_points_within_bounds(n_points, size):
    assert point_size(n_points) == size


def _data(coords, classes, clusters, reducer="t-SNE"):
    frame = coords.assign(doc_id=[str(i) for i in range(len(coords))])
    texts = [f" Subject {i}\nbody {i}" for i in range(len(coords))]
    return prepare_map(
        frame, texts, np.array(clusters), np.array(classes, dtype=object), reducer_label=reducer
    )


def test_map_figure_returns_a_figure_and_writes_nothing(coords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = map_figure(_data(coords, ["b", "a", "b", "c", "a"], [0, 1, 0, 2, 1]), by="class", title="Map")
    assert isinstance(figure, Figure)
    assert list(tmp_path.iterdir()) == []


def test_map_figure_by_class_has_one_sorted_legend_entry_per_class(coords):
    figure = map_figure(_data(coords, ["b", "a", "b", "c", "a"], [0, 1, 0, 2, 1]), by="class", title="Map")
    legend = figure.axes[0].get_legend()
    assert legend.get_title().get_text() == "Class"
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "c"]


def test_map_figure_by_cluster_draws_unassigned_posts_grey_and_lists_them_last(coords):
    data = _data(coords, ["a", "a", "b", "b", "b"], [0, 0, 1, -1, 1])
    figure = map_figure(data, by="cluster", title="Map")
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cluster 0", "cluster 1", "unassigned"]
    (points,) = figure.axes[0].collections  # one scatter, drawn in order
    colours = [to_hex(c) for c in points.get_facecolors()]
    assert (
        colours.count(NOISE_COLOUR) == 1 and colours[0] == NOISE_COLOUR
    )  # grey, and first: under the others


def test_map_figure_labels_the_axes_after_the_reducer_and_plots_every_point(coords):
    figure = map_figure(_data(coords, ["a"] * 5, [0] * 5, reducer="PCA"), by="cluster", title="The map")
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("PCA 1", "PCA 2", "The map")
    offsets = np.concatenate([c.get_offsets() for c in axes.collections])
    np.testing.assert_array_equal(np.sort(offsets[:, 0]), coords["x"])


def test_the_confusion_figure_shows_classes_against_matched_classes_with_counts():
    classes = np.array(["a", "a", "a", "b", "b"], dtype=object)
    evaluation = evaluate_clusters(classes, np.array([0, 0, 5, 1, 1]))
    figure = confusion_figure(evaluation.confusion, title="Confusion")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b"]
    # Matched classes first, in class order, so the diagonal is the correct posts; extra clusters last.
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b", "cluster 5"]
    assert [t.get_text() for t in axes.texts] == ["2", "0", "1", "0", "2", "0"]
    assert axes.get_title() == "Confusion"
