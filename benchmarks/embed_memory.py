"""The embed stage's memory on its own, over N posts of the whole corpus, with the command line's environment.

Each size runs in a process of its own that applies
``tasks.environment.configure_environment`` before anything else (as
``python -m flows.newsgroups`` does), then embeds the first N posts of the
shuffled whole corpus (cleaned, seed 0) with the default local model through
``embed_documents`` in a Prefect flow, the embedding cache on in a fresh
folder. RSS is sampled every half second. Set against a whole run's RSS
(docs/scaling.md), it says whether memory grows in the stage or around it.

    python -m benchmarks.embed_memory [--posts 8000 18583]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time


def rss_mb() -> int:
    """This process's resident memory in MB (Linux)."""
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024


def measure(posts: int) -> dict:
    """Embed ``posts`` whole-corpus posts in this process; RSS before, at each tenth, at the peak, after."""
    from tasks.environment import configure_environment

    configure_environment()  # before pyarrow, Prefect or torch is imported, as the command line does
    from pathlib import Path

    from prefect import flow

    from benchmarks.quality import WHOLE, load_split
    from tasks.config import EmbeddingSettings
    from tasks.embed.stage import embed_documents
    from tasks.layout import RunLayout

    frame = load_split(WHOLE).sample(frac=1.0, random_state=0).head(posts)
    texts, doc_ids = frame["text"].tolist(), frame["doc_id"].astype(str).tolist()
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb())
            time.sleep(0.5)

    with tempfile.TemporaryDirectory() as folder:

        @flow(name="embed-memory")
        def stage() -> None:
            embed_documents(
                doc_ids,
                texts,
                EmbeddingSettings(),
                seed=0,
                layout=RunLayout(Path(folder)),
                cache_dir=Path(folder) / "cache",
            )

        before = rss_mb()
        threading.Thread(target=sample, daemon=True).start()
        started = time.perf_counter()
        stage()
        seconds = time.perf_counter() - started
        done.set()
    step = max(1, len(samples) // 10)
    return {
        "posts": len(texts),
        "seconds": round(seconds, 1),
        "before": before,
        "tenths": samples[::step][:10],
        "peak": max(samples, default=before),
        "after": rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, nargs="+", default=[8000])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.posts[0])))
        return

    from benchmarks.embed_speed import this_machine

    print(f"{this_machine()}; default local model, the first N posts of the shuffled whole corpus")
    print("| posts | seconds | RSS before (MB) | RSS each tenth of the run (MB) | peak (MB) |")
    print("|---:|---:|---:|---|---:|")
    for posts in args.posts:
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.embed_memory", "--posts", str(posts), "--child"],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"| {row['posts']} | {row['seconds']} | {row['before']} | "
            f"{' '.join(map(str, row['tenths']))} | {row['peak']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
