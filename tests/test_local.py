"""The local embedder with a chosen model: settings, readiness, descriptions, and the real models.

Tests marked slow load the fetched models (EmbeddingGemma, mpnet) and skip, with the
fetch command, when a model is not in the models folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydantic
import pytest

from tasks.config import EmbeddingSettings
from tasks.embed._local import LocalEmbedder, describe_local, load_model
from tasks.embed.models import MODELS, installed_state, verify_folder
from tasks.errors import InputError
from tests.texts import MEDICINE, SPACE

ROOT = Path(__file__).resolve().parents[1]


def require(name: str) -> None:
    if installed_state(MODELS[name]) != "verified":
        pytest.skip(f"{name} is not fetched; run: python -m tasks.embed.models fetch {name}")


# --- settings and descriptions (no model loading) ----------------------------------------------


def test_the_settings_default_to_minilm_in_fp32():
    settings = EmbeddingSettings()
    assert (settings.local_model, settings.precision, settings.models_dir) == (
        "all-MiniLM-L6-v2",
        "fp32",
        None,
    )


@pytest.mark.parametrize(
    ("field", "value"), [("local_model", "bert-base"), ("precision", "int4"), ("precision", "bf16")]
)
def test_invalid_model_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(pydantic.ValidationError, match=field):
        EmbeddingSettings(**{field: value})


def test_every_model_and_precision_has_its_own_cache_identity():
    descriptions = [describe_local(name, precision) for name in MODELS for precision in ("fp32", "int8")]
    assert len({repr(sorted(d.items())) for d in descriptions}) == len(descriptions)


def test_minilm_fp32_on_pytorch_is_described_as_before_so_its_cached_vectors_stay_valid():
    from tasks.embed.models import cpu_has_native_bf16

    assert describe_local(runtime="torch") == {
        "embedder": "local",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "dimensions": 384,
        **({"dtype": "bfloat16"} if cpu_has_native_bf16() else {}),
    }


def test_embeddinggemma_is_described_with_its_prompt_length_and_dtype():
    description = describe_local("embeddinggemma-300m")
    assert description["model"] == "google/embeddinggemma-300m"
    assert description["dimensions"] == 768
    assert (description["prompt_name"], description["max_seq_length"]) == ("Clustering", 512)
    assert description["dtype"] in {"float32", "bfloat16"}
    assert describe_local("embeddinggemma-300m", "int8")["precision"] == "int8"


def test_an_unknown_precision_is_refused_before_loading():
    with pytest.raises(InputError, match=r"The 'precision' parameter must be one of .*Got 'fp8' instead"):
        load_model("all-MiniLM-L6-v2", "fp8")


def test_check_ready_for_a_model_not_fetched_names_the_fetch_command_without_importing_torch(tmp_path):
    code = (
        "import sys; from tasks.config import EmbeddingSettings; from tasks.embed import EMBEDDERS\n"
        "from tasks.errors import InputError\n"
        f"settings = EmbeddingSettings(local_model='embeddinggemma-300m', models_dir={str(tmp_path)!r})\n"
        "try:\n    EMBEDDERS.get('local').check_ready(settings)\nexcept InputError as error:\n    print(error)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "The local model embeddinggemma-300m is not fetched; "
        f"fetch it with: python -m tasks.embed.models --models-dir {tmp_path} fetch embeddinggemma-300m"
    )  # the hint names the --models-dir the user gave


# --- the real models --------------------------------------------------------------------------


def test_the_settings_build_the_chosen_model_and_precision():
    embedder = LocalEmbedder.from_settings(EmbeddingSettings(precision="int8"), seed=0)
    assert (embedder.spec.name, embedder.precision) == ("all-MiniLM-L6-v2", "int8")
    assert embedder.describe()["precision"] == "int8"


def test_int8_minilm_gives_vectors_close_to_fp32_and_keeps_the_topic_structure():
    texts = [*SPACE, MEDICINE]
    full = LocalEmbedder().embed(texts)
    quantised = LocalEmbedder(precision="int8").embed(texts)
    assert quantised.shape == (3, 384) and quantised.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(quantised, axis=1), 1.0, atol=1e-5)
    # Cosine to the fp32 vector: measured .937-.965 on these texts (torch 2.13, AVX2).
    assert np.all(np.sum(full * quantised, axis=1) > 0.9)
    assert not np.allclose(full, quantised, atol=1e-4)  # it really is another computation
    space_a, space_b, medicine = quantised
    assert space_a @ space_b > space_a @ medicine + 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["embeddinggemma-300m", "all-mpnet-base-v2"])
def test_a_fetched_model_verifies_loads_and_embeds(name):
    require(name)
    spec = MODELS[name]
    verify_folder(spec, Path(installed_folder(name)))
    vectors = LocalEmbedder(name).embed([*SPACE, MEDICINE])
    assert vectors.shape == (3, spec.dimensions)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    space_a, space_b, medicine = vectors
    assert space_a @ space_b > space_a @ medicine + 0.05


def installed_folder(name: str) -> Path:
    from tasks.embed.models import model_path

    return model_path(MODELS[name])


@pytest.mark.slow
def test_embeddinggemma_uses_the_clustering_prompt():
    require("embeddinggemma-300m")
    embedder = LocalEmbedder("embeddinggemma-300m")
    with_prompt = embedder.embed([SPACE[0]])
    without = embedder._model.encode([SPACE[0]], normalize_embeddings=True)
    assert embedder._model.max_seq_length == 512
    assert float(with_prompt[0] @ without[0]) < 0.999  # the prompt changes the vector


def test_bfloat16_vectors_are_unit_length_in_float32():
    # MiniLM run in bfloat16 stands for a bf16 model: normalised inside encode, its norms are off by ~1e-3.
    import torch

    embedder = LocalEmbedder()
    embedder._model = load_model().__class__(str(installed_folder("all-MiniLM-L6-v2")), device="cpu")
    embedder._model.to(torch.bfloat16)
    texts = [*SPACE, MEDICINE, "short", "x " * 300]
    inside = np.asarray(embedder._model.encode(texts, normalize_embeddings=True), dtype=np.float32)
    assert np.abs(np.linalg.norm(inside, axis=1) - 1).max() > 1e-4  # the rounding this test is about
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name != "all-MiniLM-L6-v2" else [])
        for name, spec in MODELS.items()
        if spec.dtype == "bfloat16"
    ],
)
def test_a_model_that_prefers_bfloat16_gives_its_float32_vectors_in_it(name):
    # Why the catalogue may run it in bfloat16 where the CPU is native, under the same --precision fp32.
    import torch
    from sentence_transformers import SentenceTransformer

    from tasks.embed._export import MIN_PROBE_COSINE, PROBE
    from tasks.embed._local import unit_rows

    require(name)
    spec = MODELS[name]
    model = SentenceTransformer(str(installed_folder(name)), device="cpu")
    model.max_seq_length = spec.max_seq_length or model.max_seq_length
    prompt = {"prompt_name": spec.prompt_name} if spec.prompt_name else {}
    full = unit_rows(model.encode(PROBE, **prompt))
    model.to(torch.bfloat16)
    half = unit_rows(model.encode(PROBE, convert_to_tensor=True, **prompt).float().numpy())
    cosines = np.sum(full * half, axis=1)
    assert cosines.mean() >= MIN_PROBE_COSINE["fp32"], cosines
    assert not np.array_equal(full, half)  # bfloat16 really ran


def test_a_token_budget_past_the_model_is_refused_before_it_loads():
    with pytest.raises(InputError, match=r"can read \(512 tokens\): pass --max-tokens 512 or less"):
        LocalEmbedder(max_tokens=1024).embed(SPACE)
