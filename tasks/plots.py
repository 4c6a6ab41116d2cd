"""Plots of a run: the map coloured by class and by cluster, and the confusion matrix.

Functions here return matplotlib figures and write nothing; ``tasks/publish.py`` saves them.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

NOISE_COLOUR = "#b0b0b0"


def point_size(n_points: int) -> float:
    """Marker area that keeps 100 points visible and 20,000 points readable."""
    return float(np.clip(6000 / max(n_points, 1), 2, 40))


def class_palette(names: list[str]) -> dict[str, tuple[float, float, float]]:
    """One distinct colour per name, assigned in sorted order (so every plot agrees)."""
    order = sorted(set(names), key=str)
    return dict(zip(order, sns.color_palette("hls", len(order)), strict=True))


def scatter_figure(
    coords: pd.DataFrame,
    hue: np.ndarray,
    *,
    title: str,
    legend_title: str,
    reducer: str = "t-SNE",
    palette: dict | None = None,
) -> Figure:
    """The 2-D map, one colour per value of ``hue`` (n,), legend outside on the right.

    ``coords`` has columns ``x`` and ``y`` (n rows). ``palette`` maps each hue
    value to a colour (default: :func:`class_palette`); missing values are grey.
    """
    order = sorted(set(hue), key=str)
    palette = {value: (palette or class_palette(order)).get(value, NOISE_COLOUR) for value in order}
    with sns.axes_style("darkgrid", {"grid.color": ".6", "grid.linestyle": ":"}):
        figure, axes = plt.subplots(figsize=(8, 6))
        sns.scatterplot(
            x=coords["x"].to_numpy(),
            y=coords["y"].to_numpy(),
            hue=hue,
            hue_order=order,
            palette=palette,
            s=point_size(len(coords)),
            linewidth=0,
            alpha=0.85,
            ax=axes,
        )
        axes.set(xlabel=f"{reducer} 1", ylabel=f"{reducer} 2", title=title)
        sns.move_legend(axes, "upper left", bbox_to_anchor=(1, 1), title=legend_title, frameon=False)
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
