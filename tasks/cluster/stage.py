"""The cluster stage: a sample's vectors clustered by the run's clusterer."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task

from tasks.cluster._base import Clusterer
from tasks.layout import ASSIGNMENTS_SCHEMA, NOISE, RunLayout, write_table


def cluster_embeddings(doc_ids: list[str], vectors: np.ndarray, clusterer: Clusterer) -> pd.DataFrame:
    """Cluster ``vectors``; returns a frame with ``doc_id`` and ``cluster``."""
    clusterer.check(len(vectors))
    labels = np.asarray(clusterer.fit_predict(vectors), dtype=np.int32)
    if labels.shape != (len(vectors),):
        raise RuntimeError(
            f"The {clusterer.name} clusterer returned {labels.shape} labels for {len(vectors)} posts."
        )
    lowest = NOISE if clusterer.may_leave_noise else 0
    if len(labels) and labels.min() < lowest:
        raise RuntimeError(
            f"The {clusterer.name} clusterer returned label {labels.min()}; the lowest allowed is {lowest}."
        )
    return pd.DataFrame({"doc_id": doc_ids, "cluster": labels})


@task(name="cluster", task_run_name="cluster-{clusterer.name}")
def cluster_task(
    sample: pd.DataFrame, vectors: np.ndarray, clusterer: Clusterer, *, layout: RunLayout
) -> np.ndarray:
    """Prefect task: :func:`cluster_embeddings` on the sample, persisted to ``assignments.parquet``.

    Returns the labels (n,), in the sample's order.
    """
    frame = cluster_embeddings(sample["doc_id"].tolist(), vectors, clusterer)
    write_table(frame, layout.assignments, ASSIGNMENTS_SCHEMA)
    return frame["cluster"].to_numpy()
