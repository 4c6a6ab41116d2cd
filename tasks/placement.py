"""New posts on a fixed map, in fixed clusters: the state a run keeps for that, and the rules.

Every run writes, beside its results, what a later update needs to place new
posts against it (:func:`fit_state`): the vectors the map and clusters were
made from (``features.npy``), the fitted TF-IDF of the ``tfidf`` embedder or of
``--tfidf-weight``, the PCA of a PCA map, the clusterer's fitted model (KMeans
centres; the mixture's projection, means and covariances), and each cluster's
centroid and radius. All of it is JSON and ``.npy`` read with
``allow_pickle=False``: a run folder may come from someone else.

The rules (docs/living-map.md):

- placing: t-SNE places new points with openTSNE's partial embedding against
  affinities rebuilt from the base's vectors; PCA projects them on the stored
  components; UMAP (whose fitted model cannot be kept without pickle) puts each
  at the distance-weighted mean of its nearest base posts' positions, which is
  how UMAP's own ``transform`` starts;
- assigning: KMeans and mixtures predict from their stored model, other
  clusterers (HDBSCAN) take the majority cluster of the nearest base posts;
- fitting no cluster: a post farther from every cluster's centroid than
  :data:`RADIUS_QUANTILE` of that cluster's own members is unassigned (-1);
- emerging: when at least ``min_size`` new posts fit no cluster, HDBSCAN on
  them finds the groups that become new clusters, numbered after every number
  used before.

A run keeps its state with :func:`state_task`; ``flows/update.py`` reads it back
and places the new posts with :func:`place_task` (:func:`place_posts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from tasks.cluster import Clusterer, predict
from tasks.config import RunSettings
from tasks.embed._tfidf import TfidfEmbedder, TfidfState
from tasks.errors import InputError
from tasks.layout import NOISE, RunLayout, atomic_path, write_json

STATE = "placement.json"
FEATURES = "features.npy"
ARRAY_PREFIX = "placement-"
RADIUS_QUANTILE = 0.95
"""A cluster's radius: this quantile of its own members' distances to its centroid (see docs/living-map.md)."""
NEIGHBOURS = 15
PREDICTING = ("kmeans", "gmm")


@dataclass
class PlacementState:
    """What places new posts against a run (see the module docstring).

    Attributes
    ----------
    reducer, clusterer : str
        Registry names of the run's reducer and clusterer.
    mapping : dict
        The run's map settings (perplexity, UMAP neighbours).
    seed : int
        The run's seed.
    cluster_ids : list of int
        The clusters of ``centroids`` and ``radii``, in their row order.
    next_cluster : int
        The first number an emerging cluster may take: above every number used before.
    arrays : dict of str to ndarray
        ``centroids``, ``radii``; ``pca_mean`` and ``pca_components`` for a PCA map;
        ``model_<name>`` for the clusterer's fitted model; ``tfidf_idf`` and
        ``tfidf_components`` with :attr:`vocabulary` for a fitted TF-IDF.
    vocabulary : list of str or None
        The fitted TF-IDF's terms, in column order.
    """

    reducer: str
    clusterer: str
    mapping: dict[str, Any]
    seed: int
    cluster_ids: list[int]
    next_cluster: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    vocabulary: list[str] | None = None

    @property
    def tfidf(self) -> TfidfState | None:
        """The fitted TF-IDF, or None when the run used none."""
        if self.vocabulary is None:
            return None
        return TfidfState(self.vocabulary, self.arrays["tfidf_idf"], self.arrays["tfidf_components"])

    @property
    def model(self) -> dict[str, np.ndarray]:
        """The clusterer's fitted model (:meth:`tasks.cluster.Clusterer.fitted`)."""
        return {k.removeprefix("model_"): v for k, v in self.arrays.items() if k.startswith("model_")}


def centroids_and_radii(
    features: np.ndarray, clusters: np.ndarray
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Each cluster's id, centroid (mean of its members) and radius (see :data:`RADIUS_QUANTILE`)."""
    ids = sorted(set(np.asarray(clusters).tolist()) - {NOISE})
    centroids = np.zeros((len(ids), features.shape[1]))
    radii = np.zeros(len(ids))
    for row, cluster in enumerate(ids):
        members = features[clusters == cluster].astype(np.float64)
        centroids[row] = members.mean(axis=0)
        radii[row] = np.quantile(np.linalg.norm(members - centroids[row], axis=1), RADIUS_QUANTILE)
    return ids, centroids, radii


def fit_state(
    features: np.ndarray,
    clusters: np.ndarray,
    *,
    reducer: str,
    clusterer: str,
    mapping: dict[str, Any],
    seed: int,
    model: dict[str, np.ndarray],
    tfidf: TfidfState | None,
    next_cluster: int | None = None,
) -> PlacementState:
    """The state that places later posts against a run of ``features`` clustered as ``clusters``.

    ``model`` is the clusterer's fitted model (carried over unchanged by an update);
    ``next_cluster`` defaults to one above the highest cluster.
    """
    ids, centroids, radii = centroids_and_radii(features, clusters)
    arrays: dict[str, np.ndarray] = {"centroids": centroids, "radii": radii}
    arrays.update({f"model_{k}": np.asarray(v) for k, v in model.items()})
    if reducer == "pca":
        from sklearn.decomposition import PCA

        # The map's own projection: the same vectors, components and seed (deterministic).
        pca = PCA(n_components=2, random_state=seed).fit(features)
        arrays.update(pca_mean=pca.mean_, pca_components=pca.components_)
    if tfidf is not None:
        arrays.update(tfidf_idf=tfidf.idf, tfidf_components=tfidf.components)
    return PlacementState(
        reducer=reducer,
        clusterer=clusterer,
        mapping=mapping,
        seed=seed,
        cluster_ids=ids,
        next_cluster=max([*ids, NOISE]) + 1 if next_cluster is None else next_cluster,
        arrays=arrays,
        vocabulary=None if tfidf is None else list(tfidf.vocabulary),
    )


def write_state(state: PlacementState, features: np.ndarray, root: Path) -> None:
    """Write ``features.npy``, one ``placement-<name>.npy`` per array and ``placement.json`` into ``root``."""
    for name, array in {
        FEATURES: features,
        **{f"{ARRAY_PREFIX}{k}.npy": v for k, v in state.arrays.items()},
    }.items():
        with atomic_path(root / name) as tmp, tmp.open("wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)
    described = {k: v for k, v in vars(state).items() if k != "arrays"}
    write_json({**described, "arrays": sorted(state.arrays)}, root / STATE)


def run_state(
    sample: pd.DataFrame,
    vectors: np.ndarray,
    clusters: np.ndarray,
    clusterer: Clusterer,
    settings: RunSettings,
) -> PlacementState:
    """The state of a run that mapped and clustered ``vectors`` (the sample's) as ``clusters`` with ``settings``."""
    embedding = settings.embedding
    tfidf = None
    if embedding.embedder == "tfidf" or embedding.tfidf_weight:
        # Fitted again rather than carried out of the embed batches: the fit is deterministic and
        # takes seconds, where the batches may have run in other processes.
        embedder = TfidfEmbedder(dimensions=embedding.tfidf_dimensions, seed=settings.seed)
        tfidf = embedder.fit(sample["text"].tolist())[0]
    return fit_state(
        vectors,
        clusters,
        reducer=settings.mapping.reducer,
        clusterer=clusterer.name,
        mapping=settings.mapping.model_dump(mode="json"),
        seed=settings.seed,
        model=clusterer.fitted(),
        tfidf=tfidf,
    )


@task(name="placement-state", task_run_name="placement-state")
def state_task(
    sample: pd.DataFrame,
    vectors: np.ndarray,
    clusters: np.ndarray,
    clusterer: Clusterer,
    settings: RunSettings,
    *,
    layout: RunLayout,
) -> None:
    """Prefect task: write the :func:`run_state` into the run folder, beside the run's vectors."""
    write_state(run_state(sample, vectors, clusters, clusterer, settings), vectors, layout.root)


def read_state(root: Path) -> tuple[PlacementState, np.ndarray]:
    """The state and features :func:`write_state` wrote into ``root``; no pickle is ever loaded."""
    if not (root / STATE).exists():
        raise InputError(
            f"The base run {root.name} holds no {STATE} (it was made before runs kept what places new "
            "posts); make a new base run and update that one."
        )
    described = json.loads((root / STATE).read_text())
    names = described.pop("arrays")
    arrays = {name: np.load(root / f"{ARRAY_PREFIX}{name}.npy", allow_pickle=False) for name in names}
    return PlacementState(**described, arrays=arrays), np.load(root / FEATURES, allow_pickle=False)


def nearest(base: np.ndarray, new: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each new vector's ``k`` nearest base vectors (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=min(k, len(base))).fit(base)
    return index.kneighbors(new)


def place(
    state: PlacementState, base_features: np.ndarray, base_coords: np.ndarray, new_features: np.ndarray
) -> np.ndarray:
    """Map positions (m, 2) float32 of ``new_features``; the base's positions do not move."""
    if state.reducer == "pca":
        coords = (new_features - state.arrays["pca_mean"]) @ state.arrays["pca_components"].T
    elif state.reducer == "tsne":
        from openTSNE import TSNEEmbedding
        from openTSNE.affinity import PerplexityBasedNN

        perplexity = min(state.mapping["perplexity"], (len(base_features) - 1) / 3)
        affinities = PerplexityBasedNN(
            base_features, perplexity=perplexity, random_state=state.seed, n_jobs=1
        )
        embedding = TSNEEmbedding(
            np.asarray(base_coords, dtype=np.float64), affinities, random_state=state.seed, n_jobs=1
        )
        coords = np.asarray(embedding.transform(new_features))
    else:
        distances, rows = nearest(
            base_features, new_features, state.mapping.get("umap_neighbors", NEIGHBOURS)
        )
        weights = 1 / (distances + 1e-9)
        coords = (base_coords[rows] * weights[..., None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
    return np.asarray(coords, dtype=np.float32)


def assign(
    state: PlacementState, base_features: np.ndarray, base_clusters: np.ndarray, new_features: np.ndarray
) -> np.ndarray:
    """Clusters (m,) of ``new_features``: the base's rule, then the fit rule (module docstring).

    A post within the radius of the cluster its model predicts stays there; one
    outside it joins the nearest cluster whose radius it is within (an emerging
    one of an earlier update too); one within none is :data:`NOISE`.
    """
    if state.clusterer in PREDICTING:
        predicted = predict(state.clusterer, state.model, new_features)
    else:
        _, rows = nearest(base_features, new_features, NEIGHBOURS)
        votes = np.asarray(base_clusters)[rows]
        predicted = np.array([np.bincount(v - NOISE).argmax() + NOISE for v in votes], dtype=np.int32)
    if not state.cluster_ids:
        return np.full(len(new_features), NOISE, dtype=np.int32)
    ids = np.asarray(state.cluster_ids)
    centroids, radii = state.arrays["centroids"], state.arrays["radii"]
    distances = np.linalg.norm(new_features[:, None, :].astype(np.float64) - centroids[None], axis=2)
    within = distances <= radii[None]
    labels = np.full(len(new_features), NOISE, dtype=np.int32)
    for i, cluster in enumerate(predicted.tolist()):
        column = np.flatnonzero(ids == cluster)
        if len(column) and within[i, column[0]]:
            labels[i] = cluster
        elif within[i].any():
            labels[i] = ids[np.flatnonzero(within[i])[distances[i, within[i]].argmin()]]
    return labels


def emerging(
    new_features: np.ndarray, labels: np.ndarray, *, first: int, min_size: int, radius: float = 0.0
) -> tuple[np.ndarray, list[int]]:
    """Give groups of at least ``min_size`` unassigned new posts new clusters numbered from ``first``.

    HDBSCAN finds the groups' cores; a loose post then joins the nearest group
    whose centroid it is as near as the group's farthest member, or as
    ``radius`` (the base clusters' typical radius). Returns the labels with the
    emerging clusters in, and the new numbers.
    """
    labels = np.asarray(labels, dtype=np.int32).copy()
    loose = np.flatnonzero(labels == NOISE)
    if len(loose) < max(min_size, 2):
        return labels, []
    from sklearn.cluster import HDBSCAN

    # One new topic is the common case, and HDBSCAN finds a single cluster only when allowed to.
    groups = HDBSCAN(min_cluster_size=min_size, allow_single_cluster=True, copy=True).fit_predict(
        new_features[loose]
    )
    found = sorted(set(groups.tolist()) - {-1})
    if found:
        # HDBSCAN leaves a group's fringe out (most of it when it finds a single group); a loose
        # post as near a group's centroid as a base cluster's members are to theirs joins it.
        points = new_features[loose].astype(np.float64)
        centroids = np.array([points[groups == g].mean(axis=0) for g in found])
        reach = np.array(
            [
                np.linalg.norm(points[groups == g] - c, axis=1).max()
                for g, c in zip(found, centroids, strict=True)
            ]
        )
        reach = np.maximum(reach, radius)
        distances = np.linalg.norm(points[:, None, :] - centroids[None], axis=2)
        fringe = (groups == -1) & (distances <= reach[None]).any(axis=1)
        groups[fringe] = np.array(found)[
            np.where(distances <= reach[None], distances, np.inf)[fringe].argmin(axis=1)
        ]
    for offset, group in enumerate(found):
        labels[loose[groups == group]] = first + offset
    return labels, [first + offset for offset in range(len(found))]


def place_posts(
    state: PlacementState,
    base_features: np.ndarray,
    base_coords: np.ndarray,
    base_clusters: np.ndarray,
    features: np.ndarray,
    *,
    min_emerging: int,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Map positions, clusters (emerging ones included) and emerging numbers of the new posts' ``features``.

    :func:`place` and :func:`assign` them against the base; groups of at least
    ``min_emerging`` that fit no cluster become :func:`emerging` ones, numbered
    from ``state.next_cluster`` (a loose post joins one as near as the base
    clusters' median radius).
    """
    coords = place(state, base_features, base_coords, features)
    labels = assign(state, base_features, base_clusters, features)
    radius = float(np.median(state.arrays["radii"])) if state.cluster_ids else 0.0
    labels, new_ids = emerging(
        features, labels, first=state.next_cluster, min_size=min_emerging, radius=radius
    )
    return coords, labels, new_ids


place_task = task(place_posts, name="place", task_run_name="place-{state.reducer}-{state.clusterer}")
"""Prefect task: :func:`place_posts`."""
