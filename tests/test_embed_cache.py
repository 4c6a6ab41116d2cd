"""The embed stage with the cache, in whole runs: texts embedded once are never embedded again.

Embedder calls are counted by wrapping the real local embedder's ``embed`` (the
cache is what is tested; the embedder does its real work).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from unittest.mock import patch

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.newsgroups import newsgroups
from tasks.config import EmbeddingSettings, MapSettings, OutputSettings, SamplingSettings, SourceSettings
from tasks.embed._local import LocalEmbedder
from tasks.embed.cache import EmbeddingCache, text_keys


@pytest.fixture
def run_flow(archive, data_home):
    def run(output_dir, name, *, per_class, **embedding):
        return newsgroups(
            source=SourceSettings(archive=archive, data_home=data_home),
            sampling=SamplingSettings(per_class=per_class),
            embedding=EmbeddingSettings(**embedding),
            mapping=MapSettings(reducer="pca"),
            output=OutputSettings(output_dir=output_dir, run_name=name),
            seed=1,
        )

    return run


def counting_embedder():
    """Wrap LocalEmbedder.embed so every call (and its texts) is recorded."""
    return patch.object(LocalEmbedder, "embed", autospec=True, side_effect=LocalEmbedder.embed)


def embedded_texts(spy) -> list[str]:
    return [text for call in spy.call_args_list for text in call.args[1]]


def sample_texts(run_folder) -> list[str]:
    return pq.read_table(run_folder / "sample.parquet").column("text").to_pylist()


def test_a_second_identical_run_embeds_nothing_and_gives_identical_vectors(run_flow, tmp_path):
    first = run_flow(tmp_path, "first", per_class=8, batch_size=8)
    assert first["embedding"]["cache"] == {
        "dir": str(tmp_path / ".embedding-cache"),
        "hits": 0,
        "misses": 32,
        "embedded": 32,
    }
    with counting_embedder() as spy:
        second = run_flow(tmp_path, "second", per_class=8, batch_size=8)
    assert spy.call_count == 0
    assert second["embedding"]["cache"]["hits"] == 32
    assert second["embedding"]["cache"]["embedded"] == 0
    assert pq.read_table(tmp_path / "second" / "embeddings.parquet").equals(
        pq.read_table(tmp_path / "first" / "embeddings.parquet")
    )
    assert second["metrics"] == first["metrics"]


def test_no_cache_embeds_every_text_and_stores_nothing(run_flow, tmp_path):
    cache_dir = tmp_path / "elsewhere"
    with counting_embedder() as spy:
        manifest = run_flow(tmp_path, "uncached", per_class=4, cache=False, cache_dir=cache_dir)
    assert len(embedded_texts(spy)) == 16
    assert manifest["embedding"]["cache"] is None
    assert not cache_dir.exists()
    assert not (tmp_path / ".embedding-cache").exists()


def test_a_given_cache_dir_is_used_instead_of_the_default(run_flow, tmp_path):
    cache_dir = tmp_path / "shared-cache"
    manifest = run_flow(tmp_path / "runs", "custom", per_class=2, cache_dir=cache_dir)
    assert manifest["embedding"]["cache"]["dir"] == str(cache_dir)
    assert list(cache_dir.glob("*/part-*.parquet"))
    assert not (tmp_path / "runs" / ".embedding-cache").exists()


@pytest.mark.slow
def test_a_larger_sample_after_a_smaller_one_embeds_only_the_new_texts(run_flow, tmp_path):
    # Small samples prove the same as the tutorial's (larger samples contain smaller ones, per class).
    run_flow(tmp_path, "small", per_class=15)
    with counting_embedder() as spy:
        manifest = run_flow(tmp_path, "large", per_class=30)
    old, new = set(sample_texts(tmp_path / "small")), sample_texts(tmp_path / "large")
    expected = [text for text in dict.fromkeys(new) if text not in old]
    assert sorted(embedded_texts(spy)) == sorted(expected)
    assert manifest["embedding"]["cache"]["hits"] == sum(text in old for text in new)
    assert manifest["embedding"]["cache"]["hits"] > 0
    assert manifest["counts"]["sampled"] == 120
    assert manifest["embedding"]["cache"]["hits"] == 60 and len(expected) == 60


@pytest.mark.slow
def test_a_run_killed_while_embedding_loses_only_the_batches_in_flight(
    run_flow, archive, data_home, tmp_path, prefect_server
):
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": prefect_server,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [
        sys.executable, "-m", "flows.newsgroups", "--archive", str(archive), "--data-home", str(data_home),
        "--per-class", "24", "--batch-size", "8", "--reducer", "pca", "--seed", "1",
        "--output-dir", str(tmp_path), "--run-name", "killed",
    ]  # fmt: skip
    # 96 posts cut into 12 whole batches, so three stored parts hold 24 texts. Its own session, as a command
    # typed at a terminal: the kill reaches all it started.
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    try:
        while len(list(tmp_path.glob(".embedding-cache/*/part-*.parquet"))) < 3:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run stored no batches in time"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists()
    texts = sample_texts(tmp_path / "killed")
    store = EmbeddingCache.open(tmp_path / ".embedding-cache", LocalEmbedder().describe())
    stored = int(store.lookup(text_keys(texts))[0].sum())
    assert 24 <= stored < 96

    with counting_embedder() as spy:
        manifest = run_flow(tmp_path, "resumed", per_class=24, batch_size=8)
    assert len(embedded_texts(spy)) == 96 - stored
    assert manifest["embedding"]["cache"]["hits"] == stored
    assert sample_texts(tmp_path / "resumed") == texts


def test_a_text_repeated_in_one_run_is_embedded_once_and_gets_the_same_vector(tiny_corpus, tmp_path):
    from tasks.config import CleaningSettings
    from tasks.layout import read_embeddings

    corpus = tmp_path / "corpus.csv"
    pd.concat([tiny_corpus, tiny_corpus.iloc[:3].assign(id=["r0", "r1", "r2"])]).to_csv(corpus, index=False)
    with counting_embedder() as spy:
        manifest = newsgroups(
            source=SourceSettings(corpus=corpus, id_column="id"),
            cleaning=CleaningSettings(drop_duplicates=False),
            sampling=SamplingSettings(groups=[], per_class=0),
            mapping=MapSettings(reducer="pca"),
            output=OutputSettings(output_dir=tmp_path, run_name="repeats"),
        )
    assert len(embedded_texts(spy)) == 12
    assert manifest["embedding"]["cache"] == {
        "dir": str(tmp_path / ".embedding-cache"),
        "hits": 0,
        "misses": 15,
        "embedded": 12,
    }
    doc_ids, vectors = read_embeddings(tmp_path / "repeats" / "embeddings.parquet")
    row = {doc_id: index for index, doc_id in enumerate(doc_ids)}
    for original, repeat in (("d0", "r0"), ("d1", "r1"), ("d2", "r2")):
        assert (vectors[row[original]] == vectors[row[repeat]]).all()


def test_batches_are_cut_from_the_whole_run_sorted_by_length_and_vectors_come_back_in_sample_order(
    tiny_corpus, tmp_path
):
    from prefect import flow

    from tasks.embed.stage import embed_documents
    from tasks.layout import RunLayout

    # Lengths interleaved on purpose: without the run-wide sort each batch would mix short and long.
    texts = [text * (1 + 5 * (i % 2)) for i, text in enumerate(tiny_corpus["text"])]

    @flow
    def embed_only() -> tuple:
        return embed_documents(
            [f"d{i}" for i in range(len(texts))],
            texts,
            EmbeddingSettings(batch_size=3, cache=False),
            seed=0,
            layout=RunLayout(tmp_path),
        )

    with counting_embedder() as spy:
        vectors, _ = embed_only()
    batches = sorted((call.args[1] for call in spy.call_args_list), key=lambda b: -max(map(len, b)))
    assert [len(batch) for batch in batches] == [3, 3, 3, 3]
    for longer, shorter in zip(batches, batches[1:], strict=False):
        assert min(map(len, longer)) >= max(map(len, shorter))
    alone = LocalEmbedder().embed(texts)
    if LocalEmbedder().describe().get("dtype") == "bfloat16":
        # bfloat16 rounds a text differently with its batch's padding (measured cosine > .9999);
        # another post's vector is far below that.
        assert np.sum(vectors * alone, axis=1).min() > 0.9999
    else:
        assert abs(vectors - alone).max() < 1e-5
