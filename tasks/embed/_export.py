"""What every runtime's export of a local model shares: the traced module, the probe check, the record.

An export (ONNX, OpenVINO) is made once from the checksum-verified weights, into
a temporary folder beside its place; it is refused unless its vectors agree with
PyTorch's on :data:`PROBE`; its record (``export.json``: the sha256 of every file
it wrote, the source weights' sha256, what made it) is written last, and the
folder is renamed into place. Every later load re-hashes the files against the
record, so an export that rotted on disk, or one made from other weights, by
another recipe, is made again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.embed.models import ModelSpec, models_dir
from tasks.errors import OutputError
from tasks.layout import file_sha256

log = logging.getLogger(__name__)

RECORD = "export.json"
# Mean cosine to PyTorch fp32 on the probe set below which an export is refused. int8 changes the
# vectors by design; its bound only catches a broken quantisation (whether it holds accuracy is
# measured with benchmarks/quality.py).
MIN_PROBE_COSINE = {"fp32": 0.999, "int8": 0.98}
PROBE = [
    "The rocket reached orbit after the second stage burn.",
    "The doctor prescribed antibiotics for the patient's infection.",
    "ok",
    "Does anyone know a good driver for the new graphics card? My screen flickers under X11 " * 3,
    "The team traded their goalie before the playoffs, and the fans were not pleased at all. " * 12,
    "In article <1993Apr5.1234@cs.cmu.edu> someone writes: the encryption chip's key escrow "
    "is a bad idea because the government holds both halves of every key. " * 30,
]
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_folder(spec: ModelSpec, kind: str, root: Path | None = None) -> Path:
    """Where the export ``kind`` (``"onnx-fp32"``, ``"openvino-int8"``...) of ``spec`` lives: beside the model."""
    return models_dir(root) / spec.name / kind


def valid_record(folder: Path, **expected: Any) -> dict[str, Any] | None:
    """The record of the export in ``folder``, or None where it is missing, made otherwise or damaged.

    ``expected`` are fields the record must hold as given (source weights, precision,
    recipe); every file the record lists must still have its recorded sha256.
    """
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if any(record.get(key) != value for key, value in expected.items()):
        return None
    files = record.get("sha256")
    if not isinstance(files, dict) or not files:
        return None
    for name, sha256 in files.items():
        if not (folder / name).is_file() or file_sha256(folder / name) != sha256:
            log.warning("embed: %s in %s does not match its recorded sha256; exporting again", name, folder)
            return None
    return record


@contextmanager
def staging_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to export into; removed unless :func:`install` renamed it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(staging: Path, folder: Path, record: dict[str, Any], files: list[str]) -> None:
    """Record ``files``' sha256 in ``staging``'s record (written last), then rename it to ``folder``.

    Another process (a Dask worker, a second run) may have installed the same
    export meanwhile: then its folder is kept and this one dropped.
    """
    record = {**record, "sha256": {name: file_sha256(staging / name) for name in files}}
    (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    old = folder.with_name(f".tmp-old-{folder.name}-{os.getpid()}")
    if folder.exists():
        os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def probe_cosine(model: Any, runs_export: Callable[[], Any]) -> float:
    """Mean cosine on :data:`PROBE` of ``model`` (PyTorch, as loaded) to ``model`` with the export in place.

    ``runs_export()`` returns the module standing in for the transformer; the
    original is put back afterwards, whatever happens.
    """
    options = {"normalize_embeddings": True, "convert_to_numpy": True, "show_progress_bar": False}
    reference = model.encode(PROBE, **options)
    transformer = model[0].model
    model[0].model = runs_export()
    try:
        exported = model.encode(PROBE, **options)
    finally:
        model[0].model = transformer
    return float(np.mean(np.sum(reference * exported, axis=1)))


def check_probe(cosine: float, spec: ModelSpec, precision: str, runtime: str) -> None:
    """Refuse an export whose probe vectors are not PyTorch's (see :data:`MIN_PROBE_COSINE`)."""
    if cosine < MIN_PROBE_COSINE[precision]:
        raise OutputError(
            f"The {runtime} export of {spec.name} ({precision}) gives vectors with a mean cosine of {cosine:.4f} "
            f"to PyTorch's, under {MIN_PROBE_COSINE[precision]}; it was refused: use --runtime torch."
        )


class LastHiddenState(torch.nn.Module):
    """The transformer as a function of its token tensors, returning the last hidden state (what is exported)."""

    def __init__(self, transformer: Any, names: list[str]) -> None:
        super().__init__()
        self.transformer, self.names = transformer, names

    def forward(self, *tensors: Any) -> Any:
        inputs = dict(zip(self.names, tensors, strict=True))
        return self.transformer(**inputs, return_dict=True).last_hidden_state


def traced_inputs(model: Any) -> tuple[list[str], tuple[Any, ...]]:
    """The token tensors ``model``'s tokenizer makes (names, example tensors), to trace the transformer with."""
    features = model.preprocess(PROBE[:2])
    names = [name for name in TOKEN_INPUTS if name in features]
    return names, tuple(features[name] for name in names)
