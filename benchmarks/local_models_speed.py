"""Posts per second of each local model (and MiniLM int8) on the same cleaned real posts.

Takes ``--posts`` cleaned posts of the train split's four sci groups (equal
numbers per class, seed 0), warms each model up on 4 posts, then times
``embed`` over all of them; fp32 and int8 MiniLM alternate ``--repeats`` times
so both see the same machine load. Models that are not fetched are skipped.

    python -m benchmarks.local_models_speed [--posts 64] [--models all-MiniLM-L6-v2 ...]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.quality import load_split
from tasks.embed._local import LocalEmbedder
from tasks.embed.models import MODELS, installed_state
from tasks.sample import sample_per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()

    texts = sample_per_class(load_split("train"), args.posts // 4, seed=0)["text"].tolist()
    chars = sum(map(len, texts)) / len(texts)
    print(f"{len(texts)} cleaned posts, {chars:.0f} characters on average")
    runs = [(name, "fp32") for name in args.models]
    if "all-MiniLM-L6-v2" in args.models:
        runs.insert(1, ("all-MiniLM-L6-v2", "int8"))
    embedders = {}
    for name, precision in runs:
        if installed_state(MODELS[name]) != "verified":
            print(f"{name}: not fetched, skipped")
            continue
        started = time.perf_counter()
        embedders[name, precision] = LocalEmbedder(name, precision=precision)
        embedders[name, precision].embed(texts[:4])
        print(f"{name} {precision}: loaded and warmed up in {time.perf_counter() - started:.1f} s")
    for repeat in range(args.repeats):
        for (name, precision), embedder in embedders.items():
            if repeat and name != "all-MiniLM-L6-v2":
                continue  # the big models once: minutes each on 2 shared cores
            started = time.perf_counter()
            embedder.embed(texts)
            seconds = time.perf_counter() - started
            print(f"{name:<22} {precision:<5} {seconds:8.1f} s {len(texts) / seconds:8.2f} posts/s")


if __name__ == "__main__":
    main()
