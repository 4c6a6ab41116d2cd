"""Compare embedders and clusterers on one sample: ``python -m flows.compare``.

The sample is drawn once; each variant (embedder x clusterer) runs the same
stages as ``flows/newsgroups.py`` into a run folder of its own, named
``<comparison>-<embedder>-<clusterer>``. The comparison's own folder holds
``comparison.parquet`` (accuracy, ARI, NMI, noise share, seconds, texts
embedded and taken from the cache, per variant) and ``comparison_maps.png``,
both also published as Prefect artifacts.
"""

from __future__ import annotations

if __name__ == "__main__":
    # The command line (declared in flows/cli.py, COMMANDS) refuses a bad flag or file before the
    # imports below run: Prefect and the stages take seconds to import.
    from flows.entry import run_command_line

    run_command_line("flows.compare:compare")

from typing import Any

from prefect import flow

from tasks.compare import checked_variants, distinct_plans, keep_sample, publish_comparison
from tasks.config import (
    CleaningSettings,
    ClustererName,
    ClusterSettings,
    EmbedderName,
    EmbeddingSettings,
    ExecutionSettings,
    MapSettings,
    OutputSettings,
    PresetName,
    SamplingSettings,
    Seed,
    SourceSettings,
)
from tasks.corpus_store import draw_sample
from tasks.pipeline import analyse_sample
from tasks.run import open_run


@flow(name="newsgroups-compare", log_prints=True)
def compare(
    source: SourceSettings = SourceSettings(),
    cleaning: CleaningSettings = CleaningSettings(),
    sampling: SamplingSettings = SamplingSettings(),
    embedding: EmbeddingSettings = EmbeddingSettings(),
    mapping: MapSettings = MapSettings(),
    clustering: ClusterSettings = ClusterSettings(),
    output: OutputSettings = OutputSettings(),
    execution: ExecutionSettings = ExecutionSettings(),
    seed: Seed = 0,
    preset: PresetName | None = None,
    embedders: list[EmbedderName] | None = None,
    clusterers: list[ClustererName] | None = None,
) -> dict[str, Any]:
    """Run one sample through several embedders and clusterers, and compare them side by side.

    Parameters
    ----------
    source, cleaning, sampling, embedding, mapping, clustering, output, execution : settings models
        As for ``python -m flows.newsgroups``; every variant shares them.
    preset : {"fast", "best"}, optional
        A named configuration resolved into explicit settings (logged, and kept in
        the manifest); settings given explicitly win over it.
    seed : int, default=0
        Seed of every random step (0 to 2**32-1).
    embedders : list of str, default=local tfidf (and gemini when an API key is set)
        The embedders to compare.
    clusterers : list of str, default=kmeans hdbscan
        The clusterers to compare, each on every embedder's vectors.

    Returns
    -------
    dict
        The comparison's manifest; its ``comparison`` holds one row per variant.
    """
    base, runs = checked_variants(
        dict(
            source=source,
            cleaning=cleaning,
            sampling=sampling,
            embedding=embedding,
            mapping=mapping,
            clustering=clustering,
            output=output,
            execution=execution,
            seed=seed,
            preset=preset,
        ),
        embedders,
        clusterers,
    )
    with open_run(base) as comparison:
        sample = draw_sample(comparison, base)
        manifests, roots = {}, {}
        for variant, (settings, resolved) in runs.items():
            with open_run(settings) as run:
                run.step("sample", keep_sample, sample, layout=run.layout)
                run.record(counts=comparison.report["counts"])
                analyse_sample(run, sample, settings, resolved)
            manifests[variant], roots[variant] = run.manifest, run.layout.root
        if base.embedding.plan:
            comparison.discard()
            comparison.record(plans=distinct_plans([manifest["plan"] for manifest in manifests.values()]))
        else:
            table = comparison.step("publish", publish_comparison, manifests, roots, layout=comparison.layout)
            comparison.record(comparison=table.to_dict(orient="records"))
    if base.embedding.plan:
        return {"planned_only": True, "plans": comparison.manifest["plans"]}
    return comparison.manifest
