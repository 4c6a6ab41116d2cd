"""The tutorial "Visualizing embeddings with t-SNE" as a Prefect flow.

Run it with ``python -m flows.newsgroups`` (``--help`` lists every parameter).
"""

from __future__ import annotations

if __name__ == "__main__":
    # The command line (declared in flows/cli.py, COMMANDS) refuses a bad flag or file before the
    # imports below run: Prefect and the stages take seconds to import.
    from flows.entry import run_command_line

    run_command_line("flows.newsgroups:newsgroups")

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.check import check_settings
from tasks.config import (
    CleaningSettings,
    ClusterSettings,
    EmbeddingSettings,
    ExecutionSettings,
    MapSettings,
    OutputSettings,
    PresetName,
    RunSettings,
    SamplingSettings,
    Seed,
    SourceSettings,
)
from tasks.corpus_store import draw_sample
from tasks.pipeline import analyse_sample
from tasks.run import open_run


def _flow_run_name() -> str:
    """Name runs after what distinguishes them (see :meth:`RunSettings.run_label`)."""
    return RunSettings.from_parameters(flow_run.parameters).run_label()


@flow(name="newsgroups", flow_run_name=_flow_run_name, log_prints=True)
def newsgroups(
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
) -> dict[str, Any]:
    """Embed a corpus, map it to 2-D, cluster it and score the clusters against the classes.

    The defaults reproduce the tutorial: 20 Newsgroups train split, the four
    ``sci.*`` groups, 150 posts each, local embeddings, t-SNE, KMeans with one
    cluster per class.

    Parameters
    ----------
    source, cleaning, sampling, embedding, mapping, clustering, output, execution : settings models
        One pydantic model per stage; see ``tasks/config.py`` or ``--help``.
    preset : {"fast", "best"}, optional
        A named configuration resolved into explicit settings (logged, and kept in
        the manifest); settings given explicitly win over it.
    seed : int, default=0
        Seed of every random step: sampling, SVD, t-SNE, KMeans (0 to 2**32-1).

    Returns
    -------
    dict
        The run's manifest, also written to ``<output_dir>/<run>/manifest.json``.
    """
    settings = RunSettings(
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
    )
    resolved = check_settings(settings)
    with open_run(settings, label=settings.embedding.embedder) as run:
        analyse_sample(run, draw_sample(run, settings), settings, resolved)
    return run.manifest
