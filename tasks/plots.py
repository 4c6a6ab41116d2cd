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
from matplotlib.lines import Line2D  # noqa: E402

from tasks.mapdata import MapData  # noqa: E402
from tasks.text import matplotlib_text  # noqa: E402

# Legends longer than this would cover the figure: the interactive map lists every group.
MAX_LEGEND_ENTRIES = 30
# Rows (largest classes) of the confusion figure: its size grows with their square.
MAX_CONFUSION_CLASSES = 30
OTHER_CLASSES = "other classes"


def point_size(n_points: int) -> float:
    """Marker area that keeps 100 points visible and 20,000 points readable."""
    return float(np.clip(6000 / max(n_points, 1), 2, 40))


def map_figure(data: MapData, *, by: Literal["class", "cluster"], title: str) -> Figure:
    """The 2-D map, one colour per class or per cluster, legend outside on the right.

    Unassigned posts are drawn grey and first, so assigned ones stay on top. The
    points are one scatter whatever the number of groups; the legend lists the
    first :data:`MAX_LEGEND_ENTRIES` groups, as written (:func:`~tasks.text.matplotlib_text`);
    an update's added posts are drawn last, outlined, on top of all.
    """
    points = data.points
    column, colours, legend_title = (
        ("class_name", data.class_colours, "Class")
        if by == "class"
        else ("cluster_label", data.cluster_colours, "Cluster: name (matched class)")
    )
    # The last group in the legend order is drawn first, so the first ones stay on top.
    rank = {value: i for i, value in enumerate(reversed(list(colours)))}
    drawn = points[points[column].isin(rank)]
    drawn = drawn.iloc[np.argsort(drawn[column].map(rank).to_numpy(), kind="stable")]
    with sns.axes_style("darkgrid", {"grid.color": ".6", "grid.linestyle": ":"}):
        figure, axes = plt.subplots(figsize=(8, 6))
        size = point_size(len(points))
        axes.scatter(
            drawn["x"], drawn["y"], s=size, c=drawn[column].map(colours).tolist(), linewidths=0, alpha=0.85
        )
        new_label = None if data.base_name is None else matplotlib_text(f"new since {data.base_name}")
        if new_label is not None:
            new = points[points["added"]]
            axes.scatter(
                new["x"],
                new["y"],
                s=size * 1.6,
                c=new["class_colour" if by == "class" else "cluster_colour"].tolist(),
                edgecolors="black",
                linewidths=0.6,
            )
        axes.set(xlabel=f"{data.reducer_label} 1", ylabel=f"{data.reducer_label} 2", title=title)
        shown = list(colours)[:MAX_LEGEND_ENTRIES]
        # Handles given with their labels: matplotlib hides a label starting with "_" only when it collects them.
        handles = [
            Line2D(
                [], [], linestyle="", marker="o", markersize=6, markerfacecolor=colours[v], markeredgewidth=0
            )
            for v in shown
        ]
        labels = [matplotlib_text(v) for v in shown]
        if len(colours) > len(shown):
            handles.append(Line2D([], [], linestyle=""))
            labels.append(f"(and {len(colours) - len(shown):,} more; see map.html)")
        if new_label is not None:
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="",
                    marker="o",
                    markersize=6,
                    markerfacecolor="white",
                    markeredgecolor="black",
                )
            )
            labels.append(new_label)
        axes.legend(
            handles, labels, title=legend_title, loc="upper left", bbox_to_anchor=(1, 1), frameon=False
        )
    return figure


def confusion_matrix_shown(
    confusion: pd.DataFrame, *, max_classes: int = MAX_CONFUSION_CLASSES
) -> pd.DataFrame:
    """The wide confusion matrix drawn: the ``max_classes`` largest classes (rows) against what they were predicted as.

    Columns are the classes shown, in the same order, then any other prediction
    among them (a cluster matched to no shown class, noise), then ``other
    classes``: every prediction of a class not shown, pooled. The full matrix
    stays in ``confusion.parquet``.
    """
    sizes = confusion.groupby("class_name")["count"].sum()
    kept = sorted(sizes.sort_values(ascending=False, kind="stable").index[:max_classes])
    rows = confusion[confusion["class_name"].isin(kept)]
    classes = set(sizes.index)
    left_out = classes - set(kept)
    predicted = rows["predicted"].where(~rows["predicted"].isin(left_out), OTHER_CLASSES)
    matrix = (
        rows.assign(predicted=predicted)
        .pivot_table(index="class_name", columns="predicted", values="count", fill_value=0, aggfunc="sum")
        .reindex(kept)
    )
    columns = [c for c in kept if c in matrix.columns]
    columns += sorted(c for c in matrix.columns if c not in kept and c != OTHER_CLASSES)
    columns += [OTHER_CLASSES] if OTHER_CLASSES in matrix.columns else []
    return matrix.reindex(columns=columns, fill_value=0).astype(int)


def confusion_figure(confusion: pd.DataFrame, *, title: str) -> Figure:
    """Heat map of true class (rows) against predicted class (columns), with counts.

    ``confusion`` is the long form of :class:`tasks.evaluate.Evaluation.confusion`.
    Beyond :data:`MAX_CONFUSION_CLASSES` classes only the largest are drawn
    (:func:`confusion_matrix_shown`) and the title says how many were left out,
    so the figure's size and memory stay bounded whatever the class count.
    """
    matrix = confusion_matrix_shown(confusion)
    n_classes = confusion["class_name"].nunique()
    if n_classes > len(matrix):
        title = (
            f"{title}\n(the {len(matrix)} largest of {n_classes:,} classes; "
            f"{n_classes - len(matrix):,} left out, all in confusion.parquet)"
        )
    matrix = matrix.rename(index=matplotlib_text, columns=matplotlib_text)
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
