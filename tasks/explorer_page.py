"""The parts of ``map.html`` that feed its explorer panel: cluster labels, the panel's settings and its posts.

:mod:`tasks.interactive` puts them in the page; :mod:`tasks.explorer` computes
what they hold (neighbours, central posts, label places).
"""

from __future__ import annotations

import html

import numpy as np

from tasks.explorer import place_labels
from tasks.layout import NOISE
from tasks.mapdata import MapData, palette

LABEL_TERMS = 3
"""A label on the map names a cluster by this many of its top terms."""


def cluster_labels(data: MapData) -> list[dict]:
    """The cluster labels drawn on the map, as plotly annotations (see :func:`tasks.explorer.place_labels`).

    Each names its cluster by its first :data:`LABEL_TERMS` terms (or its
    number); unassigned posts get none.
    """
    points = data.points[data.points["cluster"] != NOISE]
    if points.empty:
        return []
    groups = points.groupby("cluster", sort=True)
    texts = [
        ", ".join(data.names[c].split(", ")[:LABEL_TERMS]) if c in data.names else f"cluster {c}"
        for c in groups.groups
    ]
    centres = groups[["x", "y"]].median().to_numpy(np.float64)
    extent = (*data.points[["x", "y"]].min(), *data.points[["x", "y"]].max())
    labels = place_labels(texts, centres, groups.size().tolist(), tuple(map(float, extent)))
    return [
        {
            "x": label.x,
            "y": label.y,
            # plotly decodes &amp; &lt; &gt; but shows &quot; as it is; a quote outside a tag is text.
            "text": html.escape(label.text, quote=False),
            "showarrow": False,
            "font": {"size": label.font_px, "color": "#222"},
            "bgcolor": "rgba(255,255,255,0.6)",
            "borderpad": 1,
            "visible": True,
        }
        for label in labels
    ]


def explorer_settings(data: MapData, n_cluster: int, n_class: int) -> dict:
    """What the explorer panel needs before the texts: clusters (in trace order), classes, columns, trace indices."""
    points = data.points
    sizes = points["cluster_label"].value_counts()
    numbers = points.groupby("cluster_label")["cluster"].first()
    classes = list(data.class_colours)
    clusters = []
    for trace, (label, colour) in enumerate(data.cluster_colours.items()):
        number = int(numbers[label])
        clusters.append(
            {
                "label": label,
                "name": data.names.get(number),
                "matched": data.matched.get(number),
                "size": int(sizes[label]),
                "colour": colour,
                "trace": trace,
                "central": data.central.get(number, []),
            }
        )
    columns = []
    for name, values in data.columns.items():
        distinct = sorted(set(values))
        columns.append({"name": name, "values": distinct, "colours": list(palette(distinct).values())})
    return {
        "clusters": clusters,
        "classes": classes,
        "columns": columns,
        "clusterTraces": list(range(n_cluster)),
        "highlight": n_cluster + n_class,
    }


def explorer_payload(data: MapData, settings: dict) -> dict:
    """The posts, column by column, for the explorer panel: the page carries it compressed (:func:`compress`)."""
    points = data.points
    cluster_index = {c["label"]: k for k, c in enumerate(settings["clusters"])}
    class_index = {name: k for k, name in enumerate(settings["classes"])}
    columns = {}
    for column in settings["columns"]:
        codes = {value: k for k, value in enumerate(column["values"])}
        columns[column["name"]] = [codes[v] for v in data.columns[column["name"]]]
    return {
        "doc_id": points["doc_id"].astype(str).tolist(),
        "subject": points["subject"].tolist(),
        "text": points["text"].tolist(),
        "class": [class_index.get(c, -1) for c in points["class_name"]],
        "cluster": [cluster_index[c] for c in points["cluster_label"]],
        "neighbours": data.neighbours.tolist() if data.neighbours is not None else None,
        "columns": columns,
    }
