"""Ingest: 20 Newsgroups (download or local bydate archive) or a user's corpus file.

Every source yields the same frame: ``doc_id``, ``text``, ``label``, ``class_name``
(``label`` and ``class_name`` are null for an unlabelled corpus).
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tarfile
import uuid
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from tasks.errors import InputError, OutputError, is_transient
from tasks.layout import DOCUMENTS_SCHEMA, RunLayout, file_sha256, write_table

if TYPE_CHECKING:
    from tasks.config import SourceSettings

log = logging.getLogger(__name__)

ARCHIVE_ENV = "NEWSGROUPS_ARCHIVE"
SPLITS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}


def _read_csv(path: Path) -> pd.DataFrame:
    # Every cell as the text it is: no "007" -> 7, no "NA" or "null" -> missing; only an empty cell is missing.
    return pd.read_csv(
        path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8", encoding_errors="replace"
    )


def _read_jsonl(path: Path) -> pd.DataFrame:
    # JSON's own types only: no "00" -> 0, no dates parsed from columns with date-like names.
    return pd.read_json(
        path,
        lines=True,
        dtype=False,
        encoding="utf-8",
        encoding_errors="replace",
    )


CORPUS_READERS = {
    ".csv": _read_csv,
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
}


def as_text(value: object) -> str | None:
    """A corpus cell as valid UTF-8 text, or None for a missing value.

    Bytes are decoded as UTF-8 with U+FFFD for invalid bytes; lone surrogates become U+FFFD.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _frame(doc_ids, texts, labels, class_names) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "doc_id": pd.Series(doc_ids, dtype="string"),
            "text": pd.Series([as_text(t) for t in texts], dtype="string"),
            "label": pd.Series(labels, dtype="Int32"),
            "class_name": pd.Series(class_names, dtype="string"),
        }
    )


def _unpack(archive: Path, cache_root: Path) -> Path:
    """Unpack ``archive`` once into ``cache_root``; later runs reuse the folder."""
    target = cache_root / f"20news-bydate-{file_sha256(archive)[:16]}"
    if target.is_dir():
        return target
    staging = cache_root / f".incomplete-{target.name}-{uuid.uuid4().hex[:8]}"
    log.info("ingest: unpacking %s into %s", archive, target)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, filter="data")
        os.replace(staging, target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise InputError(
            f"The archive {archive} is not a readable .tar.gz ({error}); "
            "download it again or pass the unpacked folder."
        ) from error
    except OSError as error:
        if target.is_dir():  # another run unpacked it first
            return target
        raise OutputError(
            f"Could not unpack {archive} into {cache_root} ({error.strerror or error}); "
            "pass a --data-home you can write to, with about 100 MB free."
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _split_folders(root: Path, subset: str) -> list[Path]:
    """The bydate split folders under ``root`` (which may hold them one level down)."""
    for base in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        folders = [base / f"20news-bydate-{split}" for split in SPLITS[subset]]
        if all(folder.is_dir() for folder in folders):
            return folders
    expected = ", ".join(f"20news-bydate-{split}/" for split in SPLITS[subset])
    raise InputError(
        f"{root} does not have the 20 Newsgroups bydate layout (expected {expected} "
        "holding one folder per group); pass the bydate archive or its unpacked folder."
    )


def read_bydate_folder(root: Path, subset: str = "train") -> pd.DataFrame:
    """Read an unpacked bydate folder the way scikit-learn's ``fetch_20newsgroups`` does.

    Uses ``sklearn.datasets.load_files(..., encoding="latin1")`` per split, so the
    posts, labels and class names equal those of the download path.
    """
    from sklearn.datasets import load_files

    frames = []
    for folder in _split_folders(Path(root), subset):
        bunch = load_files(folder, encoding="latin1", shuffle=False)
        doc_ids = [
            f"{folder.name.removeprefix('20news-bydate-')}/{Path(f).parent.name}/{Path(f).name}"
            for f in bunch.filenames
        ]
        frames.append(_frame(doc_ids, bunch.data, bunch.target, np.asarray(bunch.target_names)[bunch.target]))
    if not frames or sum(len(f) for f in frames) == 0:
        raise InputError(f"{root} holds no posts; pass the 20 Newsgroups bydate archive.")
    return pd.concat(frames, ignore_index=True)


def load_newsgroups(
    *, archive: Path | None = None, data_home: Path | None = None, subset: str = "train"
) -> pd.DataFrame:
    """Load 20 Newsgroups posts.

    Parameters
    ----------
    archive : Path or None
        The bydate ``.tar.gz`` or its unpacked folder. None: ``$NEWSGROUPS_ARCHIVE``
        if set, else scikit-learn's download (needs internet once).
    data_home : Path or None
        scikit-learn's data folder; archives are unpacked there too.
    subset : {"train", "test", "all"}
        The split; "all" is train then test.

    Returns
    -------
    DataFrame with ``doc_id`` (``<split>/<group>/<file>``), ``text``, ``label``, ``class_name``.
    """
    from sklearn.datasets import get_data_home

    if archive is None and os.environ.get(ARCHIVE_ENV):
        archive = Path(os.environ[ARCHIVE_ENV])
        log.info("ingest: using $%s=%s", ARCHIVE_ENV, archive)
    try:
        home = Path(get_data_home(data_home))  # creates the folder
    except OSError as error:
        raise OutputError(
            f"Cannot use {data_home} as the data folder ({error.strerror or error}); "
            "pass a --data-home you can write to."
        ) from error
    if archive is None:
        return _download(home, subset)
    archive = Path(archive).expanduser()
    if not archive.exists():
        raise InputError(
            f"The archive {archive} does not exist; pass the path of 20news-bydate.tar.gz "
            f"(--archive or ${ARCHIVE_ENV}) or leave both unset to download it."
        )
    root = archive if archive.is_dir() else _unpack(archive, home)
    return read_bydate_folder(root, subset)


def _download(home: Path, subset: str) -> pd.DataFrame:
    from sklearn.datasets import fetch_20newsgroups

    log.info("ingest: fetching 20 Newsgroups (%s) with scikit-learn into %s", subset, home)
    try:
        bunch = fetch_20newsgroups(subset=subset, data_home=home, shuffle=False)
    except OSError as error:
        raise InputError(
            f"Could not download 20 Newsgroups ({error}); without internet, pass a local copy "
            f"of 20news-bydate.tar.gz with --archive or ${ARCHIVE_ENV}."
        ) from error
    doc_ids = [
        f"{Path(f).parent.parent.name.removeprefix('20news-bydate-')}/{Path(f).parent.name}/{Path(f).name}"
        for f in bunch.filenames
    ]
    names = np.asarray(bunch.target_names)[bunch.target]
    return _frame(doc_ids, bunch.data, bunch.target, names)


def load_corpus(
    path: Path, *, text_column: str = "text", label_column: str | None = None, id_column: str | None = None
) -> pd.DataFrame:
    """Load a user's corpus from CSV, Parquet or JSONL.

    ``label_column`` None means: use a column called ``label`` if there is one,
    else treat the corpus as unlabelled. Classes are numbered in sorted order of
    their names.
    """
    path = Path(path).expanduser()
    reader = CORPUS_READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"The corpus {path} must be a .csv, .parquet or .jsonl file; got '{path.suffix or 'no extension'}'."
        )
    if not path.is_file():
        raise InputError(f"The corpus file {path} does not exist; check the --corpus path.")
    if path.stat().st_size == 0:
        raise InputError(f"The corpus {path} is empty; pass a file with at least one text.")
    try:
        frame = reader(path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeError) as error:
        raise InputError(f"The corpus {path} could not be read as {path.suffix} ({error}).") from error
    if frame.empty:
        raise InputError(f"The corpus {path} has no rows; pass a file with at least one text.")
    columns = ", ".join(repr(str(c)) for c in frame.columns)
    for option, column in (
        ("--text-column", text_column),
        ("--label-column", label_column),
        ("--id-column", id_column),
    ):
        if column is not None and column not in frame.columns:
            raise InputError(
                f"The corpus {path} has no column {column!r} ({option}); its columns are {columns}."
            )
    if label_column is None and "label" in frame.columns:
        label_column = "label"
        log.info("ingest: using column 'label' as the true classes")
    if id_column is None:
        doc_ids = frame.index.astype(str)
    else:
        doc_ids = frame[id_column].astype(str)
        if doc_ids.duplicated().any():
            repeated = doc_ids[doc_ids.duplicated()].iloc[0]
            raise InputError(
                f"The id column {id_column!r} of {path} repeats the id {repeated!r}; ids must be unique."
            )
    texts = frame[text_column]
    if label_column is None:
        return _frame(doc_ids, texts, [pd.NA] * len(frame), [pd.NA] * len(frame))
    names = frame[label_column].astype("string")
    classes = sorted(names.dropna().unique())
    codes = names.map({name: code for code, name in enumerate(classes)}).astype("Int32")
    return _frame(doc_ids, texts, codes, names)


def ingest(settings: SourceSettings) -> pd.DataFrame:
    """Load the corpus the settings name: ``settings.corpus`` if set, else 20 Newsgroups."""
    if settings.corpus is not None:
        return load_corpus(
            settings.corpus,
            text_column=settings.text_column,
            label_column=settings.label_column,
            id_column=settings.id_column,
        )
    return load_newsgroups(archive=settings.archive, data_home=settings.data_home, subset=settings.subset)


@task(
    name="ingest",
    task_run_name="ingest",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=is_transient,
)
def ingest_task(settings: SourceSettings, *, layout: RunLayout) -> pd.DataFrame:
    """Prefect task: :func:`ingest`, persisted to ``corpus.parquet``; the download is retried."""
    frame = ingest(settings)
    write_table(frame, layout.corpus, DOCUMENTS_SCHEMA)
    return frame
