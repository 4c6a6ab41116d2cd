"""The map stage: a sample's vectors mapped to 2-D by the run's reducer, kept in the map cache."""

from __future__ import annotations

import hashlib
import json
import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from tasks.layout import MAP_SCHEMA, RunLayout, atomic_path, write_table
from tasks.reduce._base import Reducer

log = logging.getLogger(__name__)

MAP_CACHE_DIR = ".map-cache"


def default_map_cache_dir(output_dir: Path) -> Path:
    """The stored maps used when none is given: ``<output_dir>/.map-cache``, beside the run folders."""
    return Path(output_dir) / MAP_CACHE_DIR


def map_key(vectors: np.ndarray, reducer: Reducer) -> str:
    """What a map depends on, hashed: the vectors, the reducer, its settings and its package's version."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.sha256(repr(vectors.shape).encode())
    digest.update(vectors.data)
    settings = {"reducer": reducer.name, "version": version(reducer.package), **vars(reducer)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def map_embeddings(
    doc_ids: list[str], vectors: np.ndarray, reducer: Reducer, *, cache_dir: Path | None = None
) -> pd.DataFrame:
    """Map ``vectors`` (n, d) to 2-D with ``reducer``.

    With a ``cache_dir``, a map made before from the same vectors by the same
    reducer and settings is read back instead of computed (t-SNE takes minutes
    on a whole corpus, so a run that changes only the clustering need not wait
    again), and a new map is stored there. Returns a frame with columns
    ``doc_id``, ``x``, ``y`` in the order of ``doc_ids``.
    """
    reducer.check(len(vectors))
    stored = None if cache_dir is None else Path(cache_dir) / f"{map_key(vectors, reducer)}.npy"
    coords = _read_map(stored, len(vectors))
    if coords is None:
        coords = reducer.fit_transform(vectors)
        if stored is not None:
            _store_map(coords, stored)
    else:
        log.info(
            "map: the %s map of these vectors and settings was made before; reusing %s", reducer.label, stored
        )
    return pd.DataFrame({"doc_id": doc_ids, "x": coords[:, 0], "y": coords[:, 1]})


def _read_map(path: Path | None, n_points: int) -> np.ndarray | None:
    """The stored map at ``path``, or None when there is none (or it is not a whole map)."""
    if path is None or not path.exists():
        return None
    try:
        coords = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        log.warning("map: cannot read the stored map %s (%s); computing it again", path, error)
        return None
    return coords if coords.shape == (n_points, 2) and coords.dtype == np.float32 else None


def _store_map(coords: np.ndarray, path: Path) -> None:
    """Keep ``coords`` for later runs; a store that cannot be written costs only the reuse."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, tmp.open("wb") as file:
            np.save(file, coords, allow_pickle=False)
    except OSError as error:  # an OutputError too
        log.warning("map: could not keep the map in %s (%s); a later run will compute it again", path, error)


@task(name="map", task_run_name="map-{reducer.name}")
def map_task(
    sample: pd.DataFrame,
    vectors: np.ndarray,
    reducer: Reducer,
    *,
    cache_dir: Path | None,
    layout: RunLayout,
) -> pd.DataFrame:
    """Prefect task: :func:`map_embeddings` of the sample, persisted to ``map.parquet``."""
    frame = map_embeddings(sample["doc_id"].tolist(), vectors, reducer, cache_dir=cache_dir)
    write_table(frame, layout.map, MAP_SCHEMA)
    return frame
