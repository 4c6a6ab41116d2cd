"""Evaluate: how well the clusters recover the true classes. The one place metrics are defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from tasks.layout import CONFUSION_SCHEMA, EVALUATION_SCHEMA, RunLayout, write_table


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
        ``hungarian_accuracy``, ``ari``, ``nmi``, ``majority_collisions``.
    """

    table: pd.DataFrame
    confusion: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)

    def predicted_names(self, clusters: np.ndarray) -> np.ndarray:
        """Name each cluster label by the class it was matched to."""
        mapping = cluster_names(self.table)
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
    """
    class_names = np.asarray(class_names, dtype=object)
    clusters = np.asarray(clusters)
    classes = np.array(sorted(set(class_names)), dtype=object)
    labels = np.unique(clusters)
    contingency = pd.crosstab(
        pd.Categorical(class_names, classes), pd.Categorical(clusters, labels), dropna=False
    ).to_numpy()
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
            "n_docs": sizes,
            "majority_cluster": majority,
            "majority_share": contingency.max(axis=1) / sizes,
            "majority_shared_with": shared_with,
            "matched_cluster": matched,
            "accuracy": correct / sizes,
        }
    )
    evaluation = Evaluation(table=table, confusion=pd.DataFrame())
    predicted = evaluation.predicted_names(clusters)
    evaluation.confusion = (
        pd.DataFrame({"class_name": class_names, "predicted": predicted})
        .value_counts()
        .rename("count")
        .reset_index()
        .sort_values(["class_name", "predicted"], ignore_index=True)
    )
    evaluation.metrics = {
        "per_class_accuracy": dict(zip(classes, table["accuracy"].round(6), strict=True)),
        "hungarian_accuracy": round(float(correct.sum() / sizes.sum()), 6),
        "ari": round(float(adjusted_rand_score(class_names, clusters)), 6),
        "nmi": round(float(normalized_mutual_info_score(class_names, clusters)), 6),
        "majority_collisions": int(sum(bool(s) for s in shared_with)),
    }
    return evaluation


def silhouette(
    vectors: np.ndarray, clusters: np.ndarray, *, seed: int, max_points: int = 5000
) -> float | None:
    """Cosine silhouette of the clustering (no labels needed); None with fewer than 2 clusters.

    Above ``max_points`` points, it is estimated on a seeded sample of that size.
    """
    if len(np.unique(clusters)) < 2 or len(np.unique(clusters)) >= len(clusters):
        return None
    sample = max_points if len(vectors) > max_points else None
    return round(
        float(silhouette_score(vectors, clusters, metric="cosine", sample_size=sample, random_state=seed)), 6
    )


@task(name="evaluate", task_run_name="evaluate")
def evaluate_task(class_names: np.ndarray, clusters: np.ndarray, *, layout: RunLayout) -> Evaluation:
    """Prefect task: :func:`evaluate_clusters`, persisted to ``evaluation.parquet`` and ``confusion.parquet``."""
    evaluation = evaluate_clusters(class_names, clusters)
    write_table(evaluation.table, layout.evaluation, EVALUATION_SCHEMA)
    write_table(evaluation.confusion, layout.confusion, CONFUSION_SCHEMA)
    return evaluation
