"""Ingest: 20 Newsgroups (download or local bydate archive) or a user's corpus file.

Every source yields the same frame: ``doc_id``, ``text``, ``label``, ``class_name``
(``label`` and ``class_name`` are null for an unlabelled corpus).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import numbers
import os
import shutil
import tarfile
import uuid
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.errors import InputError, OutputError
from tasks.layout import file_sha256

if TYPE_CHECKING:
    from tasks.config import SourceSettings

log = logging.getLogger(__name__)

ARCHIVE_ENV = "NEWSGROUPS_ARCHIVE"
SPLITS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}


SEPARATORS = ",;\t|"
# Enough lines to guess a CSV's separator from; a text longer than this still leaves the header whole.
SNIFF_BYTES = 64 * 1024


def sniff_separator(head: str) -> str:
    """The column separator of a CSV whose first characters are ``head``: one of ``,;<tab>|``.

    Column names rarely hold a separator, so the header line decides when it holds
    exactly one of them; when it holds several, :class:`csv.Sniffer` chooses among
    those; a header of one column (or none of them) gives ','.
    """
    header = head.split("\n", 1)[0]
    present = "".join(separator for separator in SEPARATORS if separator in header)
    if len(present) <= 1:
        return present or ","
    try:
        return csv.Sniffer().sniff(head, delimiters=present).delimiter
    except csv.Error:
        return ","


def _read_csv(path: Path, separator: str | None = None) -> pd.DataFrame:
    if separator is None:
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            separator = sniff_separator(handle.read(SNIFF_BYTES))
    try:
        # A row with one field too many would silently become the index, and one too many fields
        # with index_col=False only warns: both are refused.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Every cell as the text it is: no "007" -> 7, no "NA" or "null" -> missing; only an empty cell is missing.
            return pd.read_csv(
                path,
                sep=separator,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                index_col=False,
                encoding="utf-8",
                encoding_errors="replace",
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning) as error:
        raise InputError(
            f"The corpus {path} could not be read as CSV with the separator {separator!r} "
            f"({_ragged_row(path, separator)}); quote texts that contain the separator, "
            "or pass --csv-separator with the right one."
        ) from error


def _ragged_row(path: Path, separator: str) -> str:
    """Where a CSV's rows stop having as many fields as its header, in words."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        rows = csv.reader(handle, delimiter=separator)
        header = next(rows, [])
        for row in rows:
            if len(row) > len(header):
                return f"line {rows.line_num} has {len(row)} fields, the header {len(header)}"
    return "its rows do not parse"


def _read_jsonl(path: Path, separator: str | None = None) -> pd.DataFrame:
    try:
        # JSON's own types only: no "00" -> 0, no dates parsed from columns with date-like names.
        return pd.read_json(path, lines=True, dtype=False, encoding="utf-8", encoding_errors="replace")
    except ValueError as error:
        line, problem = _first_bad_line(path)
        if line is None:
            raise
        raise InputError(
            f"Line {line} of the corpus {path} is not a JSON object ({problem}); fix or remove that line."
        ) from error


def _first_bad_line(path: Path) -> tuple[int | None, str]:
    """The number (from 1) of the first line of a JSONL file that is not a JSON object, and why."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                return number, f"{error.msg} at column {error.colno}"
            if not isinstance(value, dict):
                return number, f"a JSON {type(value).__name__} instead"
    return None, ""


def _read_parquet(path: Path, separator: str | None = None) -> pd.DataFrame:
    return pd.read_parquet(path)


CORPUS_READERS = {
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
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
    archive = check_archive(archive)
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


def check_corpus_file(path: Path) -> Path:
    """Refuse a corpus path that cannot be read, before anything is read from it; returns the path.

    Checks the extension, that the path is a file (not a folder) and that it is
    not empty: what can be told without reading the data.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in CORPUS_READERS:
        raise InputError(
            f"The corpus {path} must be a .csv, .parquet or .jsonl file; got '{path.suffix or 'no extension'}'."
        )
    if path.is_dir():
        raise InputError(f"The corpus {path} is a folder; pass the corpus file itself with --corpus.")
    if not path.is_file():
        raise InputError(f"The corpus file {path} does not exist; check the --corpus path.")
    if path.stat().st_size == 0:
        raise InputError(f"The corpus {path} is empty; pass a file with at least one text.")
    return path


def check_archive(archive: Path) -> Path:
    """Refuse a 20 Newsgroups archive path that does not exist, before anything is read; returns it."""
    archive = Path(archive).expanduser()
    if not archive.exists():
        raise InputError(
            f"The archive {archive} does not exist; pass the path of 20news-bydate.tar.gz "
            f"(--archive or ${ARCHIVE_ENV}) or leave both unset to download it."
        )
    return archive


def check_source(settings: SourceSettings) -> None:
    """Refuse source settings whose files cannot be used, without reading any data.

    The flow's ingest makes the same checks; the command line makes them first,
    so a wrong path is refused at once, before Prefect starts.
    """
    if settings.corpus is not None:
        check_corpus_file(settings.corpus)
    elif settings.archive is not None:
        check_archive(settings.archive)
    elif os.environ.get(ARCHIVE_ENV):
        check_archive(Path(os.environ[ARCHIVE_ENV]))


def _cell_kind(value: object) -> str | None:
    """None for a cell that reads as text (text, bytes, a number, missing); else what it is, in words."""
    if value is None or value is pd.NA or isinstance(value, str | bytes | numbers.Number | np.bool_):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"


def _check_texts(texts: pd.Series, path: Path, column: str) -> None:
    """Refuse a text column holding lists, objects or other values that are not text or numbers."""
    if texts.dtype != object:
        return
    kinds = texts.map(_cell_kind)
    if kinds.notna().any():
        row = int(np.flatnonzero(kinds.notna().to_numpy())[0])
        raise InputError(
            f"The text column {column!r} of {path} holds {kinds.iloc[row]} in row {row + 1}, not a "
            "text; store each text as a string, or choose another --text-column."
        )


def _check_ids(ids: pd.Series, path: Path, column: str) -> pd.Series:
    """The ids as strings; refuses a blank or repeated id."""
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0])
        raise InputError(
            f"The id column {column!r} of {path} is blank in row {row + 1}; give every row an id, "
            "or leave --id-column out to number the rows."
        )
    ids = ids.astype(str)
    if ids.duplicated().any():
        repeated = ids[ids.duplicated()].iloc[0]
        raise InputError(
            f"The id column {column!r} of {path} repeats the id {repeated!r}; ids must be unique."
        )
    return ids


def load_corpus(
    path: Path,
    *,
    text_column: str = "text",
    label_column: str | None = None,
    id_column: str | None = None,
    csv_separator: str | None = None,
) -> pd.DataFrame:
    """Load a user's corpus from CSV, Parquet or JSONL.

    ``label_column`` None means: use a column called ``label`` if there is one,
    else treat the corpus as unlabelled. Classes are numbered in sorted order of
    their names. ``csv_separator`` None guesses a CSV's separator from its first
    lines. Texts must be strings or numbers; bytes are decoded as UTF-8.
    """
    path = check_corpus_file(path)
    reader = CORPUS_READERS[path.suffix.lower()]
    try:
        frame = reader(path, csv_separator)
    except InputError:
        raise
    except (ValueError, OSError, UnicodeError) as error:
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
    doc_ids = frame.index.astype(str) if id_column is None else _check_ids(frame[id_column], path, id_column)
    texts = frame[text_column]
    _check_texts(texts, path, text_column)
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
            csv_separator=settings.csv_separator,
        )
    return load_newsgroups(archive=settings.archive, data_home=settings.data_home, subset=settings.subset)
