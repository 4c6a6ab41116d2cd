"""Publish: PNG plots in the run folder, and Prefect artifacts (accuracy table, summary with plots)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.evaluate import Evaluation
from tasks.interactive import render_map_html
from tasks.layout import RunLayout, write_png
from tasks.mapdata import MapData, categorical_columns, prepare_map
from tasks.plots import confusion_figure, map_figure, sweep_figure
from tasks.sample import class_names
from tasks.text import markdown_code, markdown_text

ACCURACY_KEY = "newsgroups-accuracy"
SUMMARY_KEY = "newsgroups-summary"
CLUSTERS_KEY = "newsgroups-clusters"
SAMPLE_OWN_COLUMNS = ("doc_id", "text", "label", "class_name")


def render_plots(
    data: MapData, evaluation: Evaluation | None, clustering: dict[str, Any] | None = None
) -> dict[str, plt.Figure]:
    """The run's figures by file name: map by class, map by cluster, confusion matrix, k sweep.

    Without labels only the map by cluster is drawn; the sweep only when
    ``clustering`` (a clusterer's ``describe()``) holds one.
    """
    label = data.reducer_label
    figures = {}
    if data.labelled:
        figures["map_by_class"] = map_figure(data, by="class", title=f"Scatter plot of posts using {label}")
    figures["map_by_cluster"] = map_figure(
        data, by="cluster", title=f"Clusters of the embeddings on the {label} map"
    )
    if evaluation is not None:
        figures["confusion_matrix"] = confusion_figure(
            evaluation.confusion, title="Confusion matrix for actual and clustered classes"
        )
    if clustering and clustering.get("sweep"):
        figures["n_clusters_sweep"] = sweep_figure(
            pd.DataFrame(clustering["sweep"]), chosen=clustering["n_clusters_resolved"]
        )
    return figures


def summary_markdown(
    run_name: str,
    metrics: dict[str, Any],
    table: pd.DataFrame | None,
    images: dict[str, Path],
    *,
    interactive: Path | None = None,
) -> str:
    """Markdown of the run's metrics, per-class table and plots (inlined as data-URI PNGs).

    Class names and the run name are written as plain text (:func:`~tasks.text.markdown_text`).

    ``interactive`` is the path of ``map.html``, named so a reader can open it
    (the UI does not open local files itself).
    """
    lines = [f"# Run {markdown_code(run_name)}", ""]
    if interactive is not None:
        lines += [
            f"Interactive map (open it in a browser, offline): {markdown_code(interactive.resolve())}",
            "",
        ]
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in metrics.items()
        if not isinstance(v, dict)
    ]
    if table is not None:
        lines += [
            "",
            "| class | posts | accuracy | majority share | majority shared with |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {markdown_text(r.class_name)} | {r.n_docs} | {r.accuracy:.3f} | {r.majority_share:.3f} "
            f"| {markdown_text(r.majority_shared_with) if r.majority_shared_with else '-'} |"
            for r in table.itertuples()
        ]
    for name, path in images.items():
        lines += ["", f"## {name.replace('_', ' ')}", "", png_markdown(name, path)]
    return "\n".join(lines) + "\n"


def png_markdown(name: str, path: Path) -> str:
    """A Markdown image with the PNG inlined as a data URI (the Prefect UI does not load file:// images)."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{name}](data:image/png;base64,{encoded})"


def save_plots(figures: dict[str, plt.Figure], layout: RunLayout) -> dict[str, Path]:
    """Write each figure as ``<name>.png`` in the run folder and close it."""
    paths = {}
    for name, figure in figures.items():
        paths[name] = write_png(figure, layout.plot(name))
        plt.close(figure)
    return paths


@task(name="publish", task_run_name="publish")
def publish_task(
    sample: pd.DataFrame,
    coords: pd.DataFrame,
    clusters: np.ndarray,
    evaluation: Evaluation | None,
    metrics: dict[str, Any],
    *,
    reducer_label: str,
    vectors: np.ndarray | None = None,
    names: pd.DataFrame | None = None,
    clustering: dict[str, Any] | None = None,
    layout: RunLayout,
    added: np.ndarray | None = None,
    base_name: str | None = None,
) -> dict[str, Path]:
    """Prefect task: prepare the map once, render it (PNGs, ``map.html``), then publish the artifacts.

    ``sample`` gives each point its text (for hover) and class; ``coords`` and
    ``clusters`` are in the sample's order; ``names`` is the ``clusters.parquet``
    table; ``vectors`` (the posts' embeddings) give ``map.html`` each post's
    nearest neighbours. The sample's columns other than its own (``doc_id``,
    ``text``, ``label``, ``class_name``) are offered for colouring there.
    ``added`` (an update's) marks the posts new since the run ``base_name``:
    the PNG maps draw them on top, ``map.html`` can show them alone. Returns the
    paths of the pictures by name, ``map_html`` included.
    """
    data = prepare_map(
        coords,
        sample["text"].tolist(),
        clusters,
        class_names(sample),
        reducer_label=reducer_label,
        cluster_names=dict(zip(names["cluster"], names["name"], strict=True)) if names is not None else None,
        matched_classes=evaluation.matched_classes() if evaluation is not None else None,
        vectors=vectors,
        columns=categorical_columns(sample, exclude=SAMPLE_OWN_COLUMNS),
        added=added,
        base_name=base_name,
    )
    images = save_plots(render_plots(data, evaluation, clustering), layout)
    page = render_map_html(
        data, layout.map_html, title=f"Run {layout.root.name}: posts on the {reducer_label} map"
    )
    if names is not None:
        create_table_artifact(
            key=CLUSTERS_KEY,
            table=[
                {
                    "cluster": int(r.cluster),
                    "posts": int(r.size),
                    "name": r.name,
                    "matched class": r.matched_class or "-",
                    "top terms": ", ".join(r.terms),
                }
                for r in names.itertuples()
            ],
            description=f"Clusters of run {layout.root.name}, named by their most distinctive terms",
        )
    table = evaluation.table if evaluation is not None else None
    if table is not None:
        create_table_artifact(
            key=ACCURACY_KEY,
            table=[
                {
                    "class": r.class_name,
                    "posts": int(r.n_docs),
                    "accuracy": round(float(r.accuracy), 4),
                    "majority share": round(float(r.majority_share), 4),
                    "majority shared with": r.majority_shared_with or "-",
                }
                for r in table.itertuples()
            ],
            description=f"Per-class accuracy of run {layout.root.name}",
        )
    create_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=summary_markdown(layout.root.name, metrics, table, images, interactive=page),
        description=f"Summary and plots of run {layout.root.name}",
    )
    return {**images, "map_html": page}
