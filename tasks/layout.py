"""The output contract: one run folder, its file names and schemas, and atomic writes.

Every stage writes through this module, so the layout is defined once. A run
folder is ``<output_dir>/<run_name>/``; ``manifest.json`` is written last, so a
folder without it is an unfinished (or crashed) run and must not be trusted.
Each file is written under a temporary name in the same folder and renamed into
place only once it is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import InputError, OutputError

TMP_PREFIX = ".tmp-"
NOISE = -1
"""Cluster label of a point its clusterer left unassigned (HDBSCAN's convention), in every file."""
NOISE_LABEL = "unassigned"
MANIFEST = "manifest.json"
RUN_LOCK = ".lock"

log = logging.getLogger(__name__)

# Lock files of the run folders this process is writing, held until release_run.
_HELD: dict[Path, IO[str]] = {}

DOCUMENTS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("label", pa.int32()),
        ("class_name", pa.string()),
    ]
)


def documents_schema(columns: Iterable[str]) -> pa.Schema:
    """:data:`DOCUMENTS_SCHEMA`, then each other of ``columns`` (a corpus's own columns) as a string, in order."""
    extra = [name for name in columns if name not in DOCUMENTS_SCHEMA.names]
    return pa.schema([*DOCUMENTS_SCHEMA, *((name, pa.string()) for name in extra)])


MAP_SCHEMA = pa.schema([("doc_id", pa.string()), ("x", pa.float32()), ("y", pa.float32())])
ASSIGNMENTS_SCHEMA = pa.schema([("doc_id", pa.string()), ("cluster", pa.int32())])
# An update's map and assignments say which posts it added.
UPDATE_MAP_SCHEMA = MAP_SCHEMA.append(pa.field("added", pa.bool_()))
UPDATE_ASSIGNMENTS_SCHEMA = ASSIGNMENTS_SCHEMA.append(pa.field("added", pa.bool_()))
CHANGES_SCHEMA = pa.schema(
    [
        ("cluster", pa.int32()),
        ("name", pa.string()),
        ("previous_name", pa.string()),
        ("renamed", pa.bool_()),
        ("before", pa.int64()),
        ("added", pa.int64()),
        ("after", pa.int64()),
        ("gone_from_source", pa.int64()),
        ("share_before", pa.float64()),
        ("share_after", pa.float64()),
        ("rising_terms", pa.list_(pa.string())),
        ("emerging", pa.bool_()),
    ]
)
CLUSTERS_SCHEMA = pa.schema(
    [
        ("cluster", pa.int32()),
        ("size", pa.int64()),
        ("name", pa.string()),
        ("terms", pa.list_(pa.string())),
        ("weights", pa.list_(pa.float32())),
        ("matched_class", pa.string()),
    ]
)
EVALUATION_SCHEMA = pa.schema(
    [
        ("class_name", pa.string()),
        ("n_docs", pa.int64()),
        ("majority_cluster", pa.int32()),
        ("majority_share", pa.float64()),
        ("majority_shared_with", pa.string()),
        ("matched_cluster", pa.int32()),
        ("accuracy", pa.float64()),
    ]
)
COMPARISON_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("embedder", pa.string()),
        ("clusterer", pa.string()),
        ("clusters", pa.int64()),
        ("hungarian_accuracy", pa.float64()),
        ("accuracy_with_noise", pa.float64()),
        ("noise_share", pa.float64()),
        ("ari", pa.float64()),
        ("nmi", pa.float64()),
        ("silhouette", pa.float64()),
        ("seconds", pa.float64()),
        ("embedded", pa.int64()),
        ("from_cache", pa.int64()),
    ]
)
CONFUSION_SCHEMA = pa.schema([("class_name", pa.string()), ("predicted", pa.string()), ("count", pa.int64())])


def embeddings_schema(dimensions: int) -> pa.Schema:
    """Schema of ``embeddings.parquet``: ``doc_id`` and a fixed-size float32 list."""
    return pa.schema([("doc_id", pa.string()), ("embedding", pa.list_(pa.float32(), dimensions))])


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run's files. Build it with :func:`create_run` or :func:`open_run`."""

    root: Path

    sample = property(lambda self: self.root / "sample.parquet")
    embeddings = property(lambda self: self.root / "embeddings.parquet")
    map = property(lambda self: self.root / "map.parquet")
    assignments = property(lambda self: self.root / "assignments.parquet")
    clusters = property(lambda self: self.root / "clusters.parquet")
    map_html = property(lambda self: self.root / "map.html")
    evaluation = property(lambda self: self.root / "evaluation.parquet")
    confusion = property(lambda self: self.root / "confusion.parquet")
    comparison = property(lambda self: self.root / "comparison.parquet")
    changes = property(lambda self: self.root / "changes.parquet")
    manifest = property(lambda self: self.root / MANIFEST)

    def plot(self, name: str) -> Path:
        """Path of the PNG plot called ``name`` (without extension)."""
        return self.root / f"{name}.png"

    @property
    def is_finished(self) -> bool:
        """True once the manifest exists: every other file is then complete."""
        return self.manifest.exists()


def default_run_name(embedder: str) -> str:
    """A sortable, collision-resistant run name such as ``20261126-063000-local-3fa2``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{embedder}-{secrets.token_hex(2)}"


def create_run(output_dir: Path, run_name: str) -> RunLayout:
    """Create the run folder ``output_dir/run_name`` and hold it until :func:`release_run`.

    A finished run folder (one with a manifest) is never touched. An unfinished
    folder left by a run that was killed is removed and started afresh, so
    re-running the same command completes; one that a live run still holds is
    refused. Runs hold their folder with an OS lock, which the kernel releases
    when the process dies, however it dies.
    """
    root = Path(output_dir) / run_name
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        # Serialises the check-and-create of concurrent runs sharing the output folder.
        with (root.parent / ".runs.lock").open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if root.exists():
                _reclaim_unfinished(root)
            root.mkdir()
            _HELD[root] = _lock(root / RUN_LOCK)
    except OSError as error:
        raise OutputError(
            f"Cannot create the run folder {root} ({error.strerror or error}); "
            "pass an --output-dir you can write to."
        ) from error
    return RunLayout(root)


def _lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path`` (kept while the returned file is open), or None if taken."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _reclaim_unfinished(root: Path) -> None:
    """Remove the unfinished folder of a dead run; refuse a finished or live one."""
    if (root / MANIFEST).exists():
        raise InputError(
            f"The run folder {root} already holds a finished run; choose another --run-name "
            "or leave it out to get a fresh one."
        )
    if not (root / RUN_LOCK).is_file():
        # Not made by this tool (or made before run folders were locked): leave it alone.
        raise InputError(
            f"{root} already exists and is not an unfinished run folder; choose another "
            "--run-name or leave it out to get a fresh one."
        )
    held = _lock(root / RUN_LOCK)
    if held is None:
        raise InputError(
            f"The run folder {root} is in use by a run that is still going; wait for it, "
            "or choose another --run-name."
        )
    log.warning("removing the unfinished run folder %s left by a run that did not finish", root)
    held.close()
    shutil.rmtree(root)


def release_run(layout: RunLayout, *, discard: bool = False) -> None:
    """Let go of the run folder; with ``discard``, delete it (a run that cannot finish).

    A finished folder loses its lock file, so it holds only the run's files; an
    unfinished one keeps it, which marks it as ours to reclaim.
    """
    if discard:
        shutil.rmtree(layout.root, ignore_errors=True)
    elif layout.is_finished:
        (layout.root / RUN_LOCK).unlink(missing_ok=True)
    handle = _HELD.pop(layout.root, None)
    if handle is not None:
        handle.close()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any failure the temporary file is removed, so a half-written file never
    carries a name that a later run would trust.
    """
    target = Path(target)
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as error:
        raise OutputError(
            f"Could not write {target} ({error.strerror or error}); "
            "check that the output folder is writable and the disk is not full."
        ) from error
    finally:
        # A failed clean-up (the folder is gone or not a folder) must not hide why the write failed.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: Path, schema: pa.Schema) -> Path:
    """Write ``frame`` (columns of ``schema``, in any order) to ``path`` atomically."""
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_embeddings(doc_ids: list[str], vectors: np.ndarray, path: Path, *, batch_rows: int = 4096) -> Path:
    """Write ``vectors`` of shape (n_docs, dimensions) in batches, atomically.

    Each row is ``doc_id`` plus its vector as a fixed-size float32 list.
    """
    if len(doc_ids) != len(vectors):
        raise ValueError(f"{len(doc_ids)} doc_ids but {len(vectors)} vectors.")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    schema = embeddings_schema(vectors.shape[1])
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, len(doc_ids), batch_rows):
            chunk = vectors[start : start + batch_rows]
            column = pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), chunk.shape[1])
            ids = pa.array(doc_ids[start : start + batch_rows], pa.string())
            writer.write_batch(pa.record_batch([ids, column], schema=schema))
    return path


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    """Read ``embeddings.parquet``: the doc ids and a float32 array (n_docs, dimensions)."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dimensions = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dimensions)
    return table.column("doc_id").to_pylist(), vectors.astype(np.float32, copy=False)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def write_png(figure: Any, path: Path, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path
