"""The tutorial "Visualizing embeddings with t-SNE" as a Prefect flow.

Run it with ``python -m flows.newsgroups`` (``--help`` lists every parameter).
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from tasks.clean import clean_task
from tasks.cluster import build_clusterer, cluster_task
from tasks.config import (
    CleaningSettings,
    ClusterSettings,
    EmbeddingSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
)
from tasks.embed import EMBEDDERS, embed_documents
from tasks.embed.cache import default_cache_dir
from tasks.errors import PipelineError
from tasks.evaluate import evaluate_task, silhouette
from tasks.ingest import ingest_task
from tasks.layout import RunLayout, create_run, default_run_name, release_run
from tasks.manifest import Stopwatch, write_manifest
from tasks.publish import publish_task
from tasks.reduce import REDUCERS, map_task
from tasks.sample import sample_task


def _flow_run_name() -> str:
    """Name runs after what distinguishes them: embedder, sample size, reducer and seed."""
    params = flow_run.parameters

    def field(group: str, name: str, default: Any) -> Any:
        value = params.get(group, {})
        return getattr(value, name, None) if not isinstance(value, dict) else value.get(name, default)

    embedder = field("embedding", "embedder", "local") or "local"
    per_class = field("sampling", "per_class", 150)
    reducer = field("mapping", "reducer", "tsne") or "tsne"
    return f"{embedder}-{per_class or 'all'}-per-class-{reducer}-seed-{params.get('seed', 0)}"


def _finish(layout: RunLayout, **manifest: Any) -> dict[str, Any]:
    """Write the manifest, which marks the run folder finished, and let go of the folder."""
    try:
        return write_manifest(layout, **manifest)
    finally:
        release_run(layout)


@flow(name="newsgroups", flow_run_name=_flow_run_name, log_prints=True)
def newsgroups(
    source: SourceSettings = SourceSettings(),
    cleaning: CleaningSettings = CleaningSettings(),
    sampling: SamplingSettings = SamplingSettings(),
    embedding: EmbeddingSettings = EmbeddingSettings(),
    mapping: MapSettings = MapSettings(),
    clustering: ClusterSettings = ClusterSettings(),
    output: OutputSettings = OutputSettings(),
    seed: int = 0,
) -> dict[str, Any]:
    """Embed a corpus, map it to 2-D, cluster it and score the clusters against the classes.

    The defaults reproduce the tutorial: 20 Newsgroups train split, the four
    ``sci.*`` groups, 150 posts each, local embeddings, t-SNE, KMeans with one
    cluster per class.

    Parameters
    ----------
    source, cleaning, sampling, embedding, mapping, clustering, output : settings models
        One pydantic model per stage; see ``tasks/config.py`` or ``--help``.
    seed : int, default=0
        Seed of every random step: sampling, SVD, t-SNE, KMeans.

    Returns
    -------
    dict
        The run's manifest, also written to ``<output_dir>/<run>/manifest.json``.
    """
    logger = get_run_logger()
    sampling = sampling.resolved(source)
    EMBEDDERS.get(embedding.embedder).check_ready(embedding)
    layout = create_run(output.output_dir, output.run_name or default_run_name(embedding.embedder))
    logger.info("run folder: %s", layout.root)
    watch = Stopwatch()
    try:
        with watch("ingest"):
            corpus = ingest_task(source, layout=layout)
        with watch("clean"):
            cleaned, dropped = clean_task(corpus, cleaning, layout=layout)
        logger.info("clean: kept %d of %d texts; dropped %s", dropped["kept"], dropped["input"], dropped)
        with watch("sample"):
            sample = sample_task(cleaned, sampling, seed=seed, layout=layout)
        labelled = bool(sample["class_name"].notna().all())
        n_classes = int(sample["class_name"].nunique())
        logger.info("sample: %d posts in %d classes", len(sample), n_classes)

        # Check what depends on the sample size now, before the expensive embedding.
        REDUCERS.get(mapping.reducer).from_settings(mapping, seed=seed).check(len(sample))
        clusterer = build_clusterer(clustering, n_classes=n_classes if labelled else 0, seed=seed)
        clusterer.check(len(sample))

        doc_ids, texts = sample["doc_id"].tolist(), sample["text"].tolist()
        cache_dir = embedding.cache_dir or default_cache_dir(output.output_dir)
        # The tag lets a tag concurrency limit throttle one embedder's batch tasks (e.g. Gemini's).
        with watch("embed"), tags(f"embedder-{embedding.embedder}"):
            vectors, embedding_info = embed_documents(
                doc_ids, texts, embedding, seed=seed, layout=layout, cache_dir=cache_dir
            )
        with watch("map"):
            coords = map_task(doc_ids, vectors, mapping, seed=seed, layout=layout)
        with watch("cluster"):
            clusters = cluster_task(doc_ids, vectors, clusterer, layout=layout)["cluster"].to_numpy()
        class_names = sample["class_name"].to_numpy(dtype=object) if labelled else None
        with watch("evaluate"):
            evaluation = evaluate_task(class_names, clusters, layout=layout) if labelled else None
            metrics = {
                **(evaluation.metrics if evaluation else {}),
                "silhouette": silhouette(vectors, clusters, seed=seed),
            }
        with watch("publish"):
            publish_task(
                coords, class_names, clusters, evaluation, metrics, reducer=mapping.reducer, layout=layout
            )
    except PipelineError:
        # The run cannot finish as asked: keep no partial folder that a later run would meet.
        release_run(layout, discard=True)
        raise
    except BaseException:
        release_run(layout)
        raise
    manifest = _finish(
        layout,
        parameters={
            **{
                name: group.model_dump(mode="json")
                for name, group in {
                    "source": source,
                    "cleaning": cleaning,
                    "sampling": sampling,
                    "embedding": embedding,
                    "mapping": mapping,
                    "clustering": clustering,
                    "output": output,
                }.items()
            },
            "seed": seed,
        },
        counts={
            "ingested": len(corpus),
            "cleaned": dropped,
            "sampled": len(sample),
            "classes": n_classes,
            "clusters": int(len(set(clusters.tolist()))),
        },
        timings_s=watch.seconds,
        metrics=metrics,
        embedding=embedding_info,
    )
    if labelled and metrics["majority_collisions"]:
        logger.warning(
            "evaluate: %d classes share their majority cluster with another class; the tutorial's "
            "majority table overstates them (see majority_shared_with); per_class_accuracy uses a "
            "one-to-one matching instead",
            metrics["majority_collisions"],
        )
    if labelled:
        logger.info(
            "evaluate: Hungarian accuracy %.3f, ARI %.3f, NMI %.3f",
            metrics["hungarian_accuracy"],
            metrics["ari"],
            metrics["nmi"],
        )
    return manifest


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(newsgroups))
