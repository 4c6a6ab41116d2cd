from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.clean import clean_corpus
from tasks.config import CleaningSettings
from tasks.layout import CLUSTERS_SCHEMA as CLUSTER_NAMES_SCHEMA
from tasks.mapdata import NOISE
from tasks.names import cluster_terms, ctfidf, name_clusters, write_cluster_names
from tasks.sample import sample_per_class, select_groups

TOPICS = {
    "space": ["rocket", "orbit", "launch", "satellite", "booster", "payload", "shuttle", "astronaut"],
    "baking": ["recipe", "flour", "oven", "dough", "butter", "bread", "yeast", "sugar"],
    "guitar": ["guitar", "chords", "strings", "fret", "amplifier", "pick", "tuning", "melody"],
}
FILLER = ["today", "think", "really", "people", "thing", "week", "question", "friend"]


def topic_corpus(posts_per_topic: int = 30, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Short posts of three words from one topic and three everyday words each, clustered by topic."""
    rng = np.random.default_rng(seed)
    texts, clusters = [], []
    for cluster, words in enumerate(TOPICS.values()):
        for _ in range(posts_per_topic):
            picked = [*rng.choice(words, 3, replace=False), *rng.choice(FILLER, 3, replace=False)]
            texts.append(" ".join(rng.permutation(picked)) + ".")
            clusters.append(cluster)
    return texts, np.array(clusters)


# --- the formula, on hand-computed values ------------------------------------------------------


def test_ctfidf_weighs_normalised_frequency_by_log_of_mean_cluster_words_over_term_count():
    # Words per cluster 3 and 2 (A = 2.5); term totals apple 2, banana 2, cherry 1.
    weights = ctfidf(np.array([[2, 1, 0], [0, 1, 1]]), sqrt_tf=False)
    expected = [
        [2 / 3 * math.log(1 + 2.5 / 2), 1 / 3 * math.log(1 + 2.5 / 2), 0],
        [0, 1 / 2 * math.log(1 + 2.5 / 2), 1 / 2 * math.log(1 + 2.5 / 1)],
    ]
    np.testing.assert_allclose(weights, expected)


def test_ctfidf_square_roots_the_normalised_frequency_by_default():
    weights = ctfidf(np.array([[2, 1, 0], [0, 1, 1]]))
    np.testing.assert_allclose(weights[0, 0], math.sqrt(2 / 3) * math.log(2.25))
    np.testing.assert_allclose(weights[1, 2], math.sqrt(1 / 2) * math.log(3.5))


def test_cluster_terms_counts_every_post_of_a_cluster_as_one_document():
    texts = ["apple apple", "banana", "banana", "cherry"]
    terms = cluster_terms(texts, np.array([0, 0, 1, 1]), min_df=1, max_df=1.0, sqrt_tf=False)
    # Cluster 0: apple 2, banana 1; cluster 1: banana 1, cherry 1 (as in the ctfidf test).
    assert [t for t, _ in terms[0]] == ["apple", "banana"]
    assert [t for t, _ in terms[1]] == ["cherry", "banana"]
    assert terms[0][0][1] == pytest.approx(2 / 3 * math.log(2.25))
    assert terms[1][0][1] == pytest.approx(1 / 2 * math.log(3.5))


def test_stop_words_numbers_and_short_tokens_never_name_a_cluster():
    texts = ["the 1234 rocket is on a pad", "the rocket xy 99"]
    assert [t for t, _ in cluster_terms(texts, np.array([0, 0]), min_df=1, max_df=1.0)[0]] == [
        "pad",
        "rocket",
    ]


def test_a_term_found_in_fewer_than_min_df_posts_is_ignored():
    texts = ["rocket zyxwv", "rocket", "flour", "flour"]
    terms = cluster_terms(texts, np.array([0, 0, 1, 1]), max_df=1.0)
    assert [t for t, _ in terms[0]] == ["rocket"]


def test_a_term_in_more_than_max_df_of_posts_is_ignored():
    texts = ["lines rocket", "lines rocket", "lines flour", "lines flour", "lines oven"]
    terms = cluster_terms(texts, np.array([0, 0, 1, 1, 1]), min_df=1)
    assert "lines" not in {t for pairs in terms.values() for t, _ in pairs}
    assert {t for t, _ in terms[1]} == {"flour", "oven"}


def test_top_n_caps_the_terms_and_ties_are_broken_alphabetically():
    texts = ["delta alpha charlie bravo"] * 2 + ["echo"] * 2
    terms = cluster_terms(texts, np.array([0, 0, 1, 1]), top_n=3, max_df=1.0)
    assert [t for t, _ in terms[0]] == ["alpha", "bravo", "charlie"]


def test_noise_posts_are_left_out_of_the_counts():
    texts, clusters = topic_corpus()
    noisy_texts = [*texts, "rocket rocket rocket flour guitar", "oven oven oven chords"]
    noisy_clusters = np.append(clusters, [NOISE, NOISE])
    with_noise = cluster_terms(noisy_texts, noisy_clusters)
    assert NOISE not in with_noise
    assert with_noise == cluster_terms(texts, clusters)


def test_clusters_whose_posts_hold_only_stop_words_get_no_terms():
    assert cluster_terms(["the and of", "it is"], np.array([3, 5])) == {3: [], 5: []}


def test_texts_and_clusters_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="3 texts but 2 cluster labels"):
        cluster_terms(["a", "b", "c"], np.array([0, 1]))


def test_top_n_below_one_is_refused():
    with pytest.raises(ValueError, match="'top_n' parameter must be at least 1. Got 0"):
        cluster_terms(["rocket"], np.array([0]), top_n=0)


# --- names on a corpus with known topics -------------------------------------------------------


def test_each_topic_cluster_is_named_by_its_topic_words_not_the_everyday_ones():
    texts, clusters = topic_corpus()
    table = name_clusters(texts, clusters, n_name_terms=4)
    for row, words in zip(table.itertuples(), TOPICS.values(), strict=True):
        assert set(row.terms[:4]) <= set(words), row.terms
        assert row.name == ", ".join(row.terms[:4])
        # Everyday words are in every cluster: they come only after all of the topic's own words.
        assert set(row.terms[: len(words)]) == set(words)


def test_the_table_has_one_row_per_cluster_and_noise_last_as_unassigned():
    texts, clusters = topic_corpus()
    clusters[:5] = NOISE
    table = name_clusters(texts, clusters, matched_classes={0: "sci.space", 2: "rec.music"})
    assert list(table.columns) == CLUSTER_NAMES_SCHEMA.names
    assert table["cluster"].tolist() == [0, 1, 2, NOISE]
    assert table["size"].tolist() == [25, 30, 30, 5]
    assert table["cluster"].dtype == np.int32 and table["size"].dtype == np.int64
    assert table["matched_class"].tolist() == ["sci.space", None, "rec.music", None]
    noise = table.iloc[-1]
    assert noise["name"] == "unassigned" and list(noise["terms"]) == [] and len(noise["weights"]) == 0
    for row in table.iloc[:-1].itertuples():
        assert row.weights.dtype == np.float32 and len(row.terms) == len(row.weights) == 10
        assert list(row.weights) == sorted(row.weights, reverse=True)


def test_without_a_matching_each_cluster_takes_its_majority_class():
    texts, clusters = topic_corpus()
    classes = np.array(["sci.space"] * 30 + ["misc.food"] * 30 + ["rec.music"] * 30)
    classes[[0, 1, 31]] = "misc.food"
    table = name_clusters(texts, clusters, class_names=classes)
    assert table["matched_class"].tolist() == ["sci.space", "misc.food", "rec.music"]


def test_n_name_terms_below_one_is_refused():
    with pytest.raises(ValueError, match="'n_name_terms' parameter must be at least 1. Got 0"):
        name_clusters(["rocket"], np.array([0]), n_name_terms=0)


def test_written_cluster_names_read_back_with_the_schema(tmp_path):
    texts, clusters = topic_corpus()
    clusters[:3] = NOISE
    table = name_clusters(texts, clusters, matched_classes={1: "misc.food"})
    path = write_cluster_names(table, tmp_path / "clusters.parquet")
    back = pq.read_table(path)
    assert back.schema.equals(CLUSTER_NAMES_SCHEMA)
    assert back.column("name").to_pylist() == table["name"].tolist()
    assert back.column("terms").to_pylist()[0] == list(table["terms"].iloc[0])
    assert back.column("matched_class").to_pylist() == [None, "misc.food", None, None]
    assert [p.name for p in tmp_path.iterdir()] == ["clusters.parquet"]


# --- the real archive --------------------------------------------------------------------------


def test_real_sci_groups_clustered_by_class_are_named_by_their_subject(train_posts):
    sample = sample_per_class(select_groups(train_posts, ["sci"]), 150, seed=0)
    posts, _ = clean_corpus(sample, CleaningSettings())
    classes = posts["class_name"].to_numpy()
    ids, clusters = np.unique(classes, return_inverse=True)
    table = name_clusters(posts["text"].tolist(), clusters, class_names=classes).set_index("matched_class")
    assert list(table.index) == list(ids)
    assert "space" in table.loc["sci.space", "name"].split(", ")
    assert {"key", "encryption", "clipper"} <= set(table.loc["sci.crypt", "name"].split(", "))
    assert {"doctor", "medical", "disease", "patients"} & set(table.loc["sci.med", "terms"])
    assert {"circuit", "amp", "audio", "voltage"} & set(table.loc["sci.electronics", "terms"])
    header_words = {"lines", "organization", "subject", "writes"}
    assert not header_words & {t for terms in table["terms"] for t in terms}
