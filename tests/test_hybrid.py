"""--tfidf-weight: the sample's TF-IDF vectors appended to a model's, on real posts and through the flow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from flows.newsgroups import newsgroups
from tasks.config import EmbeddingSettings, MapSettings, OutputSettings, SamplingSettings, SourceSettings
from tasks.embed.hybrid import append_tfidf
from tasks.layout import read_embeddings
from tasks.sample import sample_per_class, select_groups


@pytest.fixture(scope="module")
def sci_texts(train_posts):
    sample = sample_per_class(select_groups(train_posts, ["sci"]), 20, seed=0)
    return sample["text"].tolist()


def test_appended_block_is_the_weighted_unit_tfidf_and_the_model_part_is_untouched(sci_texts):
    model = np.random.default_rng(0).normal(size=(len(sci_texts), 8)).astype(np.float32)
    combined = append_tfidf(model, sci_texts, weight=0.5, dimensions=16, seed=1)
    assert combined.dtype == np.float32
    assert combined.shape == (len(sci_texts), 8 + 16)
    np.testing.assert_array_equal(combined[:, :8], model)
    np.testing.assert_allclose(np.linalg.norm(combined[:, 8:], axis=1), 0.5, atol=1e-5)


def test_the_same_seed_gives_the_same_features_and_weight_zero_changes_nothing(sci_texts):
    model = np.ones((len(sci_texts), 4), dtype=np.float32)
    first = append_tfidf(model, sci_texts, weight=1.0, dimensions=16, seed=7)
    np.testing.assert_array_equal(first, append_tfidf(model, sci_texts, weight=1.0, dimensions=16, seed=7))
    assert append_tfidf(model, sci_texts, weight=0.0) is model


def test_vectors_and_texts_must_pair_up(sci_texts):
    with pytest.raises(ValueError, match="vectors for"):
        append_tfidf(np.zeros((3, 4), dtype=np.float32), sci_texts, weight=0.5)


def test_tfidf_beside_the_tfidf_embedder_is_refused_with_what_to_do():
    with pytest.raises(ValidationError, match="choose --embedder local or gemini"):
        EmbeddingSettings(embedder="tfidf", tfidf_weight=0.5)
    assert EmbeddingSettings(embedder="tfidf").tfidf_weight == 0


def test_the_flow_maps_and_clusters_the_combined_vectors_and_keeps_the_model_vectors(
    archive, data_home, tmp_path
):
    manifest = newsgroups(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=12),
        embedding=EmbeddingSettings(tfidf_weight=0.5, tfidf_dimensions=32),
        mapping=MapSettings(perplexity=10),
        output=OutputSettings(output_dir=tmp_path, run_name="hybrid"),
    )
    assert manifest["features"] == {"tfidf_weight": 0.5, "dimensions": 384 + 32}
    assert json.loads((tmp_path / "hybrid" / "manifest.json").read_text())["features"]["dimensions"] == 416
    # The cache and embeddings.parquet hold what the model made; the TF-IDF part belongs to this sample.
    _, vectors = read_embeddings(tmp_path / "hybrid" / "embeddings.parquet")
    assert vectors.shape == (48, 384)
    assert "features" in manifest["timings_s"]
