"""Evaluate: majority and one-to-one (Hungarian) scores on hand-computed contingency tables."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.evaluate import cluster_names, evaluate_clusters, silhouette

# Hand-worked example. Contingency (rows a, b, c; columns clusters 0, 1, 2):
#   a: 2 1 0     majority 0 (2/3)
#   b: 0 2 0     majority 1 (2/2)
#   c: 0 1 1     majority 1 (1/2, tie with 2 -> first, cluster 1), shared with b
# The one-to-one matching a->0, b->1, c->2 gets 2 + 2 + 1 = 5 of 7 right.
CLASSES = np.array(["a", "a", "a", "b", "b", "c", "c"], dtype=object)
CLUSTERS = np.array([0, 0, 1, 1, 1, 1, 2])


@pytest.fixture
def worked():
    return evaluate_clusters(CLASSES, CLUSTERS)


def test_per_class_accuracy_follows_the_one_to_one_matching(worked):
    assert worked.metrics["per_class_accuracy"] == {"a": pytest.approx(2 / 3, abs=1e-6), "b": 1.0, "c": 0.5}


def test_hungarian_accuracy_is_the_share_of_posts_in_their_matched_cluster(worked):
    assert worked.metrics["hungarian_accuracy"] == pytest.approx(5 / 7, abs=1e-6)


def test_the_table_holds_sizes_majorities_and_matches(worked):
    table = worked.table
    assert table["class_name"].tolist() == ["a", "b", "c"]
    assert table["n_docs"].tolist() == [3, 2, 2]
    assert table["majority_cluster"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(table["majority_share"], [2 / 3, 1.0, 0.5])
    assert table["matched_cluster"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(table["accuracy"], [2 / 3, 1.0, 0.5])


def test_classes_claiming_the_same_majority_cluster_are_reported_as_collisions(worked):
    assert worked.table["majority_shared_with"].tolist() == ["", "c", "b"]
    assert worked.metrics["majority_collisions"] == 2


def test_the_confusion_counts_each_class_against_its_matched_class(worked):
    rows = worked.confusion.to_dict("records")
    assert rows == [
        {"class_name": "a", "predicted": "a", "count": 2},
        {"class_name": "a", "predicted": "b", "count": 1},
        {"class_name": "b", "predicted": "b", "count": 2},
        {"class_name": "c", "predicted": "b", "count": 1},
        {"class_name": "c", "predicted": "c", "count": 1},
    ]


def test_clusters_are_named_after_their_matched_class(worked):
    assert cluster_names(worked.table) == {0: "a", 1: "b", 2: "c"}
    assert worked.predicted_names(np.array([2, 0, 1])).tolist() == ["c", "a", "b"]


def test_a_perfect_clustering_with_permuted_labels_scores_one_everywhere():
    classes = np.array(["x"] * 3 + ["y"] * 4 + ["z"] * 2, dtype=object)
    clusters = np.array([2] * 3 + [0] * 4 + [1] * 2)
    evaluation = evaluate_clusters(classes, clusters)
    assert evaluation.metrics == {
        "per_class_accuracy": {"x": 1.0, "y": 1.0, "z": 1.0},
        "hungarian_accuracy": 1.0,
        "hungarian_accuracy_with_noise": 1.0,
        "noise_share": 0.0,
        "ari": 1.0,
        "nmi": 1.0,
        "majority_collisions": 0,
    }
    assert cluster_names(evaluation.table) == {2: "x", 0: "y", 1: "z"}


def test_an_unmatched_extra_cluster_is_named_cluster_n_in_the_confusion():
    classes = np.array(["a", "a", "a", "b", "b"], dtype=object)
    clusters = np.array([0, 0, 5, 1, 1])
    evaluation = evaluate_clusters(classes, clusters)
    assert evaluation.table["matched_cluster"].tolist() == [0, 1]
    assert evaluation.confusion.to_dict("records") == [
        {"class_name": "a", "predicted": "a", "count": 2},
        {"class_name": "a", "predicted": "cluster 5", "count": 1},
        {"class_name": "b", "predicted": "b", "count": 2},
    ]
    assert evaluation.metrics["hungarian_accuracy"] == pytest.approx(4 / 5)
    assert evaluation.predicted_names(np.array([5])).tolist() == ["cluster 5"]


def test_with_fewer_clusters_than_classes_a_class_is_left_unmatched():
    classes = np.array(["a", "a", "b", "b", "c"], dtype=object)
    clusters = np.array([0, 0, 1, 1, 1])
    evaluation = evaluate_clusters(classes, clusters)
    assert evaluation.table["matched_cluster"].tolist() == [0, 1, -1]
    assert evaluation.metrics["per_class_accuracy"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert evaluation.metrics["hungarian_accuracy"] == pytest.approx(4 / 5)


def test_silhouette_is_none_for_a_single_cluster():
    vectors = np.random.default_rng(0).normal(size=(6, 3))
    assert silhouette(vectors, np.zeros(6, dtype=int), seed=0) is None


def test_silhouette_is_none_when_every_point_is_its_own_cluster():
    vectors = np.random.default_rng(0).normal(size=(4, 3))
    assert silhouette(vectors, np.arange(4), seed=0) is None


def test_silhouette_is_one_for_two_tight_opposite_clusters():
    vectors = np.array([[1, 0], [1, 0.001], [-1, 0], [-1, -0.001]])
    assert silhouette(vectors, np.array([0, 0, 1, 1]), seed=0) == pytest.approx(1.0, abs=1e-5)


def test_unassigned_posts_are_left_out_of_the_accuracy_and_counted_against_it_beside():
    classes = np.array(["a"] * 4 + ["b"] * 4, dtype=object)
    clusters = np.array([0, 0, 0, -1, 1, 1, -1, -1])
    evaluation = evaluate_clusters(classes, clusters)
    assert evaluation.metrics["hungarian_accuracy"] == 1.0
    assert evaluation.metrics["noise_share"] == pytest.approx(3 / 8)
    assert evaluation.metrics["hungarian_accuracy_with_noise"] == pytest.approx(5 / 8)
    assert evaluation.metrics["per_class_accuracy"] == {"a": 1.0, "b": 1.0}
    assert evaluation.table["n_docs"].tolist() == [4, 4]
    assert evaluation.matched_classes() == {0: "a", 1: "b"}
    confusion = evaluation.confusion.set_index(["class_name", "predicted"])["count"].to_dict()
    assert confusion == {("a", "a"): 3, ("a", "unassigned"): 1, ("b", "b"): 2, ("b", "unassigned"): 2}


def test_a_clustering_that_assigns_nothing_scores_zero_not_one():
    classes = np.array(["a", "a", "b"], dtype=object)
    evaluation = evaluate_clusters(classes, np.array([-1, -1, -1]))
    metrics = evaluation.metrics
    assert (metrics["hungarian_accuracy"], metrics["ari"], metrics["nmi"], metrics["noise_share"]) == (
        0,
        0,
        0,
        1,
    )


def test_the_silhouette_leaves_unassigned_posts_out():
    rng = np.random.default_rng(0)
    vectors = np.vstack([rng.normal(0, 0.1, (10, 3)) + [5, 0, 0], rng.normal(0, 0.1, (10, 3)) + [0, 5, 0]])
    clusters = np.array([0] * 10 + [1] * 10)
    with_noise = clusters.copy()
    with_noise[[0, 15]] = -1
    assert silhouette(vectors, with_noise, seed=0) == pytest.approx(
        silhouette(np.delete(vectors, [0, 15], axis=0), np.delete(clusters, [0, 15]), seed=0)
    )
