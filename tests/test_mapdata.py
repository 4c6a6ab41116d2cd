"""Prepared map data: one decision of colours, labels, noise and hover text for every renderer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.mapdata import NOISE_COLOUR, POINT_COLUMNS, cluster_label, palette, prepare_map, split_post


@pytest.fixture
def coords() -> pd.DataFrame:
    return pd.DataFrame({"doc_id": list("abcde"), "x": np.arange(5.0), "y": np.ones(5)})


TEXTS = [f" Subject {i}\n\nBody of post {i}, which goes on." for i in range(5)]


def test_points_hold_every_column_in_input_order(coords):
    data = prepare_map(coords, TEXTS, np.array([0, 0, 1, 1, 1]), reducer_label="PCA")
    assert tuple(data.points.columns) == POINT_COLUMNS
    assert data.points["doc_id"].tolist() == list("abcde")
    assert data.points["subject"].tolist() == [f"Subject {i}" for i in range(5)]
    assert data.points["preview"][0] == "Body of post 0, which goes on."
    assert data.reducer_label == "PCA"


def test_an_unlabelled_map_has_no_class_colours_and_one_colour_per_cluster(coords):
    data = prepare_map(coords, TEXTS, np.array([0, 0, 1, 1, 2]), reducer_label="t-SNE")
    assert not data.labelled
    assert data.class_colours == {}
    assert list(data.cluster_colours) == ["cluster 0", "cluster 1", "cluster 2"]
    assert len(set(data.cluster_colours.values())) == 3


def test_a_matched_cluster_takes_its_class_colour_and_names_its_class(coords):
    classes = np.array(["space", "space", "med", "med", "med"], dtype=object)
    data = prepare_map(
        coords,
        TEXTS,
        np.array([1, 1, 0, 0, 0]),
        classes,
        reducer_label="t-SNE",
        cluster_names={1: "orbit, launch"},
        matched_classes={0: "med", 1: "space"},
    )
    assert data.cluster_colours == {
        "cluster 0 (med)": data.class_colours["med"],
        "1: orbit, launch (space)": data.class_colours["space"],
    }
    by_doc = data.points.set_index("doc_id")
    assert by_doc.loc["a", "cluster_label"] == "1: orbit, launch (space)"
    assert by_doc.loc["a", "cluster_colour"] == by_doc.loc["a", "class_colour"] == data.class_colours["space"]


def test_unassigned_posts_are_grey_labelled_unassigned_and_listed_last(coords):
    data = prepare_map(coords, TEXTS, np.array([0, -1, 1, -1, 0]), reducer_label="t-SNE")
    assert list(data.cluster_colours)[-1] == "unassigned"
    assert data.cluster_colours["unassigned"] == NOISE_COLOUR
    noise = data.points[data.points["cluster"] == -1]
    assert set(noise["cluster_label"]) == {"unassigned"} and set(noise["cluster_colour"]) == {NOISE_COLOUR}


def test_unmatched_clusters_get_muted_colours_distinct_from_every_class(coords):
    classes = np.array(["p", "p", "q", "q", "q"], dtype=object)
    data = prepare_map(
        coords,
        TEXTS,
        np.array([0, 0, 1, 2, 2]),
        classes,
        reducer_label="t-SNE",
        matched_classes={0: "p", 2: "q"},
    )
    assert data.cluster_colours["cluster 1"] not in data.class_colours.values()


def test_palette_is_stable_whatever_the_order_of_names():
    assert palette(["b", "a", "c"]) == palette(["c", "b", "a", "a"])


@pytest.mark.parametrize(
    ("text", "subject", "preview"),
    [
        (" Orbits\n\nThe shuttle flew.", "Orbits", "The shuttle flew."),
        ("only a subject", "only a subject", ""),
        ("S\n" + "word " * 100, "S", ("word " * 40).strip() + " …"),
    ],
)
def test_split_post_takes_the_first_line_as_subject_and_about_200_characters_after_it(text, subject, preview):
    assert split_post(text) == (subject, preview)


def test_cluster_label_names_the_cluster_and_its_matched_class():
    assert cluster_label(3, None, None) == "cluster 3"
    assert cluster_label(3, "key, chip", "sci.crypt") == "3: key, chip (sci.crypt)"
    assert cluster_label(-1, "anything", "x") == "unassigned"
