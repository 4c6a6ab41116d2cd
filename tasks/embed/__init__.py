"""Embedding stage: the embedder registry and the batched, concurrent embed step."""

from tasks.embed import _gemini, _local, _tfidf  # noqa: F401  (registers the embedders)
from tasks.embed._base import EMBEDDERS, Embedder, l2_normalise
from tasks.embed.stage import EmbedJob, embed_batch, embed_documents, embed_sample, new_job, plan_batches

__all__ = [
    "EMBEDDERS",
    "EmbedJob",
    "Embedder",
    "embed_batch",
    "embed_documents",
    "embed_sample",
    "new_job",
    "l2_normalise",
    "plan_batches",
]
