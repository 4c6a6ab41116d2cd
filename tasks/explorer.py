"""What ``map.html``'s explorer panel needs, decided at publish: neighbours, central posts, label places, payload.

The browser only reads what is computed here: each post's five nearest
neighbours in embedding space, each cluster's most central posts, where the
cluster labels go on the map, and the full texts, gzipped and base64-encoded
so the page stays one file (its script reads them with the browser's own
``DecompressionStream`` after the first frame).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_NEIGHBOURS = 5
N_CENTRAL = 5
LABEL_PLOT_PX = (640, 420)
"""The plot size label places are checked at: smaller than the map at any usual window, so labels that do not
overlap here do not overlap there either (a bigger plot spreads the same data further apart)."""
LABEL_FONT_PX = (11.0, 18.0)
CHAR_WIDTH = 0.62
"""Width of a character of a sans-serif font, as a share of its size (a bound for most labels)."""


def script_json(value: Any) -> str:
    """JSON that can sit inside a ``<script>`` element, whatever its strings hold.

    ASCII only (no U+2028, no raw lone surrogate) and no ``<`` at all, so no
    text can close the element or open a comment in it.
    """
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")


def compress(value: Any) -> str:
    """``value`` as JSON, gzipped and base64-encoded (what the page's script decompresses)."""
    raw = json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def decompress(block: str) -> Any:
    """The inverse of :func:`compress`."""
    return json.loads(gzip.decompress(base64.b64decode(block)))


def nearest_neighbours(vectors: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    """Per row of ``vectors``, the rows of its ``k`` nearest others by cosine distance, nearest first.

    Returns an int array of shape (n, min(k, n - 1)).
    """
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors

    vectors = np.asarray(vectors, dtype=np.float32)
    k = min(k, len(vectors) - 1)
    if k <= 0:
        return np.zeros((len(vectors), 0), dtype=np.int64)
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(vectors)
    # Distances are computed in blocks of rows of this many MB. scikit-learn's default (1 GB) took the
    # whole corpus (18,583 x 384) to a 1.93 GB peak in 15.5 s; 64 MB: 0.49 GB in 6.6 s, same neighbours.
    with config_context(working_memory=64):
        found = index.kneighbors(return_distance=False, n_neighbors=k)
    return found.astype(np.int64)


def central_posts(
    points: np.ndarray, clusters: np.ndarray, k: int = N_CENTRAL, *, cosine: bool = True
) -> dict[int, list[int]]:
    """Per cluster (noise included), the rows of its ``k`` posts nearest to its centre, nearest first.

    With ``cosine`` (embeddings) the centre is the mean direction; without it
    (map coordinates) the mean point, by Euclidean distance.
    """
    points = np.asarray(points, dtype=np.float64)
    if cosine:
        points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    central = {}
    for cluster in np.unique(clusters).tolist():
        rows = np.flatnonzero(clusters == cluster)
        centre = points[rows].mean(axis=0)
        closeness = points[rows] @ centre if cosine else -np.linalg.norm(points[rows] - centre, axis=1)
        central[int(cluster)] = rows[np.argsort(-closeness, kind="stable")[:k]].tolist()
    return central


@dataclass(frozen=True)
class Label:
    """One cluster label on the map: its text, where its centre goes (data units) and its font size (px)."""

    text: str
    x: float
    y: float
    font_px: float


NUDGES = (0.5, 1.0, 1.5)
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def label_box(x_px: float, y_px: float, text: str, font_px: float) -> tuple[float, float, float, float]:
    """A label's box in pixels (left, bottom, right, top), centred on (x_px, y_px), with a little padding."""
    half_w = (CHAR_WIDTH * font_px * len(text) + 6) / 2
    half_h = (1.25 * font_px + 4) / 2
    return (x_px - half_w, y_px - half_h, x_px + half_w, y_px + half_h)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
    texts: Sequence[str],
    centres: np.ndarray,
    sizes: Sequence[int],
    extent: tuple[float, float, float, float],
    *,
    plot_px: tuple[int, int] = LABEL_PLOT_PX,
) -> list[Label]:
    """Labels that do not overlap: greedy by cluster size, each nudged up, down or sideways if it must be.

    ``centres`` (k, 2) are the clusters' centres in data units, ``extent`` the
    data's (xmin, ymin, xmax, ymax) drawn on ``plot_px`` pixels. The biggest
    cluster is placed first at its centre (moved in from the edge if its box
    would stick out); each next one at the first of its centre and eight nudges
    (half a box up, down, right, left, then a whole box, then one and a half)
    where its box overlaps none placed and stays inside the plot. A label with no such place is dropped. Font size grows with the square root of the cluster's
    size, from 11 to 18 px.
    """
    xmin, ymin, xmax, ymax = extent
    width, height = plot_px
    sx = width / max(xmax - xmin, 1e-9)
    sy = height / max(ymax - ymin, 1e-9)
    biggest = max(sizes, default=1)
    low, high = LABEL_FONT_PX
    placed: list[tuple[Label, tuple[float, ...]]] = []
    for i in sorted(range(len(texts)), key=lambda i: (-sizes[i], i)):
        font = round(low + (high - low) * float(np.sqrt(sizes[i] / biggest)), 1)
        box = label_box(0, 0, texts[i], font)
        w, h = box[2] - box[0], box[3] - box[1]
        if w > width or h > height:
            continue
        # A centre near the edge moves in, so that the label stays whole on the plot.
        cx = min(max((centres[i][0] - xmin) * sx, w / 2), width - w / 2)
        cy = min(max((centres[i][1] - ymin) * sy, h / 2), height - h / 2)
        for dx, dy in [(0, 0)] + [(f * w * a, f * h * b) for f in NUDGES for a, b in DIRECTIONS]:
            candidate = label_box(cx + dx, cy + dy, texts[i], font)
            inside = (
                candidate[0] >= 0 and candidate[1] >= 0 and candidate[2] <= width and candidate[3] <= height
            )
            if inside and not any(_overlap(candidate, other) for _, other in placed):
                placed.append(
                    (Label(texts[i], xmin + (cx + dx) / sx, ymin + (cy + dy) / sy, font), candidate)
                )
                break
    return [label for label, _ in placed]
