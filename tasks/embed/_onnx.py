"""ONNX Runtime for local models: exported once from the verified weights, checked, run in place of PyTorch.

Imported only when ``--runtime onnx`` is used (it imports torch and onnxruntime).

sentence-transformers' own ONNX backend needs ``optimum``, whose releases pin
transformers 4.x (installing it would downgrade the project's transformers 5),
so the transformer is exported here with ``torch.onnx.export`` from the
checksum-verified weights, with no hub access. For an architecture ONNX Runtime's
transformer optimizer knows (``ModelSpec.onnx_fusion``: MiniLM's BERT), the traced
graph is then fused by it (attention, skip layer-norm, bias GELU; quantised
attention in int8). The export is stored beside the
model (``<models dir>/<model>/onnx-<precision>/``) with a record of its own
sha256, the source weights' sha256, its graph and the versions that made it; it is
refused unless its vectors agree with PyTorch's on a probe set. At run time it
replaces only the transformer inside the loaded sentence-transformer, so
tokenisation, prompts, pooling, dense layers and batching stay the library's.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tasks.embed._export import (
    LastHiddenState,
    check_probe,
    export_folder,
    install,
    probe_cosine,
    staging_folder,
    traced_inputs,
    valid_record,
)
from tasks.embed.models import ModelSpec
from tasks.errors import MissingDependencyError

try:
    import onnxruntime
except ImportError as error:  # imported only when --runtime onnx is used
    raise MissingDependencyError(
        "The onnx runtime needs onnxruntime and onnx; install them with: pip install onnxruntime onnx"
    ) from error

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"


def use_onnx(model: Any, spec: ModelSpec, precision: str, root: Path | None = None) -> Any:
    """Run ``model``'s transformer (a loaded fp32 sentence-transformer) with ONNX Runtime; returns ``model``.

    The export is made on the first use and verified (sha256) on every later one.
    """
    folder = export_folder(spec, f"onnx-{precision}", root)
    if (
        valid_record(folder, source_sha256=dict(spec.files), precision=precision, graph=spec.onnx_graph)
        is None
    ):
        _export(model, spec, precision, folder)
    model[0].model = OnnxTransformer(folder / ONNX_FILE, model[0].model.config)
    return model


def _export(model: Any, spec: ModelSpec, precision: str, folder: Path) -> None:
    """Export, quantise (int8), check against PyTorch on the probe set, then install ``folder`` atomically."""
    log.info("embed: exporting %s to ONNX (%s) in %s, once", spec.name, precision, folder)
    with staging_folder(folder) as staging:
        transformer = model[0].model
        names, example = traced_inputs(model)
        fp32 = staging / ("fp32.onnx" if precision != "fp32" else ONNX_FILE)
        traced = staging / "traced.onnx" if spec.onnx_fusion else fp32
        # The tracer's warnings are about shapes the dynamic axes cover; the probe check below is the test.
        with (
            torch.no_grad(),
            warnings.catch_warnings(),
            _eager_attention(transformer) if spec.onnx_fusion else contextlib.nullcontext(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHiddenState(transformer, names).eval(),
                example,
                str(traced),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
        fused_operators: dict[str, int] = {}
        if spec.onnx_fusion:
            from onnxruntime.transformers.optimizer import optimize_model

            config = transformer.config
            fused = optimize_model(
                str(traced),
                model_type=spec.onnx_fusion,
                num_heads=config.num_attention_heads,
                hidden_size=config.hidden_size,
                opt_level=1,
            )
            fused.save_model_to_file(str(fp32))
            traced.unlink()
            fused_operators = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
        if precision == "int8":
            from onnx import TensorProto
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-channel weights: per-tensor int8 gave a mean cosine of .936 to fp32 on long posts (.993 here).
            # The fused kernels are outside ONNX's shape inference: their outputs are float32.
            quantize_dynamic(
                str(fp32),
                str(staging / ONNX_FILE),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            )
            fp32.unlink()
        cosine = probe_cosine(model, lambda: OnnxTransformer(staging / ONNX_FILE, transformer.config))
        check_probe(cosine, spec, precision, "ONNX")
        record = {
            "model": spec.model_id,
            "precision": precision,
            "source_sha256": dict(spec.files),
            "graph": spec.onnx_graph,
            "fused_operators": fused_operators,
            "probe_mean_cosine": round(cosine, 6),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": 17,
        }
        install(staging, folder, record, [ONNX_FILE])
    log.info("embed: ONNX export of %s verified (mean cosine %.5f to PyTorch)", spec.name, cosine)


@contextlib.contextmanager
def _eager_attention(transformer: Any) -> Iterator[None]:
    """Trace attention as plain matrix products: the optimizer fuses that pattern, not SDPA's masked one.

    Traced with PyTorch's scaled-dot-product attention, MiniLM's graph got no fused
    Attention node (0 of 6 layers): int8 ran 1.74x ``encode`` on long posts here, the fused graph 2.14x.
    """
    before = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")
    try:
        yield
    finally:
        transformer.set_attn_implementation(before)


class OnnxTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module.

    One ONNX Runtime session per process (the model holding it is loaded once
    per process), with as many threads as PyTorch would use.
    """

    def __init__(self, path: Path, config: Any) -> None:
        super().__init__()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [item.name for item in self.session.get_inputs()]
        self.config = config

    def forward(self, **features: Any) -> dict[str, Any]:
        feed = {name: features[name].numpy() for name in self.inputs}
        return {"last_hidden_state": torch.from_numpy(self.session.run(None, feed)[0])}
