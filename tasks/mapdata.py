"""What a map shows, prepared once for every renderer (the PNGs, ``map.html``).

Renderers only draw: colours, legend labels, the noise convention and the text
shown on hover are decided here, so the static and the interactive map agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import to_hex

from tasks.explorer import central_posts, nearest_neighbours
from tasks.layout import NOISE, NOISE_LABEL

NOISE_COLOUR = "#b0b0b0"
PREVIEW_CHARS = 200
MAX_COLUMN_VALUES = 30
"""A corpus column with more distinct values than this is not offered for colouring (too many colours)."""

POINT_COLUMNS = (
    "doc_id",
    "x",
    "y",
    "class_name",
    "cluster",
    "cluster_label",
    "class_colour",
    "cluster_colour",
    "subject",
    "preview",
    "text",
)


@dataclass(frozen=True)
class MapData:
    """One map, ready to draw.

    Attributes
    ----------
    points : DataFrame
        One row per post, columns :data:`POINT_COLUMNS`: coordinates ``x``, ``y``;
        ``class_name`` (None when unlabelled); ``cluster`` (int, :data:`NOISE` for
        unassigned); ``cluster_label`` (legend entry, e.g. ``"2: orbit, launch
        (sci.space)"`` or ``"unassigned"``); ``class_colour`` and ``cluster_colour``
        (hex); ``subject`` (first line of the post) and ``preview`` (the next
        ~200 characters), for hover; ``text``, the whole post.
    reducer_label : str
        Display name of the reducer ("t-SNE", "PCA", ...), for axis titles.
    class_colours, cluster_colours : dict of str to str
        Legend entries in display order -> hex colour; noise is last and grey.
        ``class_colours`` is empty when the corpus is unlabelled.
    neighbours : ndarray of int, shape (n, 5), optional
        Per post, the rows of its nearest posts in embedding space, nearest
        first; None when the vectors were not given.
    names, matched : dict of int to str
        The name (top terms) of each named cluster, and the class each matched
        cluster was matched to, by cluster number.
    central : dict of int to list of int
        Per cluster number (noise included), the rows of its most central posts.
    columns : dict of str to list of str
        The corpus's other categorical columns (at most
        :data:`MAX_COLUMN_VALUES` values each), a value per post ("" if missing).
    """

    points: pd.DataFrame
    reducer_label: str
    class_colours: dict[str, str]
    cluster_colours: dict[str, str]
    neighbours: np.ndarray | None = None
    names: dict[int, str] = field(default_factory=dict)
    matched: dict[int, str] = field(default_factory=dict)
    central: dict[int, list[int]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    base_name: str | None = None
    """An update's base run: ``points`` then has a boolean ``added`` column (new since that run)."""

    @property
    def labelled(self) -> bool:
        """Whether the posts carry true classes (so a map by class can be drawn)."""
        return bool(self.class_colours)


def palette(names: Sequence[str], *, muted: bool = False) -> dict[str, str]:
    """One distinct hex colour per name, assigned in sorted order, so every plot agrees.

    ``muted`` gives desaturated colours, for clusters that share a map with class colours.
    """
    order = sorted(set(names), key=str)
    colours = sns.color_palette("husl" if muted else "hls", len(order), desat=0.45 if muted else None)
    return dict(zip(order, map(to_hex, colours), strict=True))


def split_post(text: str, *, preview_chars: int = PREVIEW_CHARS) -> tuple[str, str]:
    r"""A cleaned post's subject (its first non-blank line) and the start of what follows.

    >>> split_post(" Orbits\n\nThe shuttle flew.")
    ('Orbits', 'The shuttle flew.')
    """
    lines = text.strip().split("\n", 1)
    subject = lines[0].strip()
    body = " ".join(lines[1].split()) if len(lines) > 1 else ""
    if len(body) > preview_chars:
        body = body[:preview_chars].rsplit(" ", 1)[0] + " …"
    return subject, body


def printable(text: object) -> str:
    """``text`` as a string any encoder takes: a lone surrogate becomes U+FFFD, pairs are joined."""
    return str(text).encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def categorical_columns(frame: pd.DataFrame, exclude: Sequence[str]) -> dict[str, list[str]]:
    """The columns of ``frame`` (not in ``exclude``) with 2 to :data:`MAX_COLUMN_VALUES` distinct values, as text."""
    columns = {}
    for name in frame.columns:
        if name in exclude:
            continue
        values = frame[name]
        if 2 <= values.nunique(dropna=True) <= MAX_COLUMN_VALUES:
            columns[printable(name)] = ["" if pd.isna(v) else printable(v) for v in values]
    return columns


def cluster_label(cluster: int, name: str | None, matched_class: str | None) -> str:
    """Legend entry of one cluster: number, name (its top terms) and matched class, if any.

    >>> cluster_label(2, "orbit, launch", "sci.space")
    '2: orbit, launch (sci.space)'
    >>> cluster_label(-1, None, None)
    'unassigned'
    """
    if cluster == NOISE:
        return NOISE_LABEL
    text = f"{cluster}: {name}" if name else f"cluster {cluster}"
    return f"{text} ({matched_class})" if matched_class else text


def prepare_map(
    coords: pd.DataFrame,
    texts: Sequence[str],
    clusters: np.ndarray,
    class_names: np.ndarray | None = None,
    *,
    reducer_label: str,
    cluster_names: Mapping[int, str] | None = None,
    matched_classes: Mapping[int, str] | None = None,
    vectors: np.ndarray | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    added: np.ndarray | None = None,
    base_name: str | None = None,
) -> MapData:
    """Decide what every renderer draws.

    Parameters
    ----------
    coords : DataFrame
        Columns ``doc_id``, ``x``, ``y``; n rows.
    texts : sequence of str
        The n cleaned posts, in the order of ``coords``.
    clusters : ndarray of int, shape (n,)
        Cluster labels; :data:`NOISE` marks unassigned points.
    class_names : ndarray of str, shape (n,), optional
        True classes; None for an unlabelled corpus.
    reducer_label : str
        Display name of the reducer.
    cluster_names : mapping of int to str, optional
        A short name per cluster (its top terms).
    matched_classes : mapping of int to str, optional
        The class each cluster was matched to by the evaluation. A matched
        cluster takes its class's colour, so both maps read alike.
    vectors : ndarray, shape (n, d), optional
        The posts' embeddings, for each post's nearest neighbours and each
        cluster's most central posts (without them: central on the map).
    columns : mapping of str to sequence of str, optional
        Other categorical columns to colour by (see :func:`categorical_columns`).
    added : ndarray of bool, shape (n,), optional
        An update's posts new since the run ``base_name``.
    base_name : str, optional
        The update's base run, named on the map.
    """
    clusters = np.asarray(clusters, dtype=int)
    texts = [printable(t) for t in texts]
    if class_names is not None:
        class_names = np.array([printable(c) for c in class_names], dtype=object)
    cluster_names = {c: printable(n) for c, n in (cluster_names or {}).items()}
    matched_classes = {c: printable(n) for c, n in (matched_classes or {}).items()}
    class_colours = palette(list(class_names)) if class_names is not None else {}
    ids = sorted(set(clusters.tolist()) - {NOISE})
    labels = {c: cluster_label(c, cluster_names.get(c), matched_classes.get(c)) for c in ids}
    unmatched = [c for c in ids if matched_classes.get(c) not in class_colours]
    spare = dict(
        zip(
            unmatched,
            palette([f"{c:09d}" for c in unmatched], muted=bool(class_colours)).values(),
            strict=True,
        )
    )
    cluster_colours = {
        labels[c]: class_colours[matched_classes[c]] if c not in spare else spare[c] for c in ids
    }
    if (clusters == NOISE).any():
        labels[NOISE] = NOISE_LABEL
        cluster_colours[NOISE_LABEL] = NOISE_COLOUR
    subjects, previews = zip(*(split_post(t) for t in texts), strict=True) if len(texts) else ((), ())
    point_labels = [labels[c] for c in clusters.tolist()]
    points = pd.DataFrame(
        {
            "doc_id": coords["doc_id"].to_numpy(),
            "x": coords["x"].to_numpy(dtype=np.float32),
            "y": coords["y"].to_numpy(dtype=np.float32),
            "class_name": class_names if class_names is not None else [None] * len(coords),
            "cluster": clusters,
            "cluster_label": point_labels,
            "class_colour": [class_colours.get(c, NOISE_COLOUR) for c in class_names]
            if class_names is not None
            else [NOISE_COLOUR] * len(coords),
            "cluster_colour": [cluster_colours[label] for label in point_labels],
            "subject": list(subjects),
            "preview": list(previews),
            "text": texts,
        }
    )
    if added is not None:
        points["added"] = np.asarray(added, dtype=bool)
    space = coords[["x", "y"]].to_numpy(np.float64) if vectors is None else vectors
    central = central_posts(space, clusters, cosine=vectors is not None) if len(clusters) else {}
    return MapData(
        points,
        reducer_label,
        class_colours,
        cluster_colours,
        neighbours=nearest_neighbours(vectors) if vectors is not None else None,
        names={c: name for c, name in cluster_names.items() if name},
        matched=matched_classes,
        central=central,
        columns={name: list(values) for name, values in (columns or {}).items()},
        base_name=base_name if added is not None else None,
    )
