"""Ingested and cleaned posts, stored once and shared by every run that reads the same source.

A run folder used to copy the whole corpus (``corpus.parquet`` and
``cleaned.parquet``: 21 MB for the train split, whatever the sample size).
Now the store keeps one copy per source, keyed by what the posts depend on:
the source file's sha256 (the archive or the user's corpus file), the split,
the column choices, and for the cleaned posts the cleaning settings too. Runs
record which stored corpus they used. Sources that are not one file (an
unpacked folder, scikit-learn's download) are ingested afresh every time.

Layout: ``<store>/<source key>/source.json`` (what the key stands for),
``corpus.parquet``, ``cleaned-<cleaning key>.parquet`` and
``cleaned-<cleaning key>.json`` (the drop counts). Files are written
atomically, so two runs filling the same entry at once both end with a whole
file; the source key covers the file's bytes, so a changed file never matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from prefect import task

from tasks.base import Settings
from tasks.clean import clean_corpus, cleaning_lines
from tasks.corpus import MAX_EXTRA_COLUMNS
from tasks.errors import OutputError, is_transient
from tasks.ingest import ARCHIVE_ENV, ingest
from tasks.layout import documents_schema, file_sha256, write_json, write_table
from tasks.logs import run_logger
from tasks.run import Run
from tasks.sample import sample_task

log = logging.getLogger(__name__)

STORE_DIR = ".corpus-store"


def default_store_dir(output_dir: Path) -> Path:
    """The store used when none is given: ``<output_dir>/.corpus-store``, beside the run folders."""
    return Path(output_dir) / STORE_DIR


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def source_identity(source: Settings) -> dict[str, Any] | None:
    """What the ingested posts depend on, or None when the source is not one file."""
    if source.corpus is not None:
        path, kind = Path(source.corpus), "corpus"
    else:
        path = source.archive or (Path(os.environ[ARCHIVE_ENV]) if os.environ.get(ARCHIVE_ENV) else None)
        kind = "newsgroups"
    if path is None or not Path(path).is_file():
        return None
    identity = {"kind": kind, "sha256": file_sha256(path), "name": Path(path).name}
    if kind == "newsgroups":
        identity["subset"] = source.subset
    else:
        identity.update(
            text_column=source.text_column,
            label_column=source.label_column,
            id_column=source.id_column,
            csv_separator=source.csv_separator,
            labels_as_text=source.labels_as_text,
            extra_columns=MAX_EXTRA_COLUMNS,
        )
    return identity


@dataclass(frozen=True)
class StoredCorpus:
    """Where one source's posts live in the store.

    Attributes
    ----------
    folder : Path
        ``<store>/<source key>``.
    identity : dict
        What the key stands for (kind, file sha256, split or columns).
    """

    folder: Path
    identity: dict[str, Any]

    @property
    def corpus(self) -> Path:
        """The ingested posts."""
        return self.folder / "corpus.parquet"

    def cleaned(self, cleaning: Settings) -> Path:
        """The posts kept by ``cleaning``."""
        return self.folder / f"cleaned-{_digest(cleaning.model_dump(mode='json'))}.parquet"

    def describe(self, cleaning: Settings) -> dict[str, Any]:
        """What the manifest records: the store folder, the source and the cleaned file used."""
        return {"folder": str(self.folder), "source": self.identity, "cleaned": self.cleaned(cleaning).name}


def locate(source: Settings, store_dir: Path | None) -> StoredCorpus | None:
    """The store entry of ``source`` (None: no store, or a source that is not one file)."""
    if store_dir is None:
        return None
    identity = source_identity(source)
    if identity is None:
        return None
    return StoredCorpus(Path(store_dir) / _digest(identity), identity)


def locate_corpus(settings: Settings) -> StoredCorpus | None:
    """The store entry of a run's source (:class:`tasks.config.RunSettings`), in its configured store."""
    output = settings.output
    return locate(settings.source, output.corpus_store or default_store_dir(output.output_dir))


def _read(path: Path) -> pd.DataFrame:
    return pq.read_table(path, schema=documents_schema(pq.read_schema(path).names)).to_pandas()


def _store(frame: pd.DataFrame, path: Path) -> None:
    """Keep ``frame`` for later runs; a store that cannot be written costs only the reuse."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(frame, path, documents_schema(frame.columns))
    except (OSError, OutputError) as error:
        log.warning(
            "corpus store: could not keep %s (%s); later runs will read the source again", path, error
        )


def ingest_stored(source: Settings, stored: StoredCorpus | None) -> pd.DataFrame:
    """The ingested posts of ``source``: from the store when it has them, else read and stored."""
    if stored is not None and stored.corpus.exists():
        log.info("ingest: %s from the corpus store (%s)", stored.identity["name"], stored.folder)
        return _read(stored.corpus)
    frame = ingest(source)
    if stored is not None:
        _store(frame, stored.corpus)
        try:
            write_json(stored.identity, stored.folder / "source.json")
        except OutputError:
            pass  # the description is for people; the key alone finds the entry
    return frame


def clean_stored(
    frame: pd.DataFrame, cleaning: Settings, stored: StoredCorpus | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`tasks.clean.clean_corpus`, reusing the stored result for the same source and settings.

    Logs one line per kind of row dropped or text changed (:func:`tasks.clean.cleaning_lines`).
    """
    path = stored.cleaned(cleaning) if stored is not None else None
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        kept, report = _read(path), json.loads(path.with_suffix(".json").read_text())
    else:
        kept, report = clean_corpus(frame, cleaning)
        if path is not None:
            _store(kept, path)
            try:
                write_json(report, path.with_suffix(".json"))
            except OutputError:
                pass
    logger = run_logger(log)
    for line in cleaning_lines(report):
        logger.info("%s", line)
    return kept, report


@task(
    name="ingest",
    task_run_name="ingest",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=is_transient,
)
def ingest_task(source: Settings, *, stored: StoredCorpus | None) -> pd.DataFrame:
    """Prefect task: :func:`ingest_stored`; a failed download is retried."""
    return ingest_stored(source, stored)


@task(name="clean", task_run_name="clean")
def clean_task(
    frame: pd.DataFrame, cleaning: Settings, *, stored: StoredCorpus | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Prefect task: :func:`clean_stored`."""
    return clean_stored(frame, cleaning, stored)


def draw_sample(run: Run, settings: Settings) -> pd.DataFrame:
    """Ingest, clean (through the run's corpus store) and sample a run's source: the front of every flow.

    ``settings`` is a :class:`tasks.config.RunSettings`. Each stage is a step of
    ``run`` (a Prefect task inside a flow run, its plain function outside one);
    the counts (``ingested``, and ``cleaned``: what cleaning dropped) and the
    stored corpus used are recorded in the run's manifest.
    """
    stored = locate_corpus(settings)
    corpus = run.step("ingest", ingest_task, settings.source, stored=stored)
    cleaned, dropped = run.step("clean", clean_task, corpus, settings.cleaning, stored=stored)
    sample = run.step(
        "sample", sample_task, cleaned, settings.sampling, seed=settings.seed, layout=run.layout
    )
    run.record(
        counts={"ingested": len(corpus), "cleaned": dropped},
        corpus=stored.describe(settings.cleaning) if stored else None,
    )
    return sample
