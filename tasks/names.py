"""Names of clusters: each cluster's most telling words, by class-based TF-IDF.

Class-based TF-IDF (c-TF-IDF, as in BERTopic) treats all posts of a cluster as
one document: a term scores high when it is frequent in that cluster and rare
in the corpus. Two measured additions keep boilerplate out of the names: terms
found in more than ``max_df`` of all posts are dropped (on 20 Newsgroups the
header words "lines" and "organization" are in 97-99% of posts and otherwise
win every cluster), and term frequencies are square-rooted (BERTopic's
``reduce_frequent_words``), so that "nntp" or "writes" do not outrank
"circuit" in sci.electronics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from prefect import task
from sklearn.feature_extraction.text import CountVectorizer

from tasks.layout import CLUSTERS_SCHEMA, RunLayout, write_table
from tasks.mapdata import NOISE, NOISE_LABEL

TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b"
"""Words of three or more letters: numbers, "re" and stray letters name nothing."""


def ctfidf(counts: np.ndarray, *, sqrt_tf: bool = True) -> np.ndarray:
    """Class-based TF-IDF of a (n_clusters, n_terms) matrix of term counts.

    Each row's counts are L1-normalised (then square-rooted if ``sqrt_tf``) and
    multiplied by ``idf = log(1 + A / f_t)``, where ``A`` is the mean number of
    counted words per cluster and ``f_t`` the term's count over all clusters.
    Rows and columns of zeros score zero.

    >>> ctfidf(np.array([[2, 0], [1, 1]]), sqrt_tf=False).round(4)
    array([[0.5108, 0.    ],
           [0.2554, 0.5493]])
    """
    counts = np.asarray(counts, dtype=np.float64)
    words = counts.sum(axis=1, keepdims=True)
    tf = np.divide(counts, words, out=np.zeros_like(counts), where=words > 0)
    if sqrt_tf:
        tf = np.sqrt(tf)
    total = counts.sum(axis=0)
    idf = np.log1p(np.divide(words.mean(), total, out=np.zeros_like(total), where=total > 0))
    return tf * idf


def cluster_terms(
    texts: Sequence[str],
    clusters: np.ndarray,
    *,
    top_n: int = 10,
    min_df: int = 2,
    max_df: float = 0.5,
    sqrt_tf: bool = True,
) -> dict[int, list[tuple[str, float]]]:
    """Each cluster's ``top_n`` terms by class-based TF-IDF, highest weight first.

    Parameters
    ----------
    texts : sequence of str
        The n posts (cleaned).
    clusters : ndarray of int, shape (n,)
        Cluster of each post; posts in :data:`tasks.mapdata.NOISE` are left out
        of the counts and get no entry.
    top_n : int, default 10
        Terms kept per cluster (fewer when a cluster has fewer scoring terms).
    min_df : int, default 2
        Ignore terms found in fewer posts than this (a typo or a one-off name
        would otherwise top a small cluster).
    max_df : float, default 0.5
        Ignore terms found in more than this share of the (non-noise) posts.
    sqrt_tf : bool, default True
        Square-root the normalised term frequencies (see the module docstring).

    Returns
    -------
    dict of int to list of (str, float)
        Cluster id -> (term, weight) pairs, weights descending, ties by term.
        A cluster whose posts hold no counted term maps to an empty list.
    """
    clusters = np.asarray(clusters)
    if len(texts) != len(clusters):
        raise ValueError(f"Got {len(texts)} texts but {len(clusters)} cluster labels.")
    if top_n < 1:
        raise ValueError(f"The 'top_n' parameter must be at least 1. Got {top_n} instead.")
    keep = clusters != NOISE
    ids, rows = np.unique(clusters[keep], return_inverse=True)
    kept = [text for text, k in zip(texts, keep, strict=True) if k]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN, dtype=np.int64)
    try:
        posts = vectorizer.fit_transform(kept)
    except ValueError:
        # sklearn's way of saying no post holds a single counted word: nothing names these clusters.
        return {int(c): [] for c in ids}
    in_posts = np.bincount(posts.indices, minlength=posts.shape[1])
    usable = (in_posts >= min_df) & (in_posts <= max_df * len(kept))
    membership = sp.csr_matrix(
        (np.ones(len(kept)), (rows, np.arange(len(kept)))), shape=(len(ids), len(kept))
    )
    counts = (membership @ posts[:, usable]).toarray()
    weights = ctfidf(counts, sqrt_tf=sqrt_tf)
    vocabulary = vectorizer.get_feature_names_out()[usable]
    terms = {}
    for row, cluster in enumerate(ids):
        order = np.lexsort((vocabulary, -weights[row]))[:top_n]
        terms[int(cluster)] = [
            (str(vocabulary[i]), float(weights[row, i])) for i in order if weights[row, i] > 0
        ]
    return terms


def name_clusters(
    texts: Sequence[str],
    clusters: np.ndarray,
    *,
    class_names: np.ndarray | None = None,
    matched_classes: Mapping[int, str] | None = None,
    n_name_terms: int = 4,
    top_n: int = 10,
) -> pd.DataFrame:
    """The table of cluster names (``clusters.parquet``): one row per cluster, noise last.

    Parameters
    ----------
    texts : sequence of str
        The n posts (cleaned).
    clusters : ndarray of int, shape (n,)
        Cluster of each post; :data:`tasks.mapdata.NOISE` marks unassigned posts.
    class_names : ndarray of str, shape (n,), optional
        True classes. Used only when ``matched_classes`` is None: each cluster's
        ``matched_class`` is then the class most of its posts carry.
    matched_classes : mapping of int to str, optional
        The class the evaluation matched to each cluster; clusters it leaves
        out get None.
    n_name_terms : int, default 4
        How many top terms make the ``name``.
    top_n : int, default 10
        How many terms (and weights) each row keeps.

    Returns
    -------
    DataFrame
        Columns of :data:`tasks.layout.CLUSTERS_SCHEMA`: ``cluster`` (int32), ``size``
        (posts, int64), ``name`` (the first ``n_name_terms`` terms joined by
        ", "; "unassigned" for noise), ``terms`` (list of str), ``weights``
        (list of float32, descending) and ``matched_class`` (str or None).
    """
    if n_name_terms < 1:
        raise ValueError(f"The 'n_name_terms' parameter must be at least 1. Got {n_name_terms} instead.")
    clusters = np.asarray(clusters)
    if class_names is not None and len(class_names) != len(clusters):
        raise ValueError(f"Got {len(class_names)} class names but {len(clusters)} cluster labels.")
    terms = cluster_terms(texts, clusters, top_n=top_n)
    if matched_classes is None and class_names is not None:
        crosstab = pd.crosstab(clusters, np.asarray(class_names))
        matched_classes = crosstab.idxmax(axis=1).to_dict()
    matched_classes = matched_classes or {}
    ids, sizes = np.unique(clusters, return_counts=True)
    order = sorted(zip(ids.tolist(), sizes.tolist(), strict=True), key=lambda row: row[0] == NOISE)
    pairs = {c: [] if c == NOISE else terms[c] for c, _ in order}
    return pd.DataFrame(
        {
            "cluster": np.array([c for c, _ in order], dtype=np.int32),
            "size": np.array([n for _, n in order], dtype=np.int64),
            "name": [
                NOISE_LABEL if c == NOISE else ", ".join(t for t, _ in pairs[c][:n_name_terms])
                for c, _ in order
            ],
            "terms": [[t for t, _ in pairs[c]] for c, _ in order],
            "weights": [np.array([w for _, w in pairs[c]], dtype=np.float32) for c, _ in order],
            # object, so a cluster without a class holds None rather than pandas' NaN.
            "matched_class": pd.Series(
                [None if c == NOISE else matched_classes.get(c) for c, _ in order], dtype=object
            ),
        }
    )


def write_cluster_names(frame: pd.DataFrame, path: Path) -> Path:
    """Write a :func:`name_clusters` table to ``path`` (Parquet) atomically."""
    return write_table(frame, path, CLUSTERS_SCHEMA)


@task(name="name-clusters", task_run_name="name-clusters")
def name_task(
    sample: pd.DataFrame,
    clusters: np.ndarray,
    matched_classes: Mapping[int, str] | None,
    *,
    layout: RunLayout,
) -> pd.DataFrame:
    """Prefect task: :func:`name_clusters` for the sample, persisted to ``clusters.parquet``."""
    frame = name_clusters(sample["text"].tolist(), clusters, matched_classes=matched_classes)
    write_cluster_names(frame, layout.clusters)
    return frame
