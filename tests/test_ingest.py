"""Ingest: the real 20 Newsgroups archive, and user corpora in CSV, Parquet and JSONL."""

from __future__ import annotations

import tarfile
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest

from tasks import ingest as ingest_module
from tasks.config import SourceSettings
from tasks.errors import InputError
from tasks.ingest import ingest, load_corpus, load_newsgroups, read_bydate_folder

# From ../shared/data/README.md: (train, test) posts per group.
GROUP_SIZES = {
    "alt.atheism": (480, 319),
    "comp.graphics": (584, 389),
    "comp.os.ms-windows.misc": (591, 394),
    "comp.sys.ibm.pc.hardware": (590, 392),
    "comp.sys.mac.hardware": (578, 385),
    "comp.windows.x": (593, 395),
    "misc.forsale": (585, 390),
    "rec.autos": (594, 396),
    "rec.motorcycles": (598, 398),
    "rec.sport.baseball": (597, 397),
    "rec.sport.hockey": (600, 399),
    "sci.crypt": (595, 396),
    "sci.electronics": (591, 393),
    "sci.med": (594, 396),
    "sci.space": (593, 394),
    "soc.religion.christian": (599, 398),
    "talk.politics.guns": (546, 364),
    "talk.politics.mideast": (564, 376),
    "talk.politics.misc": (465, 310),
    "talk.religion.misc": (377, 251),
}


def unpacked_root(data_home: Path) -> Path:
    """The folder the session's loads unpacked the archive into."""
    (root,) = [p for p in data_home.iterdir() if p.name.startswith("20news-bydate-")]
    return root


# --- the real archive -------------------------------------------------------------------------


def test_train_split_has_11314_posts_in_20_classes(train_posts):
    assert len(train_posts) == 11_314
    assert train_posts["class_name"].nunique() == 20
    assert list(train_posts.columns) == ["doc_id", "text", "label", "class_name"]


def test_train_split_has_the_documented_posts_per_group(train_posts):
    counts = train_posts["class_name"].value_counts().to_dict()
    assert counts == {group: sizes[0] for group, sizes in GROUP_SIZES.items()}
    assert counts["sci.space"] == 593


def test_test_split_has_7532_posts_with_the_documented_posts_per_group(archive, data_home):
    test = load_newsgroups(archive=archive, data_home=data_home, subset="test")
    assert len(test) == 7_532
    assert test["class_name"].value_counts().to_dict() == {g: s[1] for g, s in GROUP_SIZES.items()}
    assert test["doc_id"].str.startswith("test/").all()


def test_labels_number_the_groups_in_sorted_order(train_posts):
    pairs = train_posts[["label", "class_name"]].drop_duplicates().sort_values("label")
    assert pairs["label"].tolist() == list(range(20))
    assert pairs["class_name"].tolist() == sorted(GROUP_SIZES)


def test_doc_ids_are_unique_and_name_split_group_and_file(train_posts):
    assert train_posts["doc_id"].is_unique
    assert train_posts["doc_id"].str.fullmatch(r"train/[a-z.-]+/\d+").all()
    groups = train_posts["doc_id"].str.split("/").str[1]
    assert (groups == train_posts["class_name"]).all()


def test_posts_are_the_files_decoded_as_latin1(train_posts, data_home):
    root = unpacked_root(data_home)
    non_ascii = train_posts[train_posts["text"].str.contains(r"[\x80-\xff]", regex=True)]
    assert len(non_ascii) > 0
    for row in [*non_ascii.head(3).itertuples(), *train_posts.head(2).itertuples()]:
        raw = (root / f"20news-bydate-{row.doc_id}").read_bytes()
        assert row.text == raw.decode("latin1")


def test_subset_all_is_train_then_test(archive, data_home, train_posts):
    every = load_newsgroups(archive=archive, data_home=data_home, subset="all")
    assert len(every) == 18_846
    assert every["doc_id"].head(11_314).tolist() == train_posts["doc_id"].tolist()
    assert every["doc_id"].iloc[11_314:].str.startswith("test/").all()


def test_unpacked_folder_gives_the_same_frame_as_the_archive(archive, train_posts, tmp_path):
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    from_folder = load_newsgroups(archive=tmp_path, data_home=tmp_path / "home", subset="train")
    pd.testing.assert_frame_equal(from_folder, train_posts)


def test_the_archive_is_unpacked_once_and_reused(archive, data_home, train_posts):
    before = {p.name for p in data_home.iterdir()}
    with patch.object(ingest_module.tarfile, "open", wraps=tarfile.open) as opened:
        again = load_newsgroups(archive=archive, data_home=data_home, subset="train")
    assert opened.call_count == 0
    assert {p.name for p in data_home.iterdir()} == before
    assert len(again) == len(train_posts)


def test_reading_matches_sklearn_load_files_on_the_same_folder(train_posts, data_home):
    from sklearn.datasets import load_files

    bunch = load_files(unpacked_root(data_home) / "20news-bydate-train", encoding="latin1", shuffle=False)
    assert train_posts["text"].tolist() == bunch.data
    assert train_posts["label"].to_numpy(dtype=int).tolist() == bunch.target.tolist()
    assert sorted(train_posts["class_name"].unique()) == bunch.target_names


def test_bydate_folder_may_sit_one_level_below_the_given_root(tmp_path):
    group = tmp_path / "download" / "20news-bydate-train" / "sci.space"
    group.mkdir(parents=True)
    (group / "1").write_bytes(b"Orbit caf\xe9")
    frame = read_bydate_folder(tmp_path, "train")
    assert frame.to_dict("records") == [
        {"doc_id": "train/sci.space/1", "text": "Orbit caf\u00e9", "label": 0, "class_name": "sci.space"}
    ]


# --- user corpora -----------------------------------------------------------------------------

WRITERS = {
    "csv": lambda frame, path: frame.to_csv(path, index=False),
    "parquet": lambda frame, path: frame.to_parquet(path, index=False),
    "jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
}


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_a_corpus_file_round_trips_texts_labels_and_ids(tiny_corpus, tmp_path, suffix):
    path = tmp_path / f"corpus.{suffix}"
    WRITERS[suffix](tiny_corpus, path)
    frame = load_corpus(path, id_column="id")
    assert frame["doc_id"].tolist() == tiny_corpus["id"].tolist()
    assert frame["text"].tolist() == tiny_corpus["text"].tolist()
    assert frame["class_name"].tolist() == tiny_corpus["label"].tolist()
    assert list(frame.columns) == ["doc_id", "text", "label", "class_name"]


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_a_corpus_s_other_columns_follow_as_text_read_like_labels(tmp_path, suffix):
    path = tmp_path / f"corpus.{suffix}"
    frame = pd.DataFrame(
        {
            "text": ["a", "b", "c"],
            "year": [2001, 2002.0, None],
            "flag": [True, False, None],
            "tags": [["x"], ["y"], []],  # a list: not a column to colour by, left out
            "doc_id": ["p", "q", "r"],  # the frame's own name, not chosen as --id-column: left out
        }
    )
    WRITERS[suffix](frame, path)
    loaded = load_corpus(path)
    assert list(loaded.columns) == ["doc_id", "text", "label", "class_name", "year", "flag"]
    assert loaded["year"].tolist() == ["2001", "2002", pd.NA]
    assert loaded["flag"].tolist() == ["true", "false", pd.NA]


def test_at_most_20_other_columns_are_kept(tmp_path):
    path = tmp_path / "corpus.csv"
    pd.DataFrame({"text": ["a", "b"], **{f"c{i}": ["x", "y"] for i in range(25)}}).to_csv(path, index=False)
    assert list(load_corpus(path).columns)[4:] == [f"c{i}" for i in range(20)]


def test_classes_are_numbered_in_sorted_order_of_their_names(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.csv"
    tiny_corpus.to_csv(path, index=False)
    frame = load_corpus(path)
    codes = dict(zip(frame["class_name"], frame["label"].astype(int), strict=True))
    assert codes == {"crypto": 0, "medicine": 1, "space": 2}


def test_a_column_called_label_is_used_as_the_classes_when_none_is_named(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.parquet"
    tiny_corpus.to_parquet(path)
    frame = load_corpus(path)
    assert frame["class_name"].tolist() == tiny_corpus["label"].tolist()


def test_a_corpus_without_a_label_column_is_unlabelled(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.jsonl"
    tiny_corpus.drop(columns="label").to_json(path, orient="records", lines=True)
    frame = load_corpus(path)
    assert frame["label"].isna().all()
    assert frame["class_name"].isna().all()
    assert frame["text"].tolist() == tiny_corpus["text"].tolist()


def test_an_explicit_label_column_overrides_the_default(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.csv"
    topic = tiny_corpus.assign(topic=np.where(tiny_corpus["label"] == "space", "astro", "other"))
    topic.to_csv(path, index=False)
    frame = load_corpus(path, label_column="topic")
    assert frame["class_name"].value_counts().to_dict() == {"other": 8, "astro": 4}
    assert frame.loc[frame["class_name"] == "astro", "label"].unique().tolist() == [0]


def test_without_an_id_column_the_row_number_is_the_id(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.csv"
    tiny_corpus.to_csv(path, index=False)
    assert load_corpus(path)["doc_id"].tolist() == [str(i) for i in range(12)]


def test_a_named_text_column_is_read(tmp_path):
    path = tmp_path / "corpus.csv"
    pd.DataFrame({"body": ["one text", "another text"]}).to_csv(path, index=False)
    assert load_corpus(path, text_column="body")["text"].tolist() == ["one text", "another text"]


def test_repeated_ids_are_an_input_error_naming_the_id(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.csv"
    tiny_corpus.assign(id=["d0", "d1", "d1", *tiny_corpus["id"][3:]]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"repeats the id 'd1'"):
        load_corpus(path, id_column="id")


def test_ingest_reads_the_corpus_the_settings_name(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.csv"
    tiny_corpus.to_csv(path, index=False)
    frame = ingest(SourceSettings(corpus=path, id_column="id"))
    assert frame["doc_id"].tolist() == tiny_corpus["id"].tolist()


UNICODE_TEXTS = ["café crème", "naïve — “quoted”", "漢字 and emoji 🚀", "tab\tand\nnewline"]


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_non_ascii_utf8_texts_round_trip_unchanged(tmp_path, suffix):
    path = tmp_path / f"corpus.{suffix}"
    WRITERS[suffix](pd.DataFrame({"text": UNICODE_TEXTS}), path)
    frame = load_corpus(path)
    assert frame["text"].tolist() == UNICODE_TEXTS
    assert not frame["text"].str.contains("\ufffd").any()


def _labels_corpus(tmp_path: Path, suffix: str, labels: list) -> Path:
    path = tmp_path / f"labels{suffix}"
    frame = pd.DataFrame({"text": [f"post {i}" for i in range(len(labels))], "label": labels})
    if suffix == ".jsonl":
        path.write_text(
            "".join(frame.iloc[[i]].to_json(orient="records", lines=True) for i in range(len(frame)))
        )
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def test_a_jsonl_label_column_mixing_numbers_and_text_is_refused_naming_the_option(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n')
    with pytest.raises(
        InputError, match=r"mixes number and text \(1 in row 1, '1' in row 2\).*--labels-as-text"
    ):
        load_corpus(path)
    merged = load_corpus(path, labels_as_text=True)
    assert merged["class_name"].tolist() == ["1", "1"] and merged["label"].nunique() == 1


def test_numbers_and_booleans_read_the_same_in_jsonl_and_parquet_and_csv_keeps_the_text(tmp_path):
    numbers = [1, 1.0, 2.5, None]
    for suffix in (".jsonl", ".parquet"):
        frame = load_corpus(_labels_corpus(tmp_path, suffix, numbers))
        assert frame["class_name"].tolist()[:3] == ["1", "1", "2.5"] and frame["class_name"].isna().iloc[3]
        booleans = load_corpus(_labels_corpus(tmp_path, suffix, [True, False]))
        assert booleans["class_name"].tolist() == ["true", "false"]
    path = tmp_path / "labels.csv"
    path.write_text("text,label\na,1\nb,1.0\nc,true\nd,'1'\n")
    assert load_corpus(path)["class_name"].tolist() == ["1", "1.0", "true", "'1'"]  # a CSV cell is its text


def test_a_label_that_is_a_list_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "lists.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n')
    with pytest.raises(InputError, match=r"label column 'label' .* holds a list in row 2"):
        load_corpus(path)
