"""--plan: what a run will embed, estimated before anything is embedded; runs keep estimate beside actual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.newsgroups import newsgroups
from tasks.config import EmbeddingSettings, MapSettings, OutputSettings, SamplingSettings, SourceSettings
from tasks.embed import new_job
from tasks.embed.cache import EmbeddingCache, text_keys
from tasks.embed.plan import estimate_tokens, look_up, plan_embedding, read_throughput, record_throughput
from tests.test_cli import imported_modules

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["alpha " * 10, "beta " * 20, "alpha " * 10, "gamma " * 4, "delta"]


@pytest.fixture
def tfidf():
    embedder, _ = new_job(EmbeddingSettings(embedder="tfidf"), seed=0).embedder()
    return embedder


def test_the_plan_counts_cache_hits_repeats_and_what_is_left(tfidf, tmp_path):
    store = EmbeddingCache.open(tmp_path, {"embedder": "test", "model": "m", "dimensions": 2})
    store.add(text_keys([TEXTS[1]]), np.ones((1, 2), dtype=np.float32))
    plan = plan_embedding(TEXTS, tfidf, look_up(TEXTS, store), batch_size=2, throughput_dir=None)
    assert (plan.texts, plan.in_cache, plan.repeated, plan.to_embed) == (5, 1, 1, 3)
    assert plan.estimated_tokens == estimate_tokens([TEXTS[0], TEXTS[3], TEXTS[4]]) == 15 + 6 + 2
    assert plan.requests == 2
    assert plan.throughput_source == "typical figure" and plan.estimated_cost_usd is None
    assert plan.estimated_minutes == pytest.approx(3 / tfidf.typical_texts_per_second / 60, abs=0.01)


def test_a_measured_throughput_replaces_the_typical_figure(tfidf, tmp_path):
    assert read_throughput(tmp_path, tfidf) is None
    record_throughput(tmp_path, tfidf, 12.5)
    assert read_throughput(tmp_path, tfidf) == 12.5
    plan = plan_embedding(TEXTS, tfidf, look_up(TEXTS, None), batch_size=None, throughput_dir=tmp_path)
    assert plan.throughput_source == "measured here" and plan.texts_per_second == 12.5
    assert plan.estimated_minutes == pytest.approx(5 / 12.5 / 60, abs=0.01)


def test_a_typical_figure_follows_the_token_budget():
    from tasks.embed._local import LocalEmbedder

    # No model is loaded: the plan needs only the figure.
    full, preset = LocalEmbedder("embeddinggemma-300m"), LocalEmbedder("embeddinggemma-300m", max_tokens=256)
    assert preset.typical_texts_per_second > 2 * full.typical_texts_per_second
    # A budget without a figure of its own plans at the model's.
    assert LocalEmbedder(max_tokens=128).typical_texts_per_second == LocalEmbedder().typical_texts_per_second


def test_an_unwritable_throughput_folder_is_skipped(tfidf, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    record_throughput(blocker / "sub", tfidf, 3.0)  # no error: the estimate is a nicety
    assert read_throughput(blocker / "sub", tfidf) is None


def flow_kwargs(archive, data_home, tmp_path, run_name="planned", **embedding):
    return dict(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=10),
        embedding=EmbeddingSettings(batch_size=16, **embedding),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path, run_name=run_name),
    )


@pytest.mark.slow
def test_plan_alone_embeds_nothing_and_leaves_no_run_folder(archive, data_home, tmp_path):
    manifest = newsgroups(**flow_kwargs(archive, data_home, tmp_path, plan=True))
    assert manifest["planned_only"] and manifest["plan"]["to_embed"] == 40
    assert manifest["plan"]["requests"] == 3
    assert not (tmp_path / "planned").exists()
    cache = EmbeddingCache.open(
        tmp_path / ".embedding-cache", new_job(EmbeddingSettings(), seed=0).embedder()[0].describe()
    )
    assert not list(cache.folder.glob("part-*"))


@pytest.mark.slow
def test_the_plan_without_prefect_is_the_flows_plan(archive, data_home, tmp_path):
    # The command line answers --plan with the flow's body as a plain function (its tasks as functions).
    planned = newsgroups.fn(**flow_kwargs(archive, data_home, tmp_path, plan=True))
    flow_manifest = newsgroups(**flow_kwargs(archive, data_home, tmp_path, plan=True))
    assert planned["planned_only"] and flow_manifest["planned_only"]
    assert planned["plan"] == flow_manifest["plan"]
    assert planned["plan"]["texts"] == 40
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]  # no run folder


@pytest.mark.slow
def test_a_real_run_records_the_estimate_beside_what_happened_and_a_rerun_plans_nothing(
    archive, data_home, tmp_path
):
    manifest = newsgroups(**flow_kwargs(archive, data_home, tmp_path))
    assert manifest["plan"]["to_embed"] == manifest["embedding"]["cache"]["embedded"] == 40
    assert manifest["embedding"]["texts_per_second"] > 0
    again = newsgroups(**flow_kwargs(archive, data_home, tmp_path, run_name="again", plan=True))
    assert (again["plan"]["in_cache"], again["plan"]["to_embed"], again["plan"]["estimated_tokens"]) == (
        40,
        0,
        0,
    )


@pytest.mark.slow
def test_the_cli_prints_the_plan_and_exits_0(archive, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "flows.newsgroups",
            "--plan",
            # A preset's settings are printed before the plan; the user's own setting wins over the preset's.
            "--preset",
            "best",
            "--local-model",
            "all-MiniLM-L6-v2",
            "--archive",
            str(archive),
            "--per-class",
            "5",
            "--reducer",
            "pca",
            "--output-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plan: 20 texts, 0 in the cache, 0 repeated, 20 to embed" in result.stdout
    assert "texts/s (typical figure)" in result.stdout  # nothing measured in this folder yet
    assert "Nothing was embedded (--plan)" in result.stdout
    assert "preset best: embedding.embedder=local, embedding.local_model=all-MiniLM-L6-v2" in result.stderr
    assert "clustering.clusterer=gmm" in result.stderr
    assert "temporary server" not in result.stdout + result.stderr  # answered without Prefect's server
    # Nor did it import the stages after the plan (seconds of start-up; scikit-learn reads the archive).
    imported = imported_modules(result.stderr)
    assert {"prefect", "tasks"} <= imported
    assert imported.isdisjoint({"matplotlib", "seaborn", "plotly", "openTSNE", "torch"})
