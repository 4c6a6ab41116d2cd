"""A living map: add the posts that arrived since a run to its map, keeping every old point where it was.

Run it with ``python -m flows.update --base RUN_FOLDER`` (or ``--base latest``);
``--help`` lists every parameter. See docs/living-map.md.
"""

from __future__ import annotations

if __name__ == "__main__":
    # The command line (declared in flows/cli.py, COMMANDS) refuses a bad flag or file before the
    # imports below run: Prefect and the stages take seconds to import.
    from flows.entry import run_command_line

    run_command_line("flows.update:update")

from typing import Any

import numpy as np
import pandas as pd
from prefect import flow

from tasks.changes import changes_table, publish_changes
from tasks.config import (
    EmbeddingSettings,
    ExecutionSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
    UpdateSettings,
)
from tasks.corpus_store import clean_task, ingest_task, locate_corpus
from tasks.evaluate import evaluate_task
from tasks.layout import CHANGES_SCHEMA, CLUSTERS_SCHEMA, NOISE, write_table
from tasks.names import name_clusters
from tasks.placement import fit_state, place_task, read_state, write_state
from tasks.publish import publish_task
from tasks.reduce import REDUCERS
from tasks.run import open_run
from tasks.update import (
    added_metrics,
    load_base,
    match_keys,
    new_posts,
    new_vectors,
    resolve_base,
    stable_names,
    update_settings,
    write_posts,
)


@flow(name="update", log_prints=True)
def update(
    updating: UpdateSettings = UpdateSettings(),
    source: SourceSettings = SourceSettings(),
    sampling: SamplingSettings = SamplingSettings(),
    embedding: EmbeddingSettings = EmbeddingSettings(),
    mapping: MapSettings = MapSettings(),
    output: OutputSettings = OutputSettings(),
    execution: ExecutionSettings = ExecutionSettings(),
) -> dict[str, Any]:
    """Add the posts that arrived since a run to its map and clusters, and report what changed.

    Every post of the base keeps its place and cluster; new posts are placed
    against the fixed map and assigned to the base's clusters, or to emerging
    ones. The source, embedding and map settings default to the base run's.

    Parameters
    ----------
    updating : UpdateSettings
        The base run (``--base``), ``--max-new`` and ``--min-emerging``.
    source, sampling, embedding, mapping, output, execution : settings models
        As for ``flows.newsgroups``; only the flags given override the base's
        (of ``sampling``, only ``--groups``: an update takes every new post).

    Returns
    -------
    dict
        The new run's manifest, or ``{"nothing_new": message}`` when the source
        holds no post the base lacks (then no folder is written).
    """
    base = load_base(resolve_base(updating.base, output.output_dir))
    settings = update_settings(base, source, sampling, embedding, mapping, output, execution)
    state, base_features = read_state(base.root)
    stored = locate_corpus(settings)
    corpus = ingest_task(settings.source, stored=stored)
    cleaned, _ = clean_task(corpus, settings.cleaning, stored=stored)
    base_sample = pd.read_parquet(base.layout.sample)
    by_id = settings.source.corpus is None or settings.source.id_column is not None
    groups = settings.sampling.groups or []
    fresh, waiting = new_posts(cleaned, base_sample, groups, by_id=by_id, max_new=updating.max_new)
    if fresh.empty:
        message = f"nothing new since {base.name}"
        print(message)
        return {"nothing_new": message}
    with open_run(settings, label="update") as run:
        embedded, vectors, info = run.step("embed", new_vectors, fresh, settings, state, run.layout)
        base_map = pd.read_parquet(base.layout.map)
        base_clusters = pd.read_parquet(base.layout.assignments)["cluster"].to_numpy(np.int32)
        coords, labels, new_ids = run.step(
            "place",
            place_task,
            state,
            base_features,
            base_map[["x", "y"]].to_numpy(np.float32),
            base_clusters,
            vectors,
            min_emerging=updating.min_emerging,
        )
        posts = pd.concat([base_sample, fresh], ignore_index=True)
        added = np.r_[np.zeros(len(base_sample), bool), np.ones(len(fresh), bool)]
        clusters = np.r_[base_clusters, labels].astype(np.int32)
        features = np.vstack([base_features, vectors]).astype(np.float32)
        run.step("write", write_posts, base, posts, base_map, coords, clusters, added, embedded, run.layout)
        evaluation, metrics = run.step(
            "evaluate", evaluate_task, posts, clusters, features, seed=settings.seed, layout=run.layout
        )
        base_names = pd.read_parquet(base.layout.clusters)
        matched = {
            int(c): m for c, m in zip(base_names["cluster"], base_names["matched_class"], strict=True) if m
        }
        labelled = evaluation is not None
        if labelled:
            for cluster in new_ids:
                members = posts.loc[clusters == cluster, "class_name"]
                matched[cluster] = members.mode().iloc[0]
            metrics = {
                **metrics,
                "added": added_metrics(fresh["class_name"].to_numpy(dtype=object), labels, matched),
            }
        names = stable_names(
            base_names, name_clusters(posts["text"].tolist(), clusters, matched_classes=matched)
        )
        write_table(names, run.layout.clusters, CLUSTERS_SCHEMA)
        in_source = set(match_keys(cleaned, by_id=by_id))
        gone = pd.Series(
            base_clusters[~match_keys(base_sample, by_id=by_id).isin(in_source).to_numpy()]
        ).value_counts()
        changes = changes_table(posts.assign(cluster=clusters, added=added), names, new_ids, gone)
        write_table(changes, run.layout.changes, CHANGES_SCHEMA)
        reducer_label = REDUCERS.get(state.reducer).label
        clustering = {"clusterer": state.clusterer, "emerging": new_ids}
        publish_task(
            posts,
            pd.read_parquet(run.layout.map),
            clusters,
            evaluation,
            metrics,
            reducer_label=reducer_label,
            vectors=features,
            names=names,
            clustering=clustering,
            layout=run.layout,
            added=added,
            base_name=base.name,
        )
        publish_changes(base.name, changes, metrics.get("added"), run.layout)
        next_state = fit_state(
            features,
            clusters,
            reducer=state.reducer,
            clusterer=state.clusterer,
            mapping=state.mapping,
            seed=state.seed,
            model=state.model,
            tfidf=state.tfidf,
            next_cluster=max([state.next_cluster - 1, *new_ids]) + 1,
        )
        run.step("state", write_state, next_state, features, run.layout.root)
        run.record(
            base_run={"name": base.name, "manifest_sha256": base.sha256},
            update=updating.model_dump(mode="json"),
            counts={
                "base": len(base_sample),
                "added": len(fresh),
                "waiting": waiting - len(fresh),
                "unassigned_added": int((labels == NOISE).sum()),
                "emerging": len(new_ids),
                "gone_from_source": int(gone.sum()),
                "sampled": len(posts),
                "clusters": len(set(clusters.tolist()) - {NOISE}),
            },
            embedding=info,
            features={"tfidf_weight": settings.embedding.tfidf_weight, "dimensions": int(features.shape[1])},
            map={"reducer": state.reducer, "label": reducer_label},
            clustering=clustering,
            metrics=metrics,
        )
    return run.manifest
