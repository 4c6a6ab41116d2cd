"""The corpus store: a source is ingested and cleaned once, then read back by every run of it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flows.newsgroups import newsgroups
from tasks.config import CleaningSettings, MapSettings, OutputSettings, SamplingSettings, SourceSettings
from tasks.corpus_store import clean_stored, default_store_dir, ingest_stored, locate
from tasks.layout import DOCUMENTS_SCHEMA, write_table


@pytest.fixture
def corpus_csv(tmp_path, tiny_corpus):
    path = tmp_path / "corpus.csv"
    tiny_corpus.to_csv(path, index=False)
    return path


def test_a_stored_source_is_read_back_from_the_store(corpus_csv, tmp_path):
    source = SourceSettings(corpus=corpus_csv)
    stored = locate(source, tmp_path / "store")
    first = ingest_stored(source, stored)
    assert (
        stored.corpus.exists() and json.loads((stored.folder / "source.json").read_text())["kind"] == "corpus"
    )
    # Replace the stored copy: what comes back proves the store, not the file, was read.
    write_table(first.head(2), stored.corpus, DOCUMENTS_SCHEMA)
    assert len(ingest_stored(source, stored)) == 2


def test_a_corpus_s_other_columns_are_stored_and_read_back(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.csv"
    tiny_corpus.assign(source=["web", "print"] * 6).to_csv(path, index=False)
    source = SourceSettings(corpus=path)
    stored = locate(source, tmp_path / "store")
    first = ingest_stored(source, stored)
    kept, _ = clean_stored(first, CleaningSettings(), stored)
    again, _ = clean_stored(ingest_stored(source, stored), CleaningSettings(), stored)
    assert stored.cleaned(CleaningSettings()).exists()
    assert list(again.columns) == ["doc_id", "text", "label", "class_name", "id", "source"]
    assert again["source"].tolist() == kept["source"].tolist() == ["web", "print"] * 6


def test_the_key_follows_the_file_bytes_the_columns_and_the_split(corpus_csv, tmp_path, archive):
    store = tmp_path / "store"
    key = locate(SourceSettings(corpus=corpus_csv), store).folder
    assert locate(SourceSettings(corpus=corpus_csv), store).folder == key
    assert locate(SourceSettings(corpus=corpus_csv, text_column="body"), store).folder != key
    corpus_csv.write_text(corpus_csv.read_text() + "one more,space\n")
    assert locate(SourceSettings(corpus=corpus_csv), store).folder != key
    train = locate(SourceSettings(archive=archive), store)
    assert train.identity["subset"] == "train"
    assert locate(SourceSettings(archive=archive, subset="test"), store).folder != train.folder


def test_sources_that_are_not_one_file_are_not_stored(tmp_path):
    assert locate(SourceSettings(archive=tmp_path), tmp_path / "store") is None
    assert locate(SourceSettings(), None) is None


def test_cleaned_posts_are_kept_per_cleaning_settings(corpus_csv, tmp_path):
    source = SourceSettings(corpus=corpus_csv)
    stored = locate(source, tmp_path / "store")
    frame = ingest_stored(source, stored)
    kept, report = clean_stored(frame, CleaningSettings(), stored)
    short, short_report = clean_stored(frame, CleaningSettings(max_chars=40), stored)
    assert stored.cleaned(CleaningSettings()) != stored.cleaned(CleaningSettings(max_chars=40))
    assert len(short) < len(kept) and short_report["too_long"] > 0
    again, again_report = clean_stored(frame, CleaningSettings(), stored)
    pd.testing.assert_frame_equal(again, kept, check_dtype=False)
    assert again_report == report


def test_an_unwritable_store_only_costs_the_reuse(corpus_csv, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    stored = locate(SourceSettings(corpus=corpus_csv), blocker)
    frame = ingest_stored(SourceSettings(corpus=corpus_csv), stored)
    assert len(frame) == 12
    assert "could not keep" in caplog.text


@pytest.mark.slow
def test_runs_keep_only_their_sample_and_record_the_stored_corpus(archive, data_home, tmp_path, caplog):
    kwargs = dict(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=5),
        mapping=MapSettings(reducer="pca"),
    )
    first = newsgroups(**kwargs, output=OutputSettings(output_dir=tmp_path, run_name="one"))
    stored = locate(kwargs["source"], default_store_dir(tmp_path))
    stored_files = [stored.corpus, stored.cleaned(CleaningSettings())]
    assert all(path.is_file() for path in stored_files)
    written = {path: path.stat().st_mtime_ns for path in stored_files}
    caplog.clear()
    second = newsgroups(**kwargs, output=OutputSettings(output_dir=tmp_path, run_name="two"))
    for name in ("one", "two"):
        assert not {"corpus.parquet", "cleaned.parquet"} & {p.name for p in (tmp_path / name).iterdir()}
    assert first["corpus"] == second["corpus"]
    assert (
        first["corpus"]["source"]["subset"] == "train" and first["corpus"]["source"]["kind"] == "newsgroups"
    )
    assert second["counts"]["cleaned"] == first["counts"]["cleaned"]
    # The second run reads the store and rewrites nothing in it (timings would be a flaky witness).
    assert "from the corpus store" in caplog.text
    assert {path: path.stat().st_mtime_ns for path in stored_files} == written
    assert len(list((tmp_path / ".corpus-store").glob("*/corpus.parquet"))) == 1
