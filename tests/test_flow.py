"""The whole flow under the Prefect test harness, and its output contract, field by field."""

from __future__ import annotations

import html
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.newsgroups import newsgroups
from tasks.config import (
    EmbeddingSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
)
from tasks.layout import read_embeddings

PER_CLASS = 12
SCI = ["sci.crypt", "sci.electronics", "sci.med", "sci.space"]


@pytest.fixture(scope="module")
def finished_run(archive, data_home, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("runs")
    manifest = newsgroups(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=PER_CLASS),
        mapping=MapSettings(perplexity=10),
        output=OutputSettings(output_dir=output_dir, run_name="contract"),
        seed=3,
    )
    return output_dir / "contract", manifest


def test_run_folder_holds_every_contract_file(finished_run):
    root, _ = finished_run
    names = {p.name for p in root.iterdir()}
    expected = {
        "sample.parquet",
        "embeddings.parquet",
        "map.parquet",
        "assignments.parquet",
        "clusters.parquet",
        "map.html",
        "evaluation.parquet",
        "manifest.json",
        "map_by_class.png",
        "map_by_cluster.png",
        "confusion_matrix.png",
    }
    assert expected <= names
    assert not [n for n in names if n.startswith(".tmp-")]


def test_sample_parquet_has_the_contract_schema_and_the_sci_classes(finished_run):
    root, _ = finished_run
    table = pq.read_table(root / "sample.parquet")
    assert table.schema.names == ["doc_id", "text", "label", "class_name"]
    assert table.schema.field("doc_id").type == pa.string()
    frame = table.to_pandas()
    assert frame["class_name"].value_counts().to_dict() == dict.fromkeys(SCI, PER_CLASS)
    assert frame["doc_id"].is_unique
    assert frame["doc_id"].str.match(r"^train/sci\.[a-z]+/\d+$").all()
    assert not frame["text"].str.contains("From: ").any()


def test_embeddings_are_float32_fixed_size_lists_aligned_with_the_sample(finished_run):
    root, _ = finished_run
    schema = pq.read_schema(root / "embeddings.parquet")
    assert schema.field("embedding").type == pa.list_(pa.float32(), 384)
    doc_ids, vectors = read_embeddings(root / "embeddings.parquet")
    sample_ids = pq.read_table(root / "sample.parquet").column("doc_id").to_pylist()
    assert doc_ids == sample_ids
    assert vectors.shape == (4 * PER_CLASS, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_map_and_clusters_cover_every_document(finished_run):
    root, _ = finished_run
    sample_ids = pq.read_table(root / "sample.parquet").column("doc_id").to_pylist()
    tsne = pq.read_table(root / "map.parquet")
    assert tsne.schema.names == ["doc_id", "x", "y"]
    assert tsne.column("doc_id").to_pylist() == sample_ids
    assert np.isfinite(tsne.column("x").to_numpy()).all()
    clusters = pq.read_table(root / "assignments.parquet")
    assert clusters.schema.names == ["doc_id", "cluster"]
    assert set(clusters.column("cluster").to_pylist()) == {0, 1, 2, 3}


def test_clusters_are_named_by_their_terms_and_matched_to_a_class(finished_run):
    root, manifest = finished_run
    table = pq.read_table(root / "clusters.parquet").to_pandas()
    assert table["cluster"].tolist() == [0, 1, 2, 3] and table["size"].sum() == 4 * PER_CLASS
    assert set(table["matched_class"]) == set(SCI)
    assert all(
        len(terms) >= 4 and name == ", ".join(terms[:4])
        for terms, name in zip(table["terms"], table["name"], strict=True)
    )


def test_the_interactive_map_is_one_offline_file_with_every_post(finished_run):
    root, manifest = finished_run
    page = (root / "map.html").read_text()
    assert "<script src=" not in page.replace('<script src="data:', "")
    sample = pq.read_table(root / "sample.parquet").to_pandas()
    subject = sample["text"].iloc[0].strip().split("\n")[0].strip()
    assert html.escape(subject)[:40] in page or subject[:40] in page


def test_evaluation_table_has_one_row_per_class(finished_run):
    root, manifest = finished_run
    table = pq.read_table(root / "evaluation.parquet").to_pandas()
    assert table["class_name"].tolist() == SCI
    assert (table["n_docs"] == PER_CLASS).all()
    assert table["accuracy"].between(0, 1).all()
    assert manifest["metrics"]["per_class_accuracy"] == pytest.approx(
        dict(zip(table["class_name"], table["accuracy"], strict=True)), abs=1e-6
    )


def test_manifest_records_parameters_counts_timings_versions_and_metrics(finished_run):
    root, returned = finished_run
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(returned, default=str))
    assert manifest["parameters"]["sampling"]["per_class"] == PER_CLASS
    assert manifest["parameters"]["seed"] == 3
    assert manifest["counts"]["ingested"] == 11314
    assert manifest["counts"]["sampled"] == 4 * PER_CLASS
    assert set(manifest["timings_s"]) >= {
        "ingest",
        "clean",
        "sample",
        "embed",
        "map",
        "cluster",
        "evaluate",
        "publish",
    }
    assert manifest["versions"]["prefect"].startswith("3.")
    metrics = manifest["metrics"]
    assert set(metrics["per_class_accuracy"]) == set(SCI)
    for name in ("hungarian_accuracy", "ari", "nmi"):
        assert -1 <= metrics[name] <= 1
    # Twelve posts per class are few, but the local model still separates the sci groups.
    assert metrics["hungarian_accuracy"] > 0.6
    assert manifest["embedding"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_same_seed_gives_the_same_results(finished_run, archive, data_home, tmp_path):
    _, first = finished_run
    again = newsgroups(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=PER_CLASS),
        mapping=MapSettings(perplexity=10),
        output=OutputSettings(output_dir=tmp_path, run_name="again"),
        seed=3,
    )
    assert again["metrics"] == first["metrics"]
    root = tmp_path / "again"
    first_root = finished_run[0]
    assert pq.read_table(root / "map.parquet").equals(pq.read_table(first_root / "map.parquet"))


def test_unlabelled_corpus_runs_without_label_based_evaluation(tiny_corpus, tmp_path):
    path = tmp_path / "corpus.jsonl"
    tiny_corpus.drop(columns="label").to_json(path, orient="records", lines=True)
    manifest = newsgroups(
        source=SourceSettings(corpus=path),
        sampling=SamplingSettings(per_class=0),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(perplexity=3),
        clustering={"n_clusters": 3},
        output=OutputSettings(output_dir=tmp_path, run_name="unlabelled"),
    )
    root = tmp_path / "unlabelled"
    assert "hungarian_accuracy" not in manifest["metrics"]
    assert manifest["metrics"]["silhouette"] is not None
    assert (root / "map_by_cluster.png").exists()
    assert not (root / "evaluation.parquet").exists()
    assert (root / "manifest.json").exists()
