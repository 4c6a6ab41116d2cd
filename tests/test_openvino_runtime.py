"""The OpenVINO path of the local embedder (the default runtime): conversion, checks, int8, cache identity.

The real bundled MiniLM is converted into temporary models folders (about 5 s each).
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from tasks.config import EmbeddingSettings
from tasks.embed._export import MIN_PROBE_COSINE, RECORD, export_folder
from tasks.embed._local import LocalEmbedder, describe_local, load_model
from tasks.embed._openvino import BIN, XML, compile_settings
from tasks.embed.models import MINILM, cpu_dtype
from tasks.layout import file_sha256
from tests.texts import TEXTS


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return root, LocalEmbedder(models_dir=root).embed(TEXTS)


@pytest.fixture(scope="module")
def pytorch_float32():
    from sentence_transformers import SentenceTransformer

    from tasks.embed._local import unit_rows
    from tasks.embed.models import model_path

    return unit_rows(SentenceTransformer(str(model_path(MINILM)), device="cpu").encode(TEXTS))


def test_openvino_is_the_default_and_gives_pytorchs_vectors_from_a_conversion_recorded_beside_the_model(
    converted, pytorch_float32
):
    root, vectors = converted
    assert LocalEmbedder().runtime == EmbeddingSettings().runtime == "openvino"
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.sum(vectors * pytorch_float32, axis=1).min() > 0.9995
    folder = export_folder(MINILM, "openvino-fp32", root)
    record = json.loads((folder / RECORD).read_text())
    assert record["sha256"] == {XML: file_sha256(folder / XML), BIN: file_sha256(folder / BIN)}
    assert record["source_sha256"] == dict(MINILM.files)
    assert record["probe_mean_cosine"] >= MIN_PROBE_COSINE["fp32"]
    assert sorted(path.name for path in folder.parent.iterdir()) == ["openvino-fp32"]  # nothing left over
    # Saved in float32 (OpenVINO's save_model would halve the weights to float16 by default).
    element_types = {layer.get("element_type") for layer in ElementTree.parse(folder / XML).iter("data")}
    assert "f16" not in element_types and "f32" in element_types


def test_it_runs_in_the_dtype_pytorch_would():
    hint = compile_settings(MINILM, "fp32")["INFERENCE_PRECISION_HINT"]
    assert hint == {"bfloat16": "bf16", "float32": "f32"}[cpu_dtype(MINILM)]
    assert describe_local().get("dtype") == describe_local(runtime="torch").get("dtype")


def test_a_damaged_conversion_is_made_again(converted):
    root, vectors = converted
    folder = export_folder(MINILM, "openvino-fp32", root)
    with (folder / BIN).open("r+b") as weights:
        weights.seek(4096)
        weights.write(b"rot")
    load_model.cache_clear()
    again = LocalEmbedder(models_dir=root).embed(TEXTS)
    np.testing.assert_array_equal(again, vectors)
    record = json.loads((folder / RECORD).read_text())
    assert record["sha256"][BIN] == file_sha256(folder / BIN)


def test_int8_has_int8_weights_and_keeps_the_vectors(tmp_path, pytorch_float32):
    vectors = LocalEmbedder(precision="int8", models_dir=tmp_path).embed(TEXTS)
    cosines = np.sum(vectors * pytorch_float32, axis=1)
    assert cosines.min() > 0.995 and not np.allclose(vectors, pytorch_float32, atol=1e-4)
    folder = export_folder(MINILM, "openvino-int8", tmp_path)
    element_types = [layer.get("element_type") for layer in ElementTree.parse(folder / XML).iter("data")]
    assert element_types.count("u8") >= 36  # every Linear layer's weights (6 layers x 6, with the pooler 39)
    record = json.loads((folder / RECORD).read_text())
    assert record["recipe"].endswith("INT8_ASYM") and "nncf" in record
    assert record["probe_settings"]["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 32
    space_a, space_b, medicine, _ = vectors
    assert space_a @ space_b > space_a @ medicine + 0.1


def test_the_runtime_and_its_version_are_in_the_cache_identity():
    import openvino

    assert describe_local()["runtime"] == f"openvino {openvino.__version__.split('-')[0]}"
    keys = {
        repr(sorted(describe_local(precision=p, runtime=r).items()))
        for p in ("fp32", "int8")
        for r in ("openvino", "torch")
    }
    assert len(keys) == 4


@pytest.mark.slow
def test_two_processes_converting_at_once_both_get_one_valid_conversion(tmp_path):
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tasks.embed._local import LocalEmbedder\n"
        "vectors = LocalEmbedder(models_dir=Path(sys.argv[1])).embed(['The rocket reached orbit.'])\n"
        "print(float(vectors[0] @ vectors[0]))\n"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [float(out.split()[-1]) for out in outputs] == pytest.approx([1.0, 1.0], abs=1e-5)
    folder = export_folder(MINILM, "openvino-fp32", tmp_path)
    assert sorted(path.name for path in folder.parent.iterdir()) == ["openvino-fp32"]
    record = json.loads((folder / RECORD).read_text())
    assert record["sha256"][BIN] == file_sha256(folder / BIN)
