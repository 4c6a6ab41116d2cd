"""OpenVINO for local models: converted once from the verified weights, checked, run in place of PyTorch.

Imported only when ``--runtime openvino`` (the default) is used.

sentence-transformers' own OpenVINO backend needs ``optimum-intel``, whose releases
pin transformers 4.x, so the transformer is captured here with ``torch.export`` from the
loaded, checksum-verified PyTorch module (no hub access), converted by OpenVINO's ``convert_model``
and saved in float32 (``save_model(..., compress_to_fp16=False)``) beside the model,
``<models dir>/<model>/openvino-<precision>/``, with the record of
:mod:`tasks.embed._export`. At run time it replaces only the transformer inside the
loaded sentence-transformer, so tokenisation, prompts, pooling, dense layers and
batching stay the library's.

How it runs (measured on 64 long posts, 2 cores of an AMD EPYC with AVX-512, VNNI
and bf16; ratios to ``SentenceTransformer.encode`` in float32, docs/models.md):

- fp32: in bfloat16 where the model prefers it and the CPU has it natively
  (:func:`tasks.embed.models.cpu_dtype`), as with PyTorch, in float32 otherwise
  (3.8x and 2.0x, cosine to PyTorch float32 above .9999);
- int8: NNCF's data-free int8 weight compression, with activations quantised per
  group of 32 at run time by OpenVINO's CPU plugin, so the products run on int8
  (VNNI where present): 3.3x, cosine .9994. No calibration set is involved, so
  the export is the same whatever corpus a run embeds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
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
from tasks.embed.models import ModelSpec, cpu_dtype
from tasks.errors import MissingDependencyError

try:
    import openvino
except ImportError as error:  # imported only when --runtime openvino is used
    raise MissingDependencyError(
        "The openvino runtime needs openvino and nncf; install them with: pip install openvino nncf "
        "(or choose --runtime torch)"
    ) from error

log = logging.getLogger(__name__)

XML, BIN = "model.xml", "model.bin"
# What makes each precision's export: part of its record, so an export made by another recipe is made again.
RECIPE = {
    "fp32": "torch.export, convert_model, float32",
    "int8": "torch.export, convert_model, nncf.compress_weights INT8_ASYM",
}
# Activations are quantised per group of this many values when the weights are int8 (OpenVINO's CPU
# plugin): without it the int8 weights are only unpacked to float32 (2.2x encode, not 3.3x).
DYNAMIC_QUANTIZATION_GROUP = 32


def use_openvino(model: Any, spec: ModelSpec, precision: str, root: Path | None = None) -> Any:
    """Run ``model``'s transformer (a loaded fp32 sentence-transformer) with OpenVINO; returns ``model``.

    The conversion is made on the first use and verified (sha256) on every later one.
    """
    folder = export_folder(spec, f"openvino-{precision}", root)
    if (
        valid_record(folder, source_sha256=dict(spec.files), precision=precision, recipe=RECIPE[precision])
        is None
    ):
        _export(model, spec, precision, folder)
    model[0].model = OpenVinoTransformer(
        folder / XML, model[0].model.config, compile_settings(spec, precision)
    )
    return model


def compile_settings(spec: ModelSpec, precision: str) -> dict[str, Any]:
    """OpenVINO CPU settings for ``spec`` at ``precision`` on this machine (see the module's docstring)."""
    settings: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",  # one request at a time, on every thread
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "INFERENCE_PRECISION_HINT": "bf16"
        if precision == "fp32" and cpu_dtype(spec) == "bfloat16"
        else "f32",
    }
    if precision == "int8":
        settings["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_QUANTIZATION_GROUP
    return settings


def _export(model: Any, spec: ModelSpec, precision: str, folder: Path) -> None:
    """Convert, compress (int8), check against PyTorch on the probe set, then install ``folder`` atomically."""
    log.info("embed: converting %s to OpenVINO (%s) in %s, once", spec.name, precision, folder)
    with staging_folder(folder) as staging:
        transformer = model[0].model
        names, example = traced_inputs(model)
        # Captured with torch.export, not convert_model's own TorchScript tracing, which fails on
        # EmbeddingGemma ("Couldn't get TorchScript module by tracing": unordered_map::at). Its warnings
        # are about shapes that stay dynamic; the probe check below is the test.
        batch = torch.export.Dim("batch")
        tokens = torch.export.Dim("tokens", max=transformer.config.max_position_embeddings)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(
                LastHiddenState(transformer, names).eval(),
                example,
                dynamic_shapes=(tuple({0: batch, 1: tokens} for _ in names),),
            )
            converted = openvino.convert_model(program)
        for port, name in zip(converted.inputs, names, strict=True):
            port.get_tensor().set_names({name})
        record = {"model": spec.model_id, "precision": precision, "source_sha256": dict(spec.files)}
        if precision == "int8":
            import nncf

            # Quiet: nncf prints a table and a progress bar to stdout; the log lines say what happens.
            nncf.set_log_level(logging.WARNING)
            with contextlib.redirect_stdout(io.StringIO()):
                converted = nncf.compress_weights(converted, mode=nncf.CompressWeightsMode.INT8_ASYM)
            record["nncf"] = version("nncf")
        openvino.save_model(converted, str(staging / XML), compress_to_fp16=False)
        settings = compile_settings(spec, precision)
        cosine = probe_cosine(model, lambda: OpenVinoTransformer(staging / XML, transformer.config, settings))
        check_probe(cosine, spec, precision, "OpenVINO")
        record |= {
            "recipe": RECIPE[precision],
            "probe_mean_cosine": round(cosine, 6),
            "probe_settings": settings,
            "torch": torch.__version__,
            "openvino": openvino.__version__,
        }
        install(staging, folder, record, [XML, BIN])
    log.info("embed: OpenVINO conversion of %s verified (mean cosine %.5f to PyTorch)", spec.name, cosine)


class OpenVinoTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module.

    One compiled model and one inference request per process (the model holding
    it is loaded once per process, and runs on one thread of it), with as many
    threads as PyTorch would use.
    """

    def __init__(self, path: Path, config: Any, settings: dict[str, Any]) -> None:
        super().__init__()
        core = openvino.Core()
        compiled = core.compile_model(core.read_model(str(path)), "CPU", settings)
        self.request = compiled.create_infer_request()
        self.inputs = [port.any_name for port in compiled.inputs]
        self.config = config

    def forward(self, **features: Any) -> dict[str, Any]:
        result = self.request.infer({name: features[name].numpy() for name in self.inputs})
        return {"last_hidden_state": torch.from_numpy(np.asarray(result[0]))}
