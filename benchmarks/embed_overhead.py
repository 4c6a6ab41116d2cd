"""What the embed stage adds to its bare runtime, on the same texts, in one run.

The tutorial's sample (150 cleaned train posts of each ``sci.*`` group, seed 0),
embedded with the default local model two ways, in interleaved rounds (the best
round of each kept, so both see the same machine load):

- bare: ``LocalEmbedder.embed`` over the texts in the stage's own order and
  batches (longest first), one call after the other, in this process;
- stage: ``tasks.embed.stage.embed_documents`` inside a Prefect flow (the
  embedding cache off, so every text is embedded), which adds the plan step, the
  batch tasks on the thread pool, the progress lines and ``embeddings.parquet``.

    python -m benchmarks.embed_overhead [--rounds 3] [--per-class 150]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.embed_speed import this_machine
from benchmarks.quality import draw, load_split
from tasks.embed._local import LocalEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bare(embedder: LocalEmbedder, texts: list[str], batch_size: int) -> np.ndarray:
    """The runtime alone: the stage's order and batches, one call after the other, back in the texts' order."""
    from tasks.embed.stage import by_length, plan_batches

    order = by_length(texts, np.arange(len(texts)))
    vectors = np.empty((len(texts), embedder.spec.dimensions), np.float32)
    for start, stop in plan_batches(len(order), batch_size):
        rows = order[start:stop]
        vectors[rows] = embedder.embed([texts[i] for i in rows])
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=150)
    args = parser.parse_args()

    from prefect import flow

    from tasks.config import EmbeddingSettings
    from tasks.embed.stage import embed_documents
    from tasks.environment import configure_environment
    from tasks.layout import RunLayout

    configure_environment()
    sample = draw(load_split("train"), "train", seed=0)
    if args.per_class < 150:
        sample = sample.groupby("class_name").head(args.per_class)
    texts, doc_ids = sample["text"].tolist(), sample["doc_id"].astype(str).tolist()
    embedder = LocalEmbedder()
    batch_size = embedder.default_batch_size
    settings = EmbeddingSettings(cache=False)
    embedder.embed(texts[:4])  # the model loaded outside the timing; the stage's own load is cached too

    @flow(name="embed-overhead")
    def stage(folder: str) -> tuple[np.ndarray, float]:
        # Timed inside the flow: creating and ending the flow run is the flow's cost, not the stage's.
        started = time.perf_counter()
        vectors = embed_documents(doc_ids, texts, settings, seed=0, layout=RunLayout(Path(folder)))[0]
        return vectors, time.perf_counter() - started

    def timed_bare() -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        return bare(embedder, texts, batch_size), time.perf_counter() - started

    best = {"bare": np.inf, "stage": np.inf}
    vectors = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, run in (("bare", timed_bare), ("stage", lambda: stage(folder))):
                vectors[name], seconds = run()
                best[name] = min(best[name], seconds)

    print(
        f"{this_machine()}; {embedder.describe()}; {len(texts)} posts, batches of {batch_size}, "
        f"best of {args.rounds} interleaved rounds"
    )
    cosine = np.sum(vectors["bare"] * vectors["stage"], axis=1)
    print("| path | seconds | posts/s | x bare |")
    print("|---|---:|---:|---:|")
    for name in best:
        print(
            f"| {name} | {best[name]:.1f} | {len(texts) / best[name]:.1f} | {best[name] / best['bare']:.3f} |"
        )
    print(f"cosine stage to bare: mean {cosine.mean():.6f}, min {cosine.min():.6f}")


if __name__ == "__main__":
    main()
