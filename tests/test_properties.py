"""Property-based tests (hypothesis) for cleaning and sampling, over inputs nobody would write by hand."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tasks.clean import EMAIL, _without_emails, clean_corpus, clean_text
from tasks.config import CleaningSettings
from tasks.corpus import SEPARATORS, as_text, load_corpus
from tasks.errors import InputError
from tasks.layout import DOCUMENTS_SCHEMA, write_table
from tasks.sample import sample_per_class

# Every code point, lone surrogates included (what a broken decoder or a JSON "\udc80" yields).
ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]))
ANY_TEXT = st.text(ANY_CHAR, max_size=200)
CELLS = st.one_of(ANY_TEXT, st.binary(max_size=200), st.none(), st.just(float("nan")), st.integers())


def is_valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(CELLS)
def test_any_corpus_cell_becomes_valid_utf8_or_missing(value):
    text = as_text(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        assert text is None
    else:
        assert is_valid_utf8(text)


@given(st.text(max_size=300))
def test_cleaning_valid_text_gives_valid_text_no_longer_than_before(text):
    cleaned = clean_text(text)
    assert is_valid_utf8(cleaned)
    assert len(cleaned) <= len(text)


# Texts made of what the e-mail pattern turns on: its own characters, "@", line breaks and other separators.
EMAILISH = st.text(st.sampled_from("ab_.-@\n\r \t(é\u2028\x0b"), max_size=60)


@settings(max_examples=500)
@given(st.one_of(EMAILISH, st.text(max_size=100)))
def test_removing_emails_line_by_line_equals_the_pattern_over_the_whole_text(text):
    assert _without_emails(text) == EMAIL.sub("", text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CELLS, min_size=1, max_size=30), st.integers(1, 400), st.booleans())
def test_any_texts_clean_to_valid_utf8_that_parquet_accepts(cells, max_chars, drop_duplicates):
    frame = pd.DataFrame(
        {
            "doc_id": pd.Series([str(i) for i in range(len(cells))], dtype="string"),
            "text": pd.Series([as_text(c) for c in cells], dtype="string"),
            "label": pd.Series([i % 3 for i in range(len(cells))], dtype="Int32"),
            "class_name": pd.Series([f"c{i % 3}" for i in range(len(cells))], dtype="string"),
        }
    )
    kept, report = clean_corpus(frame, CleaningSettings(max_chars=max_chars, drop_duplicates=drop_duplicates))
    dropped = sum(report[k] for k in ("missing", "empty", "too_long", "duplicate", "unlabelled"))
    assert report["kept"] == len(kept) == len(frame) - dropped
    assert all(is_valid_utf8(t) and t.strip() and len(t) < max_chars for t in kept["text"])
    if drop_duplicates:
        assert kept["text"].is_unique
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cleaned.parquet"
        write_table(kept, path, DOCUMENTS_SCHEMA)
        assert pq.read_table(path).column("text").to_pylist() == kept["text"].tolist()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.one_of(
            st.text(st.characters(codec="utf-8"), max_size=80),
            st.sampled_from(["007", "NA", "null", "1e5", "True", "2024-01-01"]),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_a_corpus_file_of_any_utf8_texts_loads_as_valid_utf8(suffix, texts):
    # A bare carriage return is a line break to CSV readers; CSV users must quote it themselves.
    assume(suffix != ".csv" or not any("\r" in t for t in texts))
    frame = pd.DataFrame({"text": texts, "label": ["a"] * len(texts)})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"corpus{suffix}"
        if suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
        elif suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path)
        loaded = load_corpus(path)
    assert all(is_valid_utf8(t) for t in loaded["text"].dropna())
    # Texts come back as written ("00" stays "00", "NA" stays "NA"); CSV cannot tell "" from missing.
    expected = [None if suffix == ".csv" and t == "" else t for t in texts]
    assert [None if t is pd.NA else t for t in loaded["text"]] == expected


def corpus_of(sizes: list[int], *, order_seed: int) -> pd.DataFrame:
    rows = [(f"{name}/{i}", f"class-{name}") for name, size in enumerate(sizes) for i in range(size)]
    frame = pd.DataFrame(rows, columns=["doc_id", "class_name"]).assign(text="t", label=0)
    return frame.sample(frac=1, random_state=order_seed).reset_index(drop=True)


CLASS_SIZES = st.lists(st.integers(1, 40), min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(CLASS_SIZES, st.data(), st.integers(0, 2**32 - 1), st.integers(0, 1000))
def test_sampling_is_stratified_reproducible_and_ignores_row_order(sizes, data, seed, order_seed):
    per_class = data.draw(st.integers(0, min(sizes)), label="per_class")
    frame = corpus_of(sizes, order_seed=order_seed)
    sample = sample_per_class(frame, per_class, seed=seed)
    counts = sample["class_name"].value_counts().to_dict()
    assert counts == {f"class-{i}": per_class or size for i, size in enumerate(sizes) if per_class or size}
    assert sample["doc_id"].is_unique
    assert set(sample["doc_id"]) <= set(frame["doc_id"])
    again = sample_per_class(corpus_of(sizes, order_seed=order_seed + 1), per_class, seed=seed)
    pd.testing.assert_frame_equal(sample[["doc_id", "class_name"]], again[["doc_id", "class_name"]])


@settings(max_examples=40, deadline=None)
@given(CLASS_SIZES, st.integers(0, 2**32 - 1))
def test_asking_for_more_than_the_smallest_class_names_that_class(sizes, seed):
    smallest = sizes.index(min(sizes))  # classes are checked in name order: class-0, class-1, ...
    with pytest.raises(InputError, match=rf"The class 'class-{smallest}' has only {min(sizes)} posts"):
        sample_per_class(corpus_of(sizes, order_seed=0), min(sizes) + 1, seed=seed)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**32 - 1))
def test_different_seeds_draw_different_samples_of_a_large_class(size, seed):
    frame = corpus_of([size * 3], order_seed=0)
    drawn = {tuple(sample_per_class(frame, size, seed=s)["doc_id"]) for s in (seed, seed + 1, seed + 2)}
    # Three draws of `size` from 3*size items: all equal has probability below 1/C(3*size, size)^2.
    assert len(drawn) > 1


@settings(max_examples=60, deadline=None)
@given(
    separator=st.sampled_from(list(SEPARATORS)),
    texts=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\r"), min_size=1, max_size=60),
        min_size=1,
        max_size=12,
    ),
)
def test_a_csv_with_any_of_the_usual_separators_loads_without_being_told_which(separator, texts):
    frame = pd.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "label": "a"})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "corpus.csv"
        frame.to_csv(path, index=False, sep=separator)
        loaded = load_corpus(path, id_column="id")
    assert loaded["doc_id"].tolist() == frame["id"].tolist()
    assert loaded["text"].tolist() == texts
