"""Static renderers: the map as a PNG-ready figure, and the confusion matrix.

They only draw what :func:`tasks.mapdata.prepare_map` decided (colours, legend
labels, noise); functions here return matplotlib figures and write nothing,
``tasks/publish.py`` saves them.
"""

from __future__ import annotations

from typing import Literal

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tasks.mapdata import MapData  # noqa: E402

# Legends longer than this would cover the figure: the interactive map lists every group.
MAX_LEGEND_ENTRIES = 30


def point_size(n_points: int) -> float:
    """Marker area that keeps 100 points visible and 20,000 points readable."""
    return float(np.clip(6000 / max(n_points, 1), 2, 40))


def map_figure(data: MapData, *, by: Literal["class", "cluster"], title: str) -> Figure:
    """The 2-D map, one colour per class or per cluster, legend outside on the right.

    Unassigned posts are drawn grey and first, so assigned ones stay on top; an
    update's added posts are drawn last, outlined, on top of all.
    """
    points = data.points
    column, colours, legend_title = (
        ("class_name", data.class_colours, "Class")
        if by == "class"
        else ("cluster_label", data.cluster_colours, "Cluster: name (matched class)")
    )
    with sns.axes_style("darkgrid", {"grid.color": ".6", "grid.linestyle": ":"}):
        figure, axes = plt.subplots(figsize=(8, 6))
        size = point_size(len(points))
        for value, colour in reversed(colours.items()):
            group = points[points[column] == value]
            axes.scatter(group["x"], group["y"], s=size, c=colour, linewidths=0, alpha=0.85, label=value)
        if data.base_name is not None:
            new = points[points["added"]]
            axes.scatter(
                new["x"],
                new["y"],
                s=size * 1.6,
                c=new["class_colour" if by == "class" else "cluster_colour"],
                edgecolors="black",
                linewidths=0.6,
                label=f"new since {data.base_name}",
            )
        axes.set(xlabel=f"{data.reducer_label} 1", ylabel=f"{data.reducer_label} 2", title=title)
        handles, labels = axes.get_legend_handles_labels()
        order = list(colours)[:MAX_LEGEND_ENTRIES] + (
            [f"new since {data.base_name}"] if data.base_name is not None else []
        )
        by_label = dict(zip(labels, handles, strict=True))
        axes.legend(
            [by_label[label] for label in order],
            order,
            title=legend_title,
            loc="upper left",
            bbox_to_anchor=(1, 1),
            frameon=False,
            markerscale=max(1.0, 30 / size) ** 0.5,
        )
    return figure


def confusion_figure(confusion: pd.DataFrame, *, title: str) -> Figure:
    """Heat map of true class (rows) against predicted class (columns), with counts.

    ``confusion`` is the long form of :class:`tasks.evaluate.Evaluation.confusion`.
    """
    matrix = confusion.pivot_table(
        index="class_name", columns="predicted", values="count", fill_value=0, aggfunc="sum"
    )
    columns = [c for c in matrix.index if c in matrix.columns] + [
        c for c in matrix.columns if c not in matrix.index
    ]
    matrix = matrix.reindex(columns=columns, fill_value=0)
    size = max(5.0, 0.55 * len(matrix) + 3)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(matrix, annot=len(matrix) <= 20, fmt="d", cmap="Blues", cbar=False, square=True, ax=axes)
    axes.set(xlabel="Predicted (cluster matched to a class)", ylabel="Actual class", title=title)
    axes.tick_params(axis="x", labelrotation=45)
    plt.setp(axes.get_xticklabels(), ha="right")
    return figure


def sweep_figure(sweep: pd.DataFrame, *, chosen: int) -> Figure:
    """Silhouette against the number of clusters tried by ``--n-clusters auto``, the choice marked."""
    with sns.axes_style("whitegrid"):
        figure, axes = plt.subplots(figsize=(5, 3))
        axes.plot(sweep["n_clusters"], sweep["silhouette"], marker="o", color="#4c72b0")
        axes.axvline(chosen, color="#c44e52", linestyle="--", label=f"chosen: {chosen}")
        axes.set(
            xlabel="Number of clusters", ylabel="Silhouette (cosine)", title="Choosing the number of clusters"
        )
        axes.legend(frameon=False)
    return figure
