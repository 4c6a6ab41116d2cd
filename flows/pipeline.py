"""The stages of one run after sampling, shared by every flow that maps a sample.

``flows/newsgroups.py`` runs them once; ``flows/compare.py`` once per variant
of the same sample. Each call fills one run: its files, timings and manifest.
"""

from __future__ import annotations

import pandas as pd

from tasks.check import check_task
from tasks.cluster import cluster_task
from tasks.config import RunSettings
from tasks.embed import embed_sample, plan_task
from tasks.embed.hybrid import features_task
from tasks.evaluate import evaluate_task
from tasks.layout import NOISE
from tasks.names import name_task
from tasks.publish import publish_task
from tasks.reduce import map_task
from tasks.run import Run


def analyse_sample(run: Run, sample: pd.DataFrame, settings: RunSettings) -> None:
    """Check, plan, embed, map, cluster, evaluate and publish ``sample`` into ``run``.

    With ``--plan`` it stops after the plan and the run leaves no folder.
    """
    backends = run.step("check", check_task, sample, settings)
    plan = run.step("plan", plan_task, sample, settings)
    run.record(plan=plan.as_dict())
    if settings.embedding.plan:
        run.discard()
        return
    vectors, embedded = run.step("embed", embed_sample, sample, settings, layout=run.layout)
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
    coords = run.step("map", map_task, sample, vectors, backends.reducer, layout=run.layout)
    clusters = run.step("cluster", cluster_task, sample, vectors, backends.clusterer, layout=run.layout)
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
