"""Layout: atomic writes, the embeddings file, run folders and when a run counts as finished."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.errors import InputError
from tasks.layout import (
    ASSIGNMENTS_SCHEMA,
    TMP_PREFIX,
    RunLayout,
    atomic_path,
    create_run,
    default_run_name,
    read_embeddings,
    write_embeddings,
    write_json,
    write_table,
)


class BodyFailed(Exception):
    pass


def test_atomic_path_renames_the_finished_file_into_place(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(f"{TMP_PREFIX}out.txt.")
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_no_temp_file_and_no_target_when_the_body_raises(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(BodyFailed, match="half way"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise BodyFailed("half way")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_previous_file_when_the_body_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(BodyFailed, match="no"), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise BodyFailed("no")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_embeddings_round_trip_through_several_write_batches(tmp_path):
    path = tmp_path / "embeddings.parquet"
    vectors = np.arange(15, dtype=np.float64).reshape(5, 3) / 7
    write_embeddings(["a", "b", "c", "d", "e"], vectors, path, batch_rows=2)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert pq.read_schema(path).field("embedding").type == pa.list_(pa.float32(), 3)
    doc_ids, read = read_embeddings(path)
    assert doc_ids == ["a", "b", "c", "d", "e"]
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, vectors.astype(np.float32))


def test_embeddings_of_one_batch_round_trip(tmp_path):
    path = tmp_path / "embeddings.parquet"
    vectors = np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32)
    write_embeddings(["w", "x", "y", "z"], vectors, path)
    doc_ids, read = read_embeddings(path)
    assert doc_ids == ["w", "x", "y", "z"]
    np.testing.assert_array_equal(read, vectors)


def test_write_embeddings_refuses_ids_and_vectors_of_different_lengths(tmp_path):
    with pytest.raises(ValueError, match=r"2 doc_ids but 3 vectors"):
        write_embeddings(["a", "b"], np.zeros((3, 2)), tmp_path / "e.parquet")
    assert list(tmp_path.iterdir()) == []


def test_write_table_writes_the_schema_columns_in_schema_order(tmp_path):
    path = write_table(
        pd.DataFrame({"cluster": [1, 0], "doc_id": ["a", "b"], "extra": [9, 9]}),
        tmp_path / "assignments.parquet",
        ASSIGNMENTS_SCHEMA,
    )
    table = pq.read_table(path)
    assert table.schema == ASSIGNMENTS_SCHEMA
    assert table.to_pydict() == {"doc_id": ["a", "b"], "cluster": [1, 0]}


def test_write_json_writes_indented_json(tmp_path):
    path = write_json({"b": 1, "a": [1, 2]}, tmp_path / "m.json")
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'


def test_create_run_makes_the_folder_and_its_parents(tmp_path):
    layout = create_run(tmp_path / "runs" / "nested", "first")
    assert layout.root == tmp_path / "runs" / "nested" / "first"
    assert layout.root.is_dir()


def test_create_run_refuses_an_existing_folder(tmp_path):
    create_run(tmp_path, "taken")
    with pytest.raises(InputError, match=r"The run folder .*taken is in use by a run that is still going"):
        create_run(tmp_path, "taken")


def test_a_run_is_finished_once_its_manifest_exists(tmp_path):
    layout = create_run(tmp_path, "run")
    layout.sample.write_bytes(b"")
    assert not layout.is_finished
    write_json({}, layout.manifest)
    assert layout.is_finished


def test_the_layout_names_every_file_of_the_contract(tmp_path):
    layout = RunLayout(tmp_path)
    names = [
        layout.sample,
        layout.embeddings,
        layout.map,
        layout.assignments,
        layout.clusters,
        layout.map_html,
        layout.evaluation,
        layout.confusion,
        layout.manifest,
        layout.plot("map_by_class"),
    ]
    assert [p.name for p in names] == [
        "sample.parquet",
        "embeddings.parquet",
        "map.parquet",
        "assignments.parquet",
        "clusters.parquet",
        "map.html",
        "evaluation.parquet",
        "confusion.parquet",
        "manifest.json",
        "map_by_class.png",
    ]
    assert {p.parent for p in names} == {tmp_path}


def test_default_run_names_sort_by_time_and_name_the_embedder():
    name = default_run_name("local")
    assert re.fullmatch(r"\d{8}-\d{6}-local-[0-9a-f]{4}", name)
