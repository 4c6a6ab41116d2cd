"""Evaluate: how well the clusters recover the true classes. The one place metrics are defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from tasks.layout import CONFUSION_SCHEMA, EVALUATION_SCHEMA, NOISE, NOISE_LABEL, RunLayout, write_table
from tasks.sample import class_names


@dataclass
class Evaluation:
    """The scores of one clustering against the true classes.

    Attributes
    ----------
    table : DataFrame
        One row per class (``evaluation.parquet``): its size, the tutorial's
        majority cluster and share, the cluster matched one-to-one by the
        Hungarian method and the class's accuracy under that matching.
    confusion : DataFrame
        Counts of (true class, predicted class) in long form; a cluster no class
        was matched to is predicted as "cluster <n>".
    metrics : dict
        ``per_class_accuracy`` (class -> accuracy under the one-to-one matching),
        ``hungarian_accuracy``, ``ari``, ``nmi``, ``majority_collisions``, and
        for the noise convention ``noise_share`` (posts left unassigned) and
        ``hungarian_accuracy_with_noise`` (unassigned posts counted as wrong).
        Accuracies, ARI and NMI are over assigned posts.
    """

    table: pd.DataFrame
    confusion: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)

    def matched_classes(self) -> dict[int, str]:
        """Cluster label -> the class the one-to-one matching gave it."""
        return cluster_names(self.table)

    def predicted_names(self, clusters: np.ndarray) -> np.ndarray:
        """Name each cluster label by the class it was matched to."""
        mapping = {**cluster_names(self.table), NOISE: NOISE_LABEL}
        return np.array([mapping.get(int(c), f"cluster {int(c)}") for c in clusters])


def cluster_names(table: pd.DataFrame) -> dict[int, str]:
    """Cluster label -> the class the Hungarian matching gave it."""
    matched = table[table["matched_cluster"] >= 0]
    return dict(zip(matched["matched_cluster"].astype(int), matched["class_name"], strict=True))


def evaluate_clusters(class_names: np.ndarray, clusters: np.ndarray) -> Evaluation:
    """Score ``clusters`` (n,) against ``class_names`` (n,).

    The tutorial gives each class its majority cluster, so two classes can claim
    the same cluster; that is reported in ``majority_shared_with`` and counted in
    ``majority_collisions``. The one-to-one (Hungarian) matching maximises the
    number of correctly grouped posts and is what ``per_class_accuracy`` and
    ``hungarian_accuracy`` use.

    Posts labelled :data:`~tasks.layout.NOISE` (unassigned) are left out of the
    matching, the accuracies, ARI and NMI; ``noise_share`` says how many there
    were and ``hungarian_accuracy_with_noise`` counts them as wrong, so a
    clusterer cannot look good by leaving the hard posts out.
    """
    all_names = np.asarray(class_names, dtype=object)
    all_clusters = np.asarray(clusters)
    assigned = all_clusters != NOISE
    class_names, clusters = all_names[assigned], all_clusters[assigned]
    classes = np.array(sorted(set(all_names)), dtype=object)
    labels = np.unique(clusters)
    contingency = pd.crosstab(
        pd.Categorical(class_names, classes), pd.Categorical(clusters, labels), dropna=False
    ).to_numpy()
    if contingency.size == 0:  # every post unassigned: nothing to match
        contingency = np.zeros((len(classes), 1), dtype=int)
        labels = np.array([NOISE])
    sizes = contingency.sum(axis=1)
    majority = labels[contingency.argmax(axis=1)]
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    matched = np.full(len(classes), -1)
    matched[rows] = labels[cols]
    correct = np.zeros(len(classes))
    correct[rows] = contingency[rows, cols]
    shared_with = [
        ", ".join(classes[(majority == majority[i]) & (np.arange(len(classes)) != i)])
        for i in range(len(classes))
    ]
    table = pd.DataFrame(
        {
            "class_name": classes,
            "n_docs": pd.Series(all_names).value_counts().reindex(classes).to_numpy(),
            "majority_cluster": majority,
            "majority_share": contingency.max(axis=1) / np.maximum(sizes, 1),
            "majority_shared_with": shared_with,
            "matched_cluster": matched,
            "accuracy": correct / np.maximum(sizes, 1),
        }
    )
    evaluation = Evaluation(table=table, confusion=pd.DataFrame())
    predicted = evaluation.predicted_names(all_clusters)
    evaluation.confusion = (
        pd.DataFrame({"class_name": all_names, "predicted": predicted})
        .value_counts()
        .rename("count")
        .reset_index()
        .sort_values(["class_name", "predicted"], ignore_index=True)
    )
    evaluation.metrics = {
        "per_class_accuracy": dict(zip(classes, table["accuracy"].round(6), strict=True)),
        "hungarian_accuracy": round(float(correct.sum() / max(sizes.sum(), 1)), 6),
        "hungarian_accuracy_with_noise": round(float(correct.sum() / len(all_clusters)), 6),
        "noise_share": round(float(1 - assigned.mean()), 6),
        "ari": round(float(adjusted_rand_score(class_names, clusters)), 6) if assigned.any() else 0.0,
        "nmi": round(float(normalized_mutual_info_score(class_names, clusters)), 6)
        if assigned.any()
        else 0.0,
        "majority_collisions": int(sum(bool(s) for s in shared_with)),
    }
    return evaluation


def silhouette(
    vectors: np.ndarray, clusters: np.ndarray, *, seed: int, max_points: int = 5000
) -> float | None:
    """Cosine silhouette of the clustering (no labels needed); None with fewer than 2 clusters.

    Above ``max_points`` points, it is estimated on a seeded sample of that size.
    Unassigned posts (:data:`~tasks.layout.NOISE`) are left out.
    """
    assigned = np.asarray(clusters) != NOISE
    vectors, clusters = vectors[assigned], np.asarray(clusters)[assigned]
    if len(np.unique(clusters)) < 2 or len(np.unique(clusters)) >= len(clusters):
        return None
    sample = max_points if len(vectors) > max_points else None
    return round(
        float(silhouette_score(vectors, clusters, metric="cosine", sample_size=sample, random_state=seed)), 6
    )


def score(
    class_names: np.ndarray | None, clusters: np.ndarray, vectors: np.ndarray, *, seed: int
) -> tuple[Evaluation | None, dict[str, Any]]:
    """The evaluation against the classes (None when unlabelled) and every metric of the run.

    ``silhouette`` needs no labels, so an unlabelled corpus still gets a score.
    """
    evaluation = evaluate_clusters(class_names, clusters) if class_names is not None else None
    metrics = {
        **(evaluation.metrics if evaluation else {}),
        "silhouette": silhouette(vectors, clusters, seed=seed),
    }
    return evaluation, metrics


@task(name="evaluate", task_run_name="evaluate")
def evaluate_task(
    sample: pd.DataFrame, clusters: np.ndarray, vectors: np.ndarray, *, seed: int, layout: RunLayout
) -> tuple[Evaluation | None, dict[str, Any]]:
    """Prefect task: :func:`score`, persisted to ``evaluation.parquet`` and ``confusion.parquet``.

    The sample is scored when every post has a class; the result is logged.
    """
    logger = get_run_logger()
    evaluation, metrics = score(class_names(sample), clusters, vectors, seed=seed)
    if evaluation is None:
        logger.info("evaluate: the corpus is unlabelled; silhouette %s", metrics["silhouette"])
        return evaluation, metrics
    write_table(evaluation.table, layout.evaluation, EVALUATION_SCHEMA)
    write_table(evaluation.confusion, layout.confusion, CONFUSION_SCHEMA)
    if metrics["majority_collisions"]:
        logger.warning(
            "evaluate: %d classes share their majority cluster with another class; the tutorial's "
            "majority table overstates them (see majority_shared_with); per_class_accuracy uses a "
            "one-to-one matching instead",
            metrics["majority_collisions"],
        )
    noise = (
        f", {metrics['noise_share']:.1%} unassigned (accuracy {metrics['hungarian_accuracy_with_noise']:.3f} counting them as wrong)"
        if metrics["noise_share"]
        else ""
    )
    logger.info(
        "evaluate: Hungarian accuracy %.3f, ARI %.3f, NMI %.3f%s",
        metrics["hungarian_accuracy"],
        metrics["ari"],
        metrics["nmi"],
        noise,
    )
    return evaluation, metrics
