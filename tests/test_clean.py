"""Clean: the tutorial's four cleaning steps, and which texts are dropped and counted."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.clean import clean_corpus, clean_text
from tasks.config import CleaningSettings


def corpus(texts, class_names=None) -> pd.DataFrame:
    class_names = class_names if class_names is not None else ["a"] * len(texts)
    return pd.DataFrame(
        {
            "doc_id": pd.Series([f"d{i}" for i in range(len(texts))], dtype="string"),
            "text": pd.Series(texts, dtype="string"),
            "label": pd.Series([0 if c is not None else None for c in class_names], dtype="Int32"),
            "class_name": pd.Series(class_names, dtype="string"),
        }
    )


# --- clean_text -------------------------------------------------------------------------------


def test_email_addresses_are_removed():
    assert clean_text("Write to ann.lee@cs.example.org today") == "Write to  today"


def test_email_addresses_are_removed_on_every_line_and_line_breaks_stay():
    text = "From: ann@x.org\nSubject: Hi\n\nask bob@y.org or\ncal@z.org\nno address here\n"
    assert clean_text(text) == "Hi\n\nask  or\n\nno address here\n"


def test_parenthesised_text_is_removed():
    assert clean_text("Ann Lee (NASA JSC) wrote:") == "Ann Lee  wrote:"


def test_only_the_innermost_parentheses_are_removed():
    assert clean_text("keep (outer (inner) text) end") == "keep (outer  text) end"


def test_the_from_and_subject_headers_are_removed_but_not_their_values():
    assert clean_text("From: Ann\nSubject: Orbits\n\nBody") == "AnnOrbits\n\nBody"


def test_subject_is_only_removed_at_the_start_of_a_line():
    assert clean_text("The Subject: is kept") == "The Subject: is kept"


def test_a_whole_header_in_the_tutorial_format_reduces_to_the_subject():
    post = "From: ann@example.org (Ann Lee)\nSubject: Re: Shuttle launch\n\nIt flew."
    assert clean_text(post) == " Re: Shuttle launch\n\nIt flew."


def test_emails_are_removed_before_parentheses():
    # Parentheses first would glue "a" to the address and remove both.
    assert clean_text("a(b)c@d.org") == "a"


def test_parentheses_are_removed_before_the_headers():
    # With the headers removed first, "\nSubject: " would be gone before the parentheses.
    assert clean_text("x(\nSubject: y)z") == "xz"


def test_from_is_removed_before_subject():
    assert clean_text("\nSubFrom: ject: tail") == "tail"


def test_text_without_anything_to_clean_is_unchanged():
    text = "Plain text, with 3 numbers and no headers.\n"
    assert clean_text(text) == text


# --- clean_corpus -----------------------------------------------------------------------------

MAX = 20


def test_each_kind_of_unusable_text_is_dropped_and_counted():
    frame = corpus(
        [
            "Hello world",  # kept
            None,  # missing
            "",  # empty
            "  \n\t ",  # empty
            "(only a name)",  # empty after cleaning
            "x" * MAX,  # too long: exactly max_chars
            "y" * (MAX - 1),  # kept: one below
            "z" * (MAX - 1) + "(Ann)",  # kept: too long only before cleaning
            "Hello world(Ann)",  # duplicate of the first, after cleaning
            "No class here",  # unlabelled
            "caf\ufffd au lait",  # kept, undecodable
        ],
        ["a", "a", "a", "a", "a", "a", "b", "b", "b", None, "b"],
    )
    kept, report = clean_corpus(frame, CleaningSettings(max_chars=MAX))
    assert report == {
        "input": 11,
        "missing": 1,
        "empty": 3,
        "too_long": 1,
        "duplicate": 1,
        "unlabelled": 1,
        "undecodable": 1,
        "kept": 4,
    }
    assert kept["doc_id"].tolist() == ["d0", "d6", "d7", "d10"]
    assert kept["text"].tolist() == ["Hello world", "y" * (MAX - 1), "z" * (MAX - 1), "caf\ufffd au lait"]


def test_kept_rows_keep_their_original_order_and_columns():
    frame = corpus(["c text", "a text", "b text"], ["z", "x", "y"])
    kept, _ = clean_corpus(frame, CleaningSettings())
    assert kept["doc_id"].tolist() == ["d0", "d1", "d2"]
    assert list(kept.columns) == list(frame.columns)
    assert kept.index.tolist() == [0, 1, 2]


def test_the_kept_texts_are_the_cleaned_texts():
    frame = corpus(["From: bob@example.org (Bob)\nSubject: Hi\n\nBody"])
    kept, _ = clean_corpus(frame, CleaningSettings())
    assert kept["text"].tolist() == [" Hi\n\nBody"]


def test_duplicates_are_kept_when_dropping_them_is_off():
    frame = corpus(["same", "same", "other"])
    kept, report = clean_corpus(frame, CleaningSettings(drop_duplicates=False))
    assert kept["doc_id"].tolist() == ["d0", "d1", "d2"]
    assert report["duplicate"] == 0


def test_the_first_of_several_duplicates_is_kept():
    frame = corpus(["other", "same", "same", "same"])
    kept, report = clean_corpus(frame, CleaningSettings())
    assert kept["doc_id"].tolist() == ["d0", "d1"]
    assert report["duplicate"] == 2


def test_a_labelled_post_is_kept_when_an_earlier_unlabelled_post_has_the_same_text():
    frame = corpus(["same text", "same text", "other"], [None, "a", "a"])
    kept, report = clean_corpus(frame, CleaningSettings())
    assert kept["doc_id"].tolist() == ["d1", "d2"]
    assert (report["unlabelled"], report["duplicate"]) == (1, 0)


def test_an_unlabelled_corpus_keeps_every_usable_text():
    frame = corpus(["one", "two", ""], [None, None, None])
    kept, report = clean_corpus(frame, CleaningSettings())
    assert kept["doc_id"].tolist() == ["d0", "d1"]
    assert report["unlabelled"] == 0
    assert report["empty"] == 1


@pytest.mark.parametrize(("length", "kept_count"), [(MAX - 1, 1), (MAX, 0), (MAX + 1, 0)])
def test_texts_of_max_chars_or_more_are_dropped(length, kept_count):
    kept, report = clean_corpus(corpus(["w" * length]), CleaningSettings(max_chars=MAX))
    assert len(kept) == kept_count
    assert report["too_long"] == 1 - kept_count


def _flow_logs(caplog, **kwargs):
    """Run the flow with ``kwargs`` and return its state and the task runs' log text."""
    import logging

    from flows.newsgroups import newsgroups

    task_log = logging.getLogger("prefect.task_runs")
    caplog.set_level(logging.INFO, logger=task_log.name)
    task_log.addHandler(caplog.handler)
    try:
        return newsgroups(**kwargs, return_state=True), caplog.text
    finally:
        task_log.removeHandler(caplog.handler)


def test_the_console_says_what_cleaning_dropped_and_changed_one_line_per_kind(tmp_path, caplog):
    from tasks.config import EmbeddingSettings, MapSettings, OutputSettings, SourceSettings

    rows = [
        f"caf\xe9 number {i} in the {'space' if i % 2 else 'car'} club".encode("cp1252") for i in range(12)
    ]
    rows += [b"a text with no label", b"caf\xe9 number 0 in the car club"]
    labels = [b"space", b"car"] * 6 + [b"", b"car"]
    path = tmp_path / "cp1252.csv"
    path.write_bytes(
        b"text,label\n" + b"".join(t + b"," + lab + b"\n" for t, lab in zip(rows, labels, strict=True))
    )
    state, logs = _flow_logs(
        caplog,
        source=SourceSettings(corpus=path),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
    )
    assert state.is_completed()
    assert "clean: dropped 1 of 14 rows that had no label in a labelled corpus" in logs
    assert (
        "clean: dropped 1 of 14 rows that repeated an earlier text (--no-drop-duplicates keeps them)" in logs
    )
    assert "clean: 12 of the 12 texts kept held bytes that are not UTF-8, now U+FFFD" in logs
    assert "were empty" not in logs  # no line for what did not happen


def test_a_sample_too_small_after_cleaning_is_refused_saying_what_was_dropped(tmp_path, caplog):
    from tasks.config import ClusterSettings, EmbeddingSettings, MapSettings, OutputSettings, SourceSettings

    path = tmp_path / "same.csv"
    path.write_text("text\n" + "the very same text\n" * 60)
    state, _ = _flow_logs(
        caplog,
        source=SourceSettings(corpus=path),
        clustering=ClusterSettings(n_clusters=2),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
    )
    assert state.is_failed()
    assert "the sample has 1" in state.message
    assert "Cleaning kept 1 of 60 rows (59 duplicate dropped)." in state.message
