"""Ingest: 20 Newsgroups (download or local bydate archive) or a user's corpus file.

Every source yields the same frame: ``doc_id``, ``text``, ``label``, ``class_name``
(``label`` and ``class_name`` are null for an unlabelled corpus); a user's corpus
adds its other columns after them, as text (:func:`tasks.corpus.extra_columns`).
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

from tasks.corpus import check_corpus_file, documents_frame, load_corpus
from tasks.errors import InputError, OutputError
from tasks.layout import file_sha256

if TYPE_CHECKING:
    from tasks.config import SourceSettings

log = logging.getLogger(__name__)

ARCHIVE_ENV = "NEWSGROUPS_ARCHIVE"
SPLITS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}


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
        split = folder.name.removeprefix("20news-bydate-")
        # os.path, not Path: a Path per file was most of the time of reading a split (0.26 of 0.33 s).
        doc_ids = [
            f"{split}/{os.path.basename(os.path.dirname(f))}/{os.path.basename(f)}" for f in bunch.filenames
        ]
        frames.append(
            documents_frame(doc_ids, bunch.data, bunch.target, np.asarray(bunch.target_names)[bunch.target])
        )
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
    return documents_frame(doc_ids, bunch.data, bunch.target, names)


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


def ingest(settings: SourceSettings) -> pd.DataFrame:
    """Load the corpus the settings name: ``settings.corpus`` if set, else 20 Newsgroups."""
    if settings.corpus is not None:
        return load_corpus(
            settings.corpus,
            text_column=settings.text_column,
            label_column=settings.label_column,
            id_column=settings.id_column,
            csv_separator=settings.csv_separator,
            labels_as_text=settings.labels_as_text,
        )
    return load_newsgroups(archive=settings.archive, data_home=settings.data_home, subset=settings.subset)
