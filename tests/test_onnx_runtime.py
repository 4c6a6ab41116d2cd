"""The ONNX Runtime path of the local embedder: export from the verified weights, checks, cache identity.

The real bundled MiniLM is exported into a temporary models folder (a few seconds).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.config import EmbeddingSettings
from tasks.embed._export import RECORD, export_folder
from tasks.embed._local import LocalEmbedder, describe_local, load_model
from tasks.embed._onnx import ONNX_FILE
from tasks.embed.models import MINILM
from tasks.errors import InputError
from tasks.layout import file_sha256
from tests.texts import TEXTS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    vectors = LocalEmbedder(runtime="onnx", models_dir=root).embed(TEXTS)
    return root, vectors


def test_onnx_gives_pytorchs_vectors_from_an_export_recorded_beside_the_model(exported):
    root, vectors = exported
    reference = LocalEmbedder(runtime="torch").embed(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.sum(vectors * reference, axis=1).min() > 0.9999
    folder = export_folder(MINILM, "onnx-fp32", root)
    record = json.loads((folder / RECORD).read_text())
    assert record["sha256"] == {ONNX_FILE: file_sha256(folder / ONNX_FILE)}
    assert record["source_sha256"] == dict(MINILM.files)
    assert record["probe_mean_cosine"] >= 0.999


def test_minilms_export_is_fused_by_onnx_runtimes_optimizer_and_its_graph_is_in_the_cache_identity(exported):
    import onnx

    root, _ = exported
    folder = export_folder(MINILM, "onnx-fp32", root)
    record = json.loads((folder / RECORD).read_text())
    layers = 6
    assert record["graph"] == "fused (bert)"
    assert record["fused_operators"]["Attention"] == layers
    assert record["fused_operators"]["SkipLayerNormalization"] == 2 * layers
    operators = {node.op_type for node in onnx.load(str(folder / ONNX_FILE)).graph.node}
    assert {"Attention", "BiasGelu", "SkipLayerNormalization"} <= operators and "Softmax" not in operators
    assert describe_local(runtime="onnx")["onnx_graph"] == "fused (bert)"
    # An export made before fusion (no graph in its record) is made again, not used.
    record.pop("graph")
    (folder / RECORD).write_text(json.dumps(record))
    load_model.cache_clear()
    LocalEmbedder(runtime="onnx", models_dir=root).embed(TEXTS[:1])
    assert json.loads((folder / RECORD).read_text())["graph"] == "fused (bert)"


def test_a_damaged_export_is_made_again(exported):
    root, vectors = exported
    folder = export_folder(MINILM, "onnx-fp32", root)
    with (folder / ONNX_FILE).open("ab") as onnx:
        onnx.write(b"rot")
    load_model.cache_clear()
    again = LocalEmbedder(runtime="onnx", models_dir=root).embed(TEXTS)
    np.testing.assert_allclose(again, vectors, atol=1e-6)
    record = json.loads((folder / RECORD).read_text())
    assert record["sha256"] == {ONNX_FILE: file_sha256(folder / ONNX_FILE)}


def test_onnx_int8_is_close_to_fp32_and_keeps_the_topics(tmp_path):
    import onnx

    vectors = LocalEmbedder(runtime="onnx", precision="int8", models_dir=tmp_path).embed(TEXTS)
    reference = LocalEmbedder(runtime="torch").embed(TEXTS)
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() > 0.97 and not np.allclose(vectors, reference, atol=1e-4)
    folder = export_folder(MINILM, "onnx-int8", tmp_path)
    assert json.loads((folder / RECORD).read_text())["fused_operators"]["Attention"] == 6
    operators = {node.op_type for node in onnx.load(str(folder / ONNX_FILE)).graph.node}
    assert "QAttention" in operators and "Attention" not in operators  # fused, then quantised
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    space_a, space_b, medicine, _ = vectors
    assert space_a @ space_b > space_a @ medicine + 0.1


def test_the_runtime_and_its_version_and_the_token_budget_are_in_the_cache_identity():
    import onnxruntime

    assert describe_local(runtime="onnx")["runtime"] == f"onnxruntime {onnxruntime.__version__}"
    assert "runtime" not in describe_local(runtime="torch")  # PyTorch's vectors keep their cached copies
    assert describe_local(max_tokens=128)["max_seq_length"] == 128
    keys = {
        repr(sorted(describe_local(precision=p, runtime=r, max_tokens=t).items()))
        for p in ("fp32", "int8")
        for r in ("openvino", "torch", "onnx")
        for t in (None, 128)
    }
    assert len(keys) == 12


def test_the_settings_carry_runtime_and_token_budget_to_the_embedder():
    embedder = LocalEmbedder.from_settings(EmbeddingSettings(runtime="onnx", max_tokens=128), seed=0)
    assert (embedder.runtime, embedder.max_tokens) == ("onnx", 128)


def test_the_token_budget_cuts_long_texts():
    short = LocalEmbedder(max_tokens=16).embed(TEXTS)
    full = LocalEmbedder().embed(TEXTS)
    assert np.allclose(short[0], full[0], atol=1e-5)  # under 16 tokens: unchanged
    assert float(short[3] @ full[3]) < 0.9999


def test_an_unknown_runtime_is_refused_before_loading():
    with pytest.raises(InputError, match=r"The 'runtime' parameter must be one of .*Got 'tvm' instead"):
        load_model("all-MiniLM-L6-v2", "fp32", None, "tvm")


def test_the_plan_reads_the_speed_measured_for_the_chosen_runtime_and_precision(tmp_path):
    from tasks.embed.plan import read_throughput, record_throughput

    record_throughput(tmp_path, LocalEmbedder(runtime="onnx", precision="int8"), 30.0)
    record_throughput(tmp_path, LocalEmbedder(), 10.0)
    assert read_throughput(tmp_path, LocalEmbedder(runtime="onnx", precision="int8")) == 30.0
    assert read_throughput(tmp_path, LocalEmbedder()) == 10.0
    assert read_throughput(tmp_path, LocalEmbedder(runtime="onnx")) is None
