"""Comparing variants of one run on the same sample: the variants, their table and their maps side by side."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.check import check_settings
from tasks.config import RunSettings
from tasks.embed._gemini import KEY_VARIABLES
from tasks.layout import (
    COMPARISON_SCHEMA,
    NOISE,
    NOISE_LABEL,
    RunLayout,
    default_run_name,
    documents_schema,
    write_png,
    write_table,
)
from tasks.mapdata import NOISE_COLOUR, prepare_map
from tasks.plots import point_size
from tasks.publish import png_markdown
from tasks.sample import class_names

COMPARISON_KEY = "newsgroups-comparison"
MAPS_NAME = "comparison_maps"


def default_embedders(environ: dict[str, str]) -> list[str]:
    """The embedders compared by default: local and tfidf, and gemini when an API key is set."""
    return ["local", "tfidf", *(["gemini"] if any(environ.get(v) for v in KEY_VARIABLES) else [])]


def checked_variants(
    parameters: dict[str, Any], embedders: Sequence[str] | None, clusterers: Sequence[str] | None
) -> tuple[RunSettings, dict[str, tuple[RunSettings, dict[str, Any]]]]:
    """A comparison's own settings, and each variant's with what its check resolved; all checked before any work."""
    output = parameters["output"]
    name = output.run_name or default_run_name("compare")
    base = RunSettings(**parameters | {"output": output.model_copy(update={"run_name": name})})
    runs = variants(
        base, embedders or default_embedders(dict(os.environ)), clusterers or ["kmeans", "hdbscan"]
    )
    return base, {name: (settings, check_settings(settings)) for name, settings in runs.items()}


def variants(
    base: RunSettings, embedders: Sequence[str], clusterers: Sequence[str]
) -> dict[str, RunSettings]:
    """One settings per embedder x clusterer, named ``<base run name>-<embedder>-<clusterer>``."""
    runs = {}
    for embedder in embedders:
        for clusterer in clusterers:
            name = f"{base.output.run_name}-{embedder}-{clusterer}"
            runs[name] = base.model_copy(
                update={
                    "embedding": base.embedding.model_copy(update={"embedder": embedder}),
                    "clustering": base.clustering.model_copy(update={"clusterer": clusterer}),
                    "output": base.output.model_copy(update={"run_name": name}),
                }
            )
    # Validated as a whole, so a name that no registry knows is refused like on the command line.
    return {name: RunSettings.model_validate(settings.model_dump()) for name, settings in runs.items()}


def distinct_plans(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each embedder's plan once: the variants that share an embedder (one per clusterer) share its plan."""
    return list({json.dumps(plan, sort_keys=True): plan for plan in plans}.values())


def comparison_row(manifest: dict[str, Any]) -> dict[str, Any]:
    """One row of the comparison table from a variant's manifest."""
    metrics, embedding = manifest["metrics"], manifest["embedding"]
    cache = embedding.get("cache")
    sampled = manifest["counts"]["sampled"]
    return {
        "run": manifest["run_name"],
        "embedder": manifest["parameters"]["embedding"]["embedder"],
        "clusterer": manifest["parameters"]["clustering"]["clusterer"],
        "clusters": manifest["counts"]["clusters"],
        "hungarian_accuracy": metrics.get("hungarian_accuracy"),
        "accuracy_with_noise": metrics.get("hungarian_accuracy_with_noise"),
        "noise_share": metrics.get("noise_share"),
        "ari": metrics.get("ari"),
        "nmi": metrics.get("nmi"),
        "silhouette": metrics.get("silhouette"),
        "seconds": round(sum(manifest["timings_s"].values()), 2),
        "embedded": cache["embedded"] if cache else sampled,
        "from_cache": cache["hits"] if cache else 0,
    }


def maps_figure(roots: dict[str, Any], table: pd.DataFrame) -> Figure:
    """Small multiples: each variant's map, clusters in their matched class's colour, accuracy in the title."""
    columns = min(3, len(roots))
    rows = math.ceil(len(roots) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4 * rows), squeeze=False)
    legend: dict[str, str] = {}
    for ax, (name, root) in zip(axes.flat, roots.items(), strict=False):
        sample = pq.read_table(root / "sample.parquet").to_pandas()
        coords = pq.read_table(root / "map.parquet").to_pandas()
        clusters = pq.read_table(root / "assignments.parquet").to_pandas()["cluster"].to_numpy()
        matched = {}
        if (root / "evaluation.parquet").exists():
            evaluation = pq.read_table(root / "evaluation.parquet").to_pandas()
            matched = dict(zip(evaluation["matched_cluster"], evaluation["class_name"], strict=True))
        data = prepare_map(
            coords,
            sample["text"].tolist(),
            clusters,
            class_names(sample),
            reducer_label="",
            matched_classes=matched,
        )
        ax.scatter(
            data.points["x"],
            data.points["y"],
            c=data.points["cluster_colour"],
            s=point_size(len(coords)) / 2,
            linewidths=0,
        )
        row = table.set_index("run").loc[name]
        score = "" if pd.isna(row["hungarian_accuracy"]) else f"\naccuracy {row['hungarian_accuracy']:.3f}"
        noise = f", {row['noise_share']:.0%} unassigned" if row["noise_share"] else ""
        ax.set_title(f"{row['embedder']} + {row['clusterer']}{score}{noise}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        # A cluster is drawn in the colour of the class it was matched to.
        legend.update(data.class_colours)
        if (data.points["cluster"] == NOISE).any():
            legend[NOISE_LABEL] = NOISE_COLOUR
    for ax in list(axes.flat)[len(roots) :]:
        ax.axis("off")
    if legend:
        handles = [Line2D([], [], marker="o", linestyle="", color=colour) for colour in legend.values()]
        figure.legend(handles, list(legend), loc="lower center", ncol=min(6, len(legend)), frameon=False)
    figure.tight_layout(rect=(0, 0.06 if legend else 0, 1, 1))
    return figure


@task(name="compare-publish", task_run_name="compare-publish")
def publish_comparison(
    manifests: dict[str, dict[str, Any]], roots: dict[str, Any], *, layout: RunLayout
) -> pd.DataFrame:
    """Write ``comparison.parquet`` and the maps side by side; publish both as artifacts."""
    table = pd.DataFrame([comparison_row(manifest) for manifest in manifests.values()])
    write_table(table, layout.comparison, COMPARISON_SCHEMA)
    figure = maps_figure(roots, table)
    image = write_png(figure, layout.plot(MAPS_NAME))
    plt.close(figure)
    records = table.replace({np.nan: None}).to_dict(orient="records")
    create_table_artifact(
        key=COMPARISON_KEY, table=records, description=f"Variants compared in {layout.root.name}"
    )
    create_markdown_artifact(
        key=f"{COMPARISON_KEY}-maps",
        markdown=f"# Comparison `{layout.root.name}`\n\n{png_markdown(MAPS_NAME, image)}\n",
        description=f"Maps of the variants compared in {layout.root.name}",
    )
    return table


@task(name="sample-copy", task_run_name="sample-copy")
def keep_sample(sample: pd.DataFrame, *, layout: RunLayout) -> None:
    """Write the shared sample into a variant's run folder, so each folder keeps the output contract."""
    write_table(sample, layout.sample, documents_schema(sample.columns))
