"""What map.html's explorer panel is given at publish: neighbours, central posts, label places, the payload."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.explorer import (
    central_posts,
    compress,
    decompress,
    label_box,
    nearest_neighbours,
    place_labels,
    script_json,
)
from tasks.interactive import map_html
from tasks.mapdata import categorical_columns, prepare_map

HOSTILE = [
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "a\u2028b",
    "'\"`",
    "\ud800 lone",
]


def test_nearest_neighbours_are_the_most_cosine_similar_others_nearest_first():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 12))
    found = nearest_neighbours(vectors)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    assert found.shape == (60, 5)
    assert (found == np.argsort(-similarity, axis=1)[:, :5]).all()


def test_a_corpus_of_fewer_than_six_posts_has_fewer_neighbours():
    assert nearest_neighbours(np.eye(3)).shape == (3, 2)
    assert nearest_neighbours(np.eye(1)).shape == (1, 0)


def test_central_posts_are_nearest_the_cluster_centre_and_stay_in_the_cluster():
    points = np.array([[0.0, 0], [1, 0], [0.4, 0], [10, 10], [11, 10], [10.6, 10]])
    central = central_posts(points, np.array([0, 0, 0, 1, 1, 1]), k=2, cosine=False)
    assert central == {0: [2, 0], 1: [5, 4]}


def test_label_boxes_grow_with_text_and_font():
    small, wide, big = label_box(0, 0, "ab", 11), label_box(0, 0, "abcd", 11), label_box(0, 0, "ab", 18)
    assert wide[2] - wide[0] > small[2] - small[0] and big[3] - big[1] > small[3] - small[1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 100),
            st.floats(0, 100),
            st.integers(1, 500),
            st.text("abcdef, ", min_size=1, max_size=30),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_placed_labels_never_overlap_and_stay_in_the_plot(clusters):
    centres = np.array([(x, y) for x, y, _, _ in clusters])
    sizes = [s for _, _, s, _ in clusters]
    texts = [t for _, _, _, t in clusters]
    labels = place_labels(texts, centres, sizes, (0, 0, 100, 100), plot_px=(640, 420))
    boxes = [label_box(lb.x * 6.4, lb.y * 4.2, lb.text, lb.font_px) for lb in labels]
    for a, b in itertools.combinations(boxes, 2):
        assert a[2] <= b[0] + 1e-6 or b[2] <= a[0] + 1e-6 or a[3] <= b[1] + 1e-6 or b[3] <= a[1] + 1e-6
    assert all(b[0] >= -1e-6 and b[1] >= -1e-6 and b[2] <= 640 + 1e-6 and b[3] <= 420 + 1e-6 for b in boxes)


def test_the_biggest_cluster_is_labelled_first_at_its_centre_in_the_biggest_font():
    centres = np.array([[50.0, 50], [50.5, 50.5], [10, 10]])
    labels = place_labels(["small", "big", "far"], centres, [10, 100, 40], (0, 0, 100, 100))
    assert [lb.text for lb in labels][0] == "big" and (labels[0].x, labels[0].y) == pytest.approx(
        (50.5, 50.5)
    )
    assert labels[0].font_px == 18 and all(lb.font_px < 18 for lb in labels[1:])
    # "small" sits under "big": it is nudged aside, not dropped, when there is room.
    assert {lb.text for lb in labels} == {"big", "small", "far"}


def test_a_label_with_no_free_place_is_dropped():
    centres = np.array([[50.0, 50]] * 40)
    labels = place_labels(["same words here"] * 40, centres, list(range(40, 0, -1)), (0, 0, 100, 100))
    assert 1 < len(labels) < 40


def test_the_compressed_payload_round_trips_any_text():
    value = {"text": HOSTILE[:4] + ["é ✓ 𝄞 😀"], "n": [1, 2]}
    block = compress(value)
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", block)
    assert decompress(block) == value


def test_script_json_cannot_end_its_script_element():
    text = script_json({"a": HOSTILE})
    assert "<" not in text and "\u2028" not in text and text.isascii()
    assert json.loads(text) == {"a": HOSTILE}


def small_map(labelled: bool = True, texts: list[str] | None = None):
    texts = texts or [f"Subject {i}\n\nThe whole body of post {i}.\nSecond line." for i in range(8)]
    coords = pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(8)], "x": np.arange(8.0), "y": np.arange(8.0) % 2}
    )
    return prepare_map(
        coords,
        texts,
        np.array([0, 0, 0, 1, 1, 1, -1, -1]),
        np.array(["a", "a", "a", "b", "b", "b", "a", "b"]) if labelled else None,
        reducer_label="t-SNE",
        cluster_names={0: "orbit, launch, moon, nasa", 1: "oven, bread"},
        vectors=np.random.default_rng(0).normal(size=(8, 4)),
        columns={"source": ["x", "y"] * 4},
    )


def page_parts(page: str) -> tuple[dict, dict]:
    settings_block = re.search(r'id="explorer-settings">(.*?)</script>', page).group(1)
    data_block = re.search(r'id="explorer-data">\s*([A-Za-z0-9+/=]+)\s*</script>', page).group(1)
    return json.loads(settings_block), decompress(data_block)


def test_the_page_carries_every_whole_post_compressed_with_its_neighbours():
    data = small_map()
    settings_, posts = page_parts(map_html(data, title="Map"))
    assert posts["text"] == data.points["text"].tolist()
    # Only in the compressed block: the hover rows hold the start of the body, its lines joined.
    assert json.dumps(data.points["text"][3])[1:-1] not in map_html(data, title="Map")
    assert posts["neighbours"] == data.neighbours.tolist()
    assert [settings_["clusters"][k]["label"] for k in posts["cluster"]] == data.points[
        "cluster_label"
    ].tolist()
    assert [settings_["classes"][k] for k in posts["class"]] == data.points["class_name"].tolist()
    assert settings_["columns"][0]["name"] == "source" and posts["columns"]["source"] == [0, 1] * 4
    assert [c["size"] for c in settings_["clusters"]] == [3, 3, 2]


def test_an_unlabelled_page_has_no_classes():
    settings_, posts = page_parts(map_html(small_map(labelled=False), title="Map"))
    assert settings_["classes"] == [] and set(posts["class"]) == {-1}


def test_labels_are_drawn_for_clusters_not_for_unassigned_posts():
    from tasks.interactive import map_figure

    texts = sorted(a.text for a in map_figure(small_map()).layout.annotations)
    assert texts == ["orbit, launch, moon", "oven, bread"]


def test_hostile_texts_reach_the_page_as_data_only():
    texts = [f"{HOSTILE[i % 5]}\n\nbody {HOSTILE[(i + 1) % 5]}" for i in range(8)]
    page = map_html(small_map(texts=texts), title=HOSTILE[0])
    page.encode("utf-8")
    assert "<script>alert" not in page and "<img src=x" not in page
    _, posts = page_parts(page)
    assert posts["text"][1] == "<img src=x onerror=alert(1)>\n\nbody a\u2028b"
    assert posts["text"][4] == "\ufffd lone\n\nbody </script><script>alert(1)</script>"


def test_categorical_columns_keep_those_of_2_to_30_values():
    frame = pd.DataFrame(
        {
            "doc_id": range(40),
            "few": ["a", "b", None, "a"] * 10,
            "one": ["x"] * 40,
            "many": [str(i) for i in range(40)],
        }
    )
    assert categorical_columns(frame, exclude=["doc_id"]) == {"few": ["a", "b", "", "a"] * 10}
