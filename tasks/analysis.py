"""The stages after the plan, in order: embed, features, map, cluster, placement state, evaluate, name, publish.

:func:`tasks.pipeline.analyse_sample` calls :func:`analyse_planned` once the
plan is made; ``--plan`` stops before, so it never imports these stages'
libraries (scikit-learn, matplotlib, plotly, openTSNE, torch: seconds).
Each stage's Prefect task sits with the stage (``tasks.reduce.stage``,
``tasks.cluster.stage``, ``tasks.embed.hybrid``, ``tasks.placement``, ...);
this module only runs them, one run step each.
"""

from __future__ import annotations

import pandas as pd

from tasks.check import Backends
from tasks.cluster.stage import cluster_task
from tasks.config import RunSettings
from tasks.embed.hybrid import features_task
from tasks.embed.stage import EmbedStart, embed_sample
from tasks.evaluate import evaluate_task
from tasks.layout import NOISE
from tasks.names import name_task
from tasks.placement import state_task
from tasks.publish import publish_task
from tasks.reduce.stage import default_map_cache_dir, map_task
from tasks.run import Run


def analyse_planned(
    run: Run, sample: pd.DataFrame, settings: RunSettings, backends: Backends, start: EmbedStart
) -> None:
    """Embed ``sample`` as ``start`` planned, then map, cluster, evaluate and publish it into ``run``."""
    vectors, embedded = run.step("embed", embed_sample, sample, settings, start, layout=run.layout)
    embedding = settings.embedding
    if embedding.tfidf_weight:
        vectors = run.step(
            "features",
            features_task,
            vectors,
            sample["text"].tolist(),
            weight=embedding.tfidf_weight,
            dimensions=embedding.tfidf_dimensions,
            seed=settings.seed,
        )
    mapping = settings.mapping
    map_cache = default_map_cache_dir(settings.output.output_dir) if mapping.reuse_map else None
    coords = run.step(
        "map", map_task, sample, vectors, backends.reducer, cache_dir=map_cache, layout=run.layout
    )
    clusters = run.step("cluster", cluster_task, sample, vectors, backends.clusterer, layout=run.layout)
    run.step("state", state_task, sample, vectors, clusters, backends.clusterer, settings, layout=run.layout)
    evaluation, metrics = run.step(
        "evaluate", evaluate_task, sample, clusters, vectors, seed=settings.seed, layout=run.layout
    )
    matched = evaluation.matched_classes() if evaluation is not None else None
    names = run.step("name", name_task, sample, clusters, matched, layout=run.layout)
    clustering = backends.clusterer.describe()
    run.step(
        "publish",
        publish_task,
        sample,
        coords,
        clusters,
        evaluation,
        metrics,
        reducer_label=backends.reducer.label,
        vectors=vectors,
        names=names,
        clustering=clustering,
        layout=run.layout,
    )
    run.record(
        counts={
            "sampled": len(sample),
            "classes": backends.n_classes,
            "clusters": len(set(clusters.tolist()) - {NOISE}),
        },
        embedding=embedded,
        features={"tfidf_weight": embedding.tfidf_weight, "dimensions": int(vectors.shape[1])},
        map={"reducer": backends.reducer.name, "label": backends.reducer.label},
        clustering=clustering,
        metrics=metrics,
    )
