"""Embedding stage: the embedder registry and the batched, concurrent embed step.

The embedders register on import; the step (``tasks.embed.stage``) is loaded
on first use, because it imports Prefect (seconds) and ``tasks.config`` needs
only the registry's names, on the command line's way to refusing a bad flag.
"""

from typing import Any

from tasks.embed import _gemini, _local, _tfidf  # noqa: F401  (registers the embedders)
from tasks.embed._base import EMBEDDERS, Embedder, l2_normalise

_STAGE = (
    "EmbedJob",
    "embed_batch",
    "embed_documents",
    "embed_sample",
    "new_job",
    "plan_batches",
)

__all__ = ["EMBEDDERS", "Embedder", "l2_normalise", *_STAGE]


def __getattr__(name: str) -> Any:
    if name in _STAGE:
        from tasks.embed import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
