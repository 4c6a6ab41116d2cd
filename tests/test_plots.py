"""Plots: figures are returned, not written, and carry the expected legend, labels and matrix."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tasks.evaluate import evaluate_clusters
from tasks.plots import confusion_figure, point_size, scatter_figure


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


def test_scatter_figure_returns_a_figure_and_writes_nothing(coords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figure = scatter_figure(coords, np.array(["b", "a", "b", "c", "a"]), title="Map", legend_title="Class")
    assert isinstance(figure, Figure)
    assert list(tmp_path.iterdir()) == []


def test_scatter_figure_has_one_sorted_legend_entry_per_value(coords):
    figure = scatter_figure(coords, np.array(["b", "a", "b", "c", "a"]), title="Map", legend_title="Class")
    legend = figure.axes[0].get_legend()
    assert legend.get_title().get_text() == "Class"
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "c"]


def test_scatter_figure_labels_the_axes_after_the_reducer_and_plots_every_point(coords):
    figure = scatter_figure(coords, np.array(["a"] * 5), title="The map", legend_title="Class", reducer="PCA")
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
