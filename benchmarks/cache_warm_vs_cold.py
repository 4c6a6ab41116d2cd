"""Embed stage with an empty cache (cold) versus the same run again (warm).

Runs the whole flow twice, each time in a fresh process, on the same posts with
one fresh cache folder, and prints the embed stage's seconds from each manifest.
Target: warm at least 50 times faster than cold on the full corpus.

    python benchmarks/cache_warm_vs_cold.py            # whole corpus: 18,846 posts, 18,583 after cleaning
    python benchmarks/cache_warm_vs_cold.py --subset train --groups sci   # smaller: 2,328 posts
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

# This checkout's code, not an installed copy of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from flows.newsgroups import newsgroups  # noqa: E402
from tasks.config import (  # noqa: E402
    EmbeddingSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
)


def run_flow(args: argparse.Namespace, output_dir: Path, name: str) -> None:
    newsgroups(
        source=SourceSettings(subset=args.subset),
        sampling=SamplingSettings(groups=args.groups, per_class=args.per_class),
        embedding=EmbeddingSettings(embedder="local"),
        # The map is not what is measured: PCA keeps the two runs short.
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=output_dir, run_name=name),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", default="all", choices=["train", "test", "all"])
    parser.add_argument("--groups", nargs="*", default=[], help="Class filters (default: every class).")
    parser.add_argument("--per-class", type=int, default=0, help="Posts per class (0: all).")
    parser.add_argument("--output-dir", type=Path, default=None, help="Default: a temporary folder.")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="cache-bench-"))
    if args.run:
        run_flow(args, output_dir, args.run)
        return
    # Each run in a fresh process, as a real re-run is: the warm run loads the model again.
    for name in ("cold", "warm"):
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--output-dir", str(output_dir), "--run", name],
            check=True,
        )
    cold, warm = (json.loads((output_dir / name / "manifest.json").read_text()) for name in ("cold", "warm"))
    cold_s, warm_s = cold["timings_s"]["embed"], warm["timings_s"]["embed"]
    posts = cold["counts"]["sampled"]
    print(f"\n{date.today()}, {os.cpu_count()} CPU cores, {platform.machine()}, output in {output_dir}")
    print("| posts | cold embed (s) | warm embed (s) | ratio | warm hits / misses |")
    print("|---:|---:|---:|---:|---:|")
    cache = warm["embedding"]["cache"]
    print(
        f"| {posts:,} | {cold_s:.1f} | {warm_s:.2f} | {cold_s / warm_s:.0f}x | "
        f"{cache['hits']:,} / {cache['misses']:,} |"
    )


if __name__ == "__main__":
    main()
