"""A living map's update, as plain functions: the base run and settings, the new posts, names, files.

``flows/update.py`` runs them in order; :mod:`tasks.placement` places and
assigns the new posts, :mod:`tasks.changes` says what changed. Everything here
is refused before any work when it cannot go on, and the base run folder is
only ever read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import (
    EmbeddingSettings,
    ExecutionSettings,
    MapSettings,
    OutputSettings,
    RunSettings,
    SamplingSettings,
    SourceSettings,
)
from tasks.embed.hybrid import append_fitted_tfidf
from tasks.embed.stage import embed_sample
from tasks.errors import InputError
from tasks.layout import (
    MANIFEST,
    NOISE,
    UPDATE_ASSIGNMENTS_SCHEMA,
    UPDATE_MAP_SCHEMA,
    RunLayout,
    documents_schema,
    file_sha256,
    read_embeddings,
    write_embeddings,
    write_table,
)
from tasks.placement import PlacementState
from tasks.sample import select_groups

log = logging.getLogger(__name__)

LATEST = "latest"
# Which settings must match between a base and its update: the vectors and the map would not be comparable.
MATCHED = {
    "embedding": (
        "embedder",
        "local_model",
        "gemini_model",
        "gemini_dimensions",
        "precision",
        "tfidf_weight",
    ),
    "mapping": ("reducer",),
}
KEPT_TERMS = 2
"""An old cluster keeps its name while at least this many of its name's terms stay among its top terms."""


@dataclass(frozen=True)
class BaseRun:
    """A finished run an update builds on, its files checked.

    Attributes
    ----------
    root : Path
        The run folder.
    manifest : dict
        Its ``manifest.json``.
    sha256 : str
        The manifest's own sha256, recorded by the update as ``base_run``.
    """

    root: Path
    manifest: dict[str, Any]
    sha256: str

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.root.name

    @property
    def layout(self) -> RunLayout:
        """The paths of the run's files."""
        return RunLayout(self.root)


def finished_runs(output_dir: Path) -> list[Path]:
    """The finished run folders (with a manifest) under ``output_dir``, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    runs = [
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()
    ]

    def finished_at(path: Path) -> tuple[str, str]:
        try:
            return json.loads((path / MANIFEST).read_text()).get("finished_at", ""), path.name
        except (OSError, ValueError):
            return "", path.name

    return sorted(runs, key=finished_at)


def resolve_base(base: str, output_dir: Path) -> Path:
    """The base folder ``base`` names: a path, a run name under ``output_dir``, or ``latest``."""
    if base == LATEST:
        runs = finished_runs(output_dir)
        if not runs:
            raise InputError(
                f"--base latest found no finished run in {output_dir}; make one first "
                "(python -m flows.newsgroups) or pass --base with a run folder."
            )
        return runs[-1]
    path = Path(base)
    if not path.exists() and (Path(output_dir) / base).exists():
        path = Path(output_dir) / base
    if not path.is_dir():
        raise InputError(f"The base run {base} is not a folder; pass --base with a run folder or 'latest'.")
    return path


def load_base(path: Path) -> BaseRun:
    """The finished run at ``path``, every file checked against the sha256 in its manifest."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.exists():
        raise InputError(
            f"The base run {path} has no {MANIFEST}: it did not finish; pass a finished run as --base."
        )
    manifest = json.loads(manifest_path.read_text())
    checksums = manifest.get("checksums")
    if not checksums:
        raise InputError(
            f"The manifest of the base run {path} holds no checksums (an older run); make a new base run."
        )
    for name, expected in checksums.items():
        file = Path(path) / name
        if not file.is_file() or file_sha256(file) != expected:
            state = "is missing" if not file.is_file() else "does not match its checksum"
            raise InputError(
                f"The file {name} of the base run {path} {state}: the run was changed after it "
                "finished; pass an untouched run as --base."
            )
    return BaseRun(Path(path), manifest, file_sha256(manifest_path))


def check_same_vectors(base: BaseRun, requested: dict[str, dict[str, Any]]) -> None:
    """Refuse an update whose embedder, model, precision or reducer differs from the base's.

    ``requested`` holds, per settings group, only the settings the user gave.
    """
    parameters = base.manifest["parameters"]
    for group, names in MATCHED.items():
        for name in names:
            if name in requested.get(group, {}) and requested[group][name] != parameters[group][name]:
                raise InputError(
                    f"The base run {base.name} was made with {name.replace('_', '-')} "
                    f"{parameters[group][name]!r} and the update asks for {requested[group][name]!r}: "
                    "new posts must be placed with the same vectors and map; drop the flag or make a new base."
                )


def _given(model: Any) -> dict[str, Any]:
    """The settings the user gave explicitly (the rest come from the base run)."""
    return model.model_dump(include=model.model_fields_set)


def update_settings(
    base: BaseRun,
    source: SourceSettings,
    sampling: SamplingSettings,
    embedding: EmbeddingSettings,
    mapping: MapSettings,
    output: OutputSettings,
    execution: ExecutionSettings,
) -> RunSettings:
    """The update run's settings: the base's, with the source, groups and embedding settings the user gave.

    Refuses another embedder, model, precision or reducer than the base's.
    Per-class sampling does not apply to an update: every new post is taken.
    """
    check_same_vectors(base, {"embedding": _given(embedding), "mapping": _given(mapping)})
    parameters = base.manifest["parameters"]
    known = {name: parameters[name] for name in RunSettings.model_fields if name in parameters}
    merged = {
        **known,
        "source": {**parameters["source"], **_given(source)},
        "sampling": {
            **parameters["sampling"],
            **sampling.model_dump(include={"groups"} & sampling.model_fields_set),
        },
        "embedding": {**parameters["embedding"], **_given(embedding), "plan": False},
        "output": output,
        "execution": execution,
        "preset": None,
    }
    return RunSettings.model_validate(merged)


def match_keys(frame: pd.DataFrame, *, by_id: bool) -> pd.Series:
    """What identifies a post across runs: its id (20 Newsgroups, --id-column), else its cleaned text."""
    if by_id:
        return frame["doc_id"].astype(str)
    return frame["text"].map(lambda text: hashlib.sha256(text.encode("utf-8")).hexdigest())


def new_posts(
    cleaned: pd.DataFrame, base_sample: pd.DataFrame, groups: list[str], *, by_id: bool, max_new: int | None
) -> tuple[pd.DataFrame, int]:
    """The posts of ``cleaned`` the base does not hold, in the base's groups, oldest (source order) first.

    Returns them (at most ``max_new``) and how many there were in all.
    """
    candidates = select_groups(cleaned, groups)
    held = set(match_keys(base_sample, by_id=by_id))
    fresh = candidates[~match_keys(candidates, by_id=by_id).isin(held).to_numpy()]
    if not by_id:
        fresh = fresh.drop_duplicates("text")
    total = len(fresh)
    if max_new is not None and total > max_new:
        log.info(
            "update: %d new posts; taking the %d oldest (--max-new %d), the other %d wait for the next update",
            total,
            max_new,
            max_new,
            total - max_new,
        )
        fresh = fresh.iloc[:max_new]
    return fresh.reset_index(drop=True), total


def new_vectors(
    fresh: pd.DataFrame, settings: RunSettings, state: PlacementState, layout: RunLayout
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The new posts' embeddings and features, as the base made its own.

    The embedder embeds them (through the cache), or the base's fitted TF-IDF
    does for the tfidf embedder and ``--tfidf-weight``.
    """
    texts = fresh["text"].tolist()
    embedding = settings.embedding
    if embedding.embedder == "tfidf":
        vectors = state.tfidf.transform(texts)
        info: dict[str, Any] = {
            "embedder": "tfidf",
            "fitted_on": "the base run",
            "dimensions": vectors.shape[1],
        }
    else:
        vectors, info = embed_sample(fresh, settings, layout=layout)
    features = append_fitted_tfidf(vectors, texts, state.tfidf, weight=embedding.tfidf_weight)
    return vectors, features, info


def stable_names(base_names: pd.DataFrame, names: pd.DataFrame, *, n_name_terms: int = 4) -> pd.DataFrame:
    """``names`` (a new ``clusters.parquet`` table) with each old cluster's name kept unless its terms changed.

    An old cluster keeps its name while :data:`KEPT_TERMS` of its name's terms
    are still among its top terms. Adds ``previous_name`` (None for a new
    cluster) and ``renamed``.
    """
    before = dict(zip(base_names["cluster"].tolist(), base_names["name"].tolist(), strict=True))
    kept_names, previous, renamed = [], [], []
    for row in names.itertuples():
        old = before.get(int(row.cluster))
        terms = set(row.terms)
        keeps = old is not None and (
            row.cluster == NOISE or len(set(old.split(", ")[:n_name_terms]) & terms) >= KEPT_TERMS
        )
        kept_names.append(old if keeps else row.name)
        previous.append(old)
        renamed.append(old is not None and not keeps)
    return names.assign(name=kept_names, previous_name=previous, renamed=renamed)


def write_posts(
    base: BaseRun,
    posts: pd.DataFrame,
    base_map: pd.DataFrame,
    coords: np.ndarray,
    clusters: np.ndarray,
    added: np.ndarray,
    embedded: np.ndarray,
    layout: RunLayout,
) -> None:
    """Write the run's posts, embeddings, map and assignments; the base's rows are copied as they were."""
    write_table(posts, layout.sample, documents_schema(posts.columns))
    _, base_vectors = read_embeddings(base.layout.embeddings)
    write_embeddings(posts["doc_id"].tolist(), np.vstack([base_vectors, embedded]), layout.embeddings)
    frame = pd.DataFrame(
        {
            "doc_id": posts["doc_id"],
            "x": np.r_[base_map["x"].to_numpy(np.float32), coords[:, 0]],
            "y": np.r_[base_map["y"].to_numpy(np.float32), coords[:, 1]],
            "cluster": clusters,
            "added": added,
        }
    )
    write_table(frame, layout.map, UPDATE_MAP_SCHEMA)
    write_table(frame, layout.assignments, UPDATE_ASSIGNMENTS_SCHEMA)


def added_metrics(class_names: np.ndarray, clusters: np.ndarray, matched: dict[int, str]) -> dict[str, float]:
    """Scores of the added posts alone: each cluster keeps the class the base matched to it.

    ``matched_accuracy`` counts a post right when its cluster's class is its own
    (unassigned and emerging posts count as wrong); ``hungarian_accuracy`` and the
    rest are :func:`tasks.evaluate.evaluate_clusters` on the added posts.
    """
    from tasks.evaluate import evaluate_clusters

    predicted = np.array([matched.get(int(c)) for c in clusters], dtype=object)
    scored = evaluate_clusters(class_names, clusters).metrics
    return {
        "posts": len(clusters),
        "matched_accuracy": round(float(np.mean(predicted == class_names)) if len(clusters) else 0.0, 6),
        **{k: v for k, v in scored.items() if not isinstance(v, dict)},
    }
