"""The comparison flow: one sample, one run folder per variant, one table and one figure of maps."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from flows.compare import compare
from tasks.compare import default_embedders, variants
from tasks.config import (
    ClusterSettings,
    EmbeddingSettings,
    MapSettings,
    OutputSettings,
    RunSettings,
    SamplingSettings,
    SourceSettings,
)


def test_variants_cross_embedders_and_clusterers_and_name_each_run():
    base = RunSettings(output=OutputSettings(run_name="cmp"), seed=5)
    runs = variants(base, ["local", "tfidf"], ["kmeans", "hdbscan"])
    assert list(runs) == ["cmp-local-kmeans", "cmp-local-hdbscan", "cmp-tfidf-kmeans", "cmp-tfidf-hdbscan"]
    assert runs["cmp-tfidf-hdbscan"].embedding.embedder == "tfidf"
    assert runs["cmp-tfidf-hdbscan"].clustering.clusterer == "hdbscan"
    assert runs["cmp-tfidf-hdbscan"].output.run_name == "cmp-tfidf-hdbscan"
    assert {settings.seed for settings in runs.values()} == {5}


def test_an_unknown_clusterer_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="kmeans"):
        variants(RunSettings(output=OutputSettings(run_name="cmp")), ["tfidf"], ["spectralish"])


def test_gemini_joins_the_default_variants_only_when_a_key_is_set():
    assert default_embedders({}) == ["local", "tfidf"]
    assert default_embedders({"GEMINI_API_KEY": "k"}) == ["local", "tfidf", "gemini"]


@pytest.mark.slow
def test_compare_runs_every_variant_on_one_sample_and_publishes_the_table(
    archive, data_home, tmp_path, compiled_umap
):
    manifest = compare(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=25),
        mapping=MapSettings(reducer="pca"),
        clustering=ClusterSettings(min_cluster_size=5),
        output=OutputSettings(output_dir=tmp_path, run_name="cmp"),
        embedders=["tfidf", "local"],
        clusterers=["kmeans", "hdbscan"],
    )
    names = ["cmp-tfidf-kmeans", "cmp-tfidf-hdbscan", "cmp-local-kmeans", "cmp-local-hdbscan"]
    table = pq.read_table(tmp_path / "cmp" / "comparison.parquet").to_pandas()
    assert table["run"].tolist() == names
    assert [row["run"] for row in manifest["comparison"]] == names
    assert (tmp_path / "cmp" / "comparison_maps.png").read_bytes().startswith(b"\x89PNG")
    samples = [pq.read_table(tmp_path / name / "sample.parquet") for name in names]
    assert all(sample.equals(samples[0]) for sample in samples) and samples[0].num_rows == 100
    for name in names:
        variant = json.loads((tmp_path / name / "manifest.json").read_text())
        assert variant["counts"]["sampled"] == 100
    kmeans = table.set_index("run").loc["cmp-local-kmeans"]
    assert kmeans["noise_share"] == 0 and kmeans["clusters"] == 4 and kmeans["hungarian_accuracy"] > 0.6
    assert (table["embedded"] + table["from_cache"] >= 100).all()
    # HDBSCAN on the raw vectors leaves posts unassigned: the noise convention holds end to end.
    hdbscan = table.set_index("run").loc["cmp-tfidf-hdbscan"]
    assert 0 < hdbscan["noise_share"] < 1
    assert hdbscan["accuracy_with_noise"] == pytest.approx(
        hdbscan["hungarian_accuracy"] * (1 - hdbscan["noise_share"]), abs=1e-6
    )
    root = tmp_path / "cmp-tfidf-hdbscan"
    assigned = pq.read_table(root / "assignments.parquet").column("cluster").to_pylist()
    named = pq.read_table(root / "clusters.parquet").to_pandas().set_index("cluster")
    assert assigned.count(-1) == named.loc[-1, "size"] and named.loc[-1, "name"] == "unassigned"
    assert "unassigned" in (root / "map.html").read_text()


@pytest.mark.slow
def test_the_comparisons_plan_without_prefect_is_the_flows_plan(archive, data_home, tmp_path):
    # `python -m flows.compare --plan` answers with the flow's body as a plain function.
    kwargs = dict(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=10),
        embedding=EmbeddingSettings(plan=True),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path, run_name="cmp"),
        embedders=["tfidf", "local"],
        clusterers=["kmeans", "hdbscan"],
    )
    planned, through_flow = compare.fn(**kwargs), compare(**kwargs)
    assert planned == through_flow and planned["planned_only"]
    assert [(plan["embedder"], plan["to_embed"]) for plan in planned["plans"]] == [
        ("tfidf", 40),
        ("local", 40),
    ]
    assert not [path.name for path in tmp_path.iterdir() if not path.name.startswith(".")]  # no run folder
