"""Sample: choosing classes by substring or regex, and drawing N posts per class reproducibly."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.config import SamplingSettings
from tasks.sample import sample_corpus, sample_per_class, select_groups

CLASSES = ["sci.crypt", "sci.med", "rec.autos", "lang.c[draft"]


def corpus(sizes: dict[str | None, int]) -> pd.DataFrame:
    """``sizes[name]`` posts per class, doc ids ``<name>-<nn>``; None makes unlabelled posts."""
    rows = [(name, f"{name or 'doc'}-{i:02d}") for name, size in sizes.items() for i in range(size)]
    return pd.DataFrame(
        {
            "doc_id": pd.Series([doc_id for _, doc_id in rows], dtype="string"),
            "text": pd.Series([f"text of {doc_id}" for _, doc_id in rows], dtype="string"),
            "label": pd.Series([None] * len(rows), dtype="Int32"),
            "class_name": pd.Series([name for name, _ in rows], dtype="string"),
        }
    )


@pytest.fixture
def four_classes() -> pd.DataFrame:
    return corpus(dict.fromkeys(CLASSES, 30))


# --- select_groups ----------------------------------------------------------------------------


def classes_of(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["class_name"].unique())


def test_a_pattern_keeps_the_classes_whose_name_contains_it(four_classes):
    assert classes_of(select_groups(four_classes, ["sci"])) == ["sci.crypt", "sci.med"]


def test_a_pattern_keeps_the_classes_it_matches_as_a_regular_expression(four_classes):
    assert classes_of(select_groups(four_classes, ["med$", r"^rec\."])) == ["rec.autos", "sci.med"]


def test_a_pattern_that_is_not_a_valid_regex_still_matches_as_a_substring(four_classes):
    assert classes_of(select_groups(four_classes, ["c["])) == ["lang.c[draft"]


def test_several_patterns_keep_the_union_of_their_classes(four_classes):
    assert classes_of(select_groups(four_classes, ["crypt", "autos"])) == ["rec.autos", "sci.crypt"]


def test_no_patterns_keep_every_class(four_classes):
    assert select_groups(four_classes, []).equals(four_classes)


def test_selection_keeps_the_rows_in_their_input_order(four_classes):
    shuffled = four_classes.sample(frac=1, random_state=1)
    kept = select_groups(shuffled, ["sci"])
    assert kept["doc_id"].tolist() == [d for d in shuffled["doc_id"] if d.startswith("sci")]


def test_an_unlabelled_corpus_ignores_the_group_filter():
    frame = corpus({None: 5})
    assert select_groups(frame, ["sci"]).equals(frame)


# --- sample_per_class -------------------------------------------------------------------------


def test_each_class_gets_exactly_per_class_posts(four_classes):
    sample = sample_per_class(four_classes, 7, seed=0)
    assert sample["class_name"].value_counts().to_dict() == dict.fromkeys(CLASSES, 7)
    assert sample["doc_id"].is_unique


def test_the_drawn_posts_come_from_their_own_class(four_classes):
    sample = sample_per_class(four_classes, 7, seed=0)
    assert (sample["doc_id"].str.rsplit("-", n=1).str[0] == sample["class_name"]).all()


def test_per_class_zero_keeps_every_post(four_classes):
    sample = sample_per_class(four_classes, 0, seed=0)
    assert sorted(sample["doc_id"]) == sorted(four_classes["doc_id"])


def test_per_class_equal_to_the_class_size_keeps_the_whole_class():
    frame = corpus({"a": 4, "b": 6})
    sample = sample_per_class(frame, 4, seed=5)
    assert sample.loc[sample["class_name"] == "a", "doc_id"].tolist() == ["a-00", "a-01", "a-02", "a-03"]


def test_the_same_seed_draws_the_same_sample(four_classes):
    first = sample_per_class(four_classes, 5, seed=42)
    second = sample_per_class(four_classes, 5, seed=42)
    pd.testing.assert_frame_equal(first, second)


def test_a_different_seed_draws_a_different_sample(four_classes):
    first = sample_per_class(four_classes, 5, seed=42)
    second = sample_per_class(four_classes, 5, seed=43)
    assert set(first["doc_id"]) != set(second["doc_id"])


def test_the_sample_does_not_depend_on_the_input_row_order(four_classes):
    shuffled = four_classes.sample(frac=1, random_state=7).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        sample_per_class(four_classes, 5, seed=3), sample_per_class(shuffled, 5, seed=3)
    )


def test_the_sample_is_sorted_by_class_name_then_doc_id(four_classes):
    shuffled = four_classes.sample(frac=1, random_state=7)
    sample = sample_per_class(shuffled, 6, seed=0)
    keys = list(zip(sample["class_name"], sample["doc_id"], strict=True))
    assert keys == sorted(keys)
    assert sample.index.tolist() == list(range(len(sample)))


def test_an_unlabelled_corpus_is_sampled_as_one_class():
    frame = corpus({None: 20})
    sample = sample_per_class(frame, 8, seed=0)
    assert len(sample) == 8
    assert sample["class_name"].isna().all()
    assert sample["doc_id"].tolist() == sorted(sample["doc_id"])


def test_sample_corpus_selects_the_groups_then_samples_each(four_classes):
    sample = sample_corpus(four_classes, SamplingSettings(groups=["sci"], per_class=3), seed=0)
    assert sample["class_name"].value_counts().to_dict() == {"sci.crypt": 3, "sci.med": 3}


def test_a_larger_sample_contains_the_smaller_one(four_classes):
    small = sample_per_class(four_classes, 2, seed=5)
    large = sample_per_class(four_classes, 4, seed=5)
    assert set(small["doc_id"]) < set(large["doc_id"])


def test_a_class_draws_the_same_posts_whichever_other_classes_are_selected(four_classes):
    names = sorted(four_classes["class_name"].unique())
    alone = sample_per_class(four_classes[four_classes["class_name"] == names[0]], 2, seed=9)
    together = sample_per_class(four_classes, 2, seed=9)
    assert alone["doc_id"].tolist() == together[together["class_name"] == names[0]]["doc_id"].tolist()
