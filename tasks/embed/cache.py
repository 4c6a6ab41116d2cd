"""A persistent, content-addressed store of embeddings, shared by runs.

Layout of a cache folder::

    <cache_dir>/
        <identity>/               one folder per embedder identity (hash of Embedder.describe())
            identity.json         what made these vectors: embedder, model, dimensions, task type, ...
            part-<uuid>.parquet   append-only: text_sha256 (32 bytes), embedding (float32 list)
            .tmp-part-...         a part being written, or left by a killed run: never read

A vector is keyed by the sha256 of the exact text handed to the embedder, so a
changed cleaning rule or a different model never returns a stale vector. Parts
are only ever added, each under a unique name and renamed into place once
complete (:func:`tasks.layout.atomic_path`), so runs sharing a cache, even at
the same time, cannot corrupt it, and a killed run loses only the batches it
had in flight. A file that cannot be read, or that belongs to another identity,
is reported with :class:`CacheWarning` and skipped, never trusted. Each part
carries a sha256 of its keys and vectors, so a part whose bytes were changed
but still parse is reported and skipped too (its texts are embedded again). A
folder that cannot be written (read-only, full) is still read; new vectors
are then not stored, after one warning.

Maintenance: ``python -m tasks.embed --cache-dir DIR`` prints the size per
model; ``--prune MODEL``, ``--prune-all`` and ``--prune-unreadable`` delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import NewsgroupsWarning
from tasks.layout import TMP_PREFIX, atomic_path, write_json

log = logging.getLogger(__name__)

FORMAT = 1
IDENTITY_FILE = "identity.json"
PART_GLOB = "part-*.parquet"
KEY = "text_sha256"
VECTOR = "embedding"
# Parts carry their folder's identity hash, so a part copied into the wrong folder is foreign.
IDENTITY_METADATA = b"newsgroups-cache-identity"
# sha256 of a part's key bytes then vector bytes (float32, C order); parts written before it have none.
CHECKSUM_METADATA = b"newsgroups-cache-sha256"
# A temporary file this old is not a write in progress but the leftover of a killed run.
STALE_TMP_SECONDS = 3600

# Folders this process failed to write to: each warns once, then is only read.
_unwritable: set[Path] = set()
_lock = threading.Lock()
_stored = {"texts": 0}


class CacheWarning(NewsgroupsWarning):
    """A cache file or folder was unreadable or foreign and was skipped, or a part could not be stored."""


def default_cache_dir(output_dir: Path) -> Path:
    """The cache folder used when none is given: ``<output_dir>/.embedding-cache``.

    It sits beside the run folders; run names start with a letter or digit, so
    it never collides with one.
    """
    return Path(output_dir) / ".embedding-cache"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """The sha256 digests of ``texts`` (UTF-8), as a numpy ``S32`` array of shape (n_texts,)."""
    return np.array([hashlib.sha256(text.encode("utf-8")).digest() for text in texts], dtype="S32")


def identity_hash(identity: dict[str, Any]) -> str:
    """A short, stable hash of ``identity`` (canonical JSON): the identity's folder name."""
    canonical = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def texts_stored() -> int:
    """How many vectors this process has stored in any cache (what an interrupted run keeps)."""
    return _stored["texts"]


def checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
    """Hex sha256 of ``keys`` (``S32``) then ``vectors`` (float32, C order): a part's fingerprint."""
    digest = hashlib.sha256(np.ascontiguousarray(keys, dtype="S32").tobytes())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _warn(message: str) -> None:
    log.warning("embed cache: %s", message)
    warnings.warn(message, CacheWarning, stacklevel=3)


def _keys_to_arrow(keys: np.ndarray) -> pa.Array:
    # Via the raw buffer: numpy drops trailing NUL bytes when S32 items become Python bytes.
    keys = np.ascontiguousarray(keys, dtype="S32")
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), len(keys), [None, pa.py_buffer(keys.tobytes())]
    )


def _keys_from_arrow(column: pa.ChunkedArray) -> np.ndarray:
    if column.null_count:
        raise ValueError("null keys")
    chunks = [
        np.frombuffer(chunk.buffers()[1], dtype="S32", count=len(chunk), offset=32 * chunk.offset)
        for chunk in column.chunks
    ]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype="S32")


@dataclass(frozen=True)
class EmbeddingCache:
    """The store of one embedder identity: a folder of Parquet parts. Build it with :meth:`open`.

    Attributes
    ----------
    folder : Path
        ``<cache_dir>/<identity hash>``.
    identity : dict
        ``{"format": 1, **embedder.describe()}``, as written to ``identity.json``.
    """

    folder: Path
    identity: dict[str, Any]

    @classmethod
    def open(cls, cache_dir: Path, description: dict[str, Any]) -> EmbeddingCache | None:
        """Open (creating if needed) the store for the embedder described by ``description``.

        Returns None, after a :class:`CacheWarning`, if the folder cannot be
        created or its ``identity.json`` is unreadable or belongs to other
        vectors: the run then embeds everything and stores nothing.
        """
        identity = json.loads(json.dumps({"format": FORMAT, **description}, default=str))
        folder = Path(cache_dir) / identity_hash(identity)
        path = folder / IDENTITY_FILE
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                write_json(identity, path)
            found = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            _warn(f"cannot use {folder} ({error}); embedding without the cache.")
            return None
        if found != identity:
            _warn(f"{path} describes other vectors than its folder name says; embedding without the cache.")
            return None
        _unwritable.discard(folder)
        probe = folder / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        try:
            # A few bytes, not an empty file: a full disk still has room for a name.
            probe.write_bytes(b"\0" * 4096)
        except OSError as error:
            _unwritable.add(folder)
            _warn(
                f"cannot write to {folder} ({error.strerror or error}); vectors stored there are "
                "used, new ones are not stored."
            )
        finally:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
        return cls(folder, identity)

    @property
    def dimensions(self) -> int | None:
        """The vector length the identity promises (None if it does not say)."""
        return self.identity.get("dimensions")

    def _read_keys(self, path: Path) -> np.ndarray:
        """The keys of one part, after checking that the part is whole and ours."""
        handle = pq.ParquetFile(path)
        schema = handle.schema_arrow
        vector_type = schema.field(VECTOR).type if VECTOR in schema.names else None
        owner = (schema.metadata or {}).get(IDENTITY_METADATA, b"").decode()
        if (
            schema.names != [KEY, VECTOR]
            or schema.field(KEY).type != pa.binary(32)
            or not pa.types.is_fixed_size_list(vector_type)
            or vector_type.value_type != pa.float32()
            or (self.dimensions is not None and vector_type.list_size != self.dimensions)
            or owner != self.folder.name
        ):
            raise ValueError(f"foreign schema or owner ({schema.names}, {vector_type}, {owner!r})")
        return _keys_from_arrow(handle.read(columns=[KEY]).column(KEY))

    def _read_vectors(self, path: Path, keys: np.ndarray) -> np.ndarray:
        """The vectors of one part whose keys are ``keys``, after checking the part's checksum."""
        table = pq.read_table(path, columns=[VECTOR])
        column = table.column(VECTOR).combine_chunks()
        block = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
        expected = (table.schema.metadata or {}).get(CHECKSUM_METADATA)
        if expected is not None and checksum(keys, block) != expected.decode():
            raise ValueError("its keys or vectors do not match their checksum: the file was changed")
        return block

    def _scan(self) -> list[tuple[Path, np.ndarray]]:
        parts = []
        for path in sorted(self.folder.iterdir()):
            if path.name == IDENTITY_FILE or path.name.startswith(TMP_PREFIX):
                continue
            if not path.match(PART_GLOB):
                _warn(f"ignoring foreign file {path.name} in {self.folder}.")
                continue
            try:
                parts.append((path, self._read_keys(path)))
            except FileNotFoundError:
                continue  # pruned meanwhile
            except (OSError, ValueError, KeyError, pa.ArrowException) as error:
                _warn(f"skipping unreadable or foreign part {path.name} in {self.folder} ({error}).")
        return parts

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Find ``keys`` (``S32``, shape (n,)) in the store.

        Returns
        -------
        found : ndarray of bool, shape (n,)
            Which keys have a stored vector.
        vectors : ndarray of float32, shape (found.sum(), dimensions)
            Their vectors, in the order of ``keys[found]``.
        """
        keys = np.asarray(keys, dtype="S32")
        found = np.zeros(len(keys), dtype=bool)
        parts = self._scan()
        if not parts or not len(keys):
            return found, np.empty((0, self.dimensions or 0), dtype=np.float32)
        stored = np.concatenate([part_keys for _, part_keys in parts])
        part_of = np.repeat(np.arange(len(parts)), [len(part_keys) for _, part_keys in parts])
        row_of = np.concatenate([np.arange(len(part_keys)) for _, part_keys in parts])
        # Stable sort: a key stored twice (two runs at once) resolves to its first part.
        order = np.argsort(stored, kind="stable")
        position = np.clip(np.searchsorted(stored[order], keys), 0, len(stored) - 1)
        found = stored[order][position] == keys
        source = order[position[found]]
        vectors: np.ndarray | None = None
        wanted = np.flatnonzero(found)
        for index in np.unique(part_of[source]):
            path, part_keys = parts[index]
            mine = part_of[source] == index
            try:
                block = self._read_vectors(path, part_keys)
            except FileNotFoundError:
                found[wanted[mine]] = False
                continue
            except (OSError, ValueError, pa.ArrowException) as error:
                _warn(
                    f"skipping unreadable part {path.name} in {self.folder} ({error}); its texts are embedded again."
                )
                found[wanted[mine]] = False
                continue
            if vectors is None:
                vectors = np.empty((len(wanted), block.shape[1]), dtype=np.float32)
            vectors[mine] = block[row_of[source[mine]]]
        if vectors is None:
            vectors = np.empty((len(wanted), self.dimensions or 0), dtype=np.float32)
        return found, vectors[found[wanted]]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> Path | None:
        """Store ``vectors`` (float32, (n, dimensions)) under ``keys`` as one new part file.

        A part that cannot be written is reported with :class:`CacheWarning`, once
        per folder, and nothing more is stored there in this process (those texts
        are embedded again next time); returns the part's path, or None.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors.")
        if self.folder in _unwritable:
            return None
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
        schema = pa.schema(
            [(KEY, pa.binary(32)), (VECTOR, column.type)],
            metadata={
                IDENTITY_METADATA: self.folder.name.encode(),
                CHECKSUM_METADATA: checksum(keys, vectors).encode(),
            },
        )
        table = pa.Table.from_arrays([_keys_to_arrow(keys), column], schema=schema)
        path = self.folder / f"part-{uuid.uuid4().hex}.parquet"
        try:
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
        except OSError as error:
            # Warn once per folder: every later batch would fail the same way.
            with _lock:
                first = self.folder not in _unwritable
                _unwritable.add(self.folder)
            if first:
                _warn(
                    f"could not store {len(keys)} vectors in {self.folder} ({error}); "
                    "new vectors are not stored for the rest of this run."
                )
            return None
        with _lock:
            _stored["texts"] += len(keys)
        return path


def summarise(cache_dir: Path) -> list[dict[str, Any]]:
    """One row per identity folder of ``cache_dir``: model, parts, entries, bytes, unreadable files.

    Entries count stored rows (a text stored by two runs at once counts twice).
    A folder without a readable ``identity.json`` is listed with model ``?``.
    """
    rows = []
    for folder in sorted(p for p in Path(cache_dir).iterdir() if p.is_dir()):
        try:
            identity = json.loads((folder / IDENTITY_FILE).read_text())
        except (OSError, ValueError):
            identity = {}
        parts = sorted(folder.glob(PART_GLOB))
        entries, unreadable = 0, 0
        for path in parts:
            try:
                entries += pq.ParquetFile(path).metadata.num_rows
            except (OSError, ValueError, pa.ArrowException):
                unreadable += 1
        rows.append(
            {
                "folder": folder.name,
                "embedder": identity.get("embedder", "?"),
                "model": identity.get("model", "?"),
                "dimensions": identity.get("dimensions", "?"),
                "parts": len(parts),
                "entries": entries,
                "unreadable": unreadable,
                "mib": sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20,
            }
        )
    return rows


def prune(cache_dir: Path, *, model: str | None = None, unreadable: bool = False) -> list[Path]:
    """Delete from ``cache_dir``; returns what was deleted.

    Parameters
    ----------
    cache_dir : Path
        The cache folder.
    model : str or None
        Delete every identity folder whose model, embedder or folder name is
        ``model``; ``"*"`` deletes them all.
    unreadable : bool
        Delete part files that cannot be read or belong to another folder,
        folders without a readable identity, and temporary files older than an hour.
    """
    deleted: list[Path] = []
    for row in summarise(cache_dir):
        folder = Path(cache_dir) / row["folder"]
        if model is not None and model in ("*", row["model"], row["embedder"], row["folder"]):
            shutil.rmtree(folder)
            deleted.append(folder)
        elif unreadable:
            deleted += _prune_unreadable(folder)
    return deleted


def _prune_unreadable(folder: Path) -> list[Path]:
    try:
        identity = json.loads((folder / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        shutil.rmtree(folder)
        return [folder]
    store = EmbeddingCache(folder, identity)
    deleted = []
    for path in sorted(folder.iterdir()):
        stale = path.name.startswith(TMP_PREFIX) and time.time() - path.stat().st_mtime > STALE_TMP_SECONDS
        if path.match(PART_GLOB):
            try:
                store._read_vectors(path, store._read_keys(path))
                continue
            except (OSError, ValueError, KeyError, pa.ArrowException):
                pass
        elif not stale:
            continue
        path.unlink(missing_ok=True)
        deleted.append(path)
    return deleted
