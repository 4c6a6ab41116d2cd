"""Peak memory and outcome of a run on a small corpus of many classes, and of a silent --dask-address.

Each row is a real command in a fresh interpreter under ``/usr/bin/time -v``
(Linux): a JSONL corpus of N classes x 2 posts, ``--embedder tfidf``, and the
time and peak resident memory until it finished or was refused. The last row
points ``--dask-address`` at a port that accepts connections and says nothing.
Run from the repository root:

    python benchmarks/class_count.py
    python benchmarks/class_count.py --classes 50 200 1000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def corpus(path: Path, n_classes: int, per_class: int = 2) -> Path:
    """A JSONL corpus of ``n_classes`` classes of ``per_class`` random-word posts each."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    with path.open("w") as handle:
        for c in range(n_classes):
            for _ in range(per_class):
                text = " ".join(rng.sample(words, 12)) + f" topic{c}"
                handle.write(json.dumps({"text": text, "label": f"class {c}"}) + "\n")
    return path


def measured(flags: list[str]) -> tuple[float, float, int, str]:
    """Seconds, peak resident GB, exit status and last stderr line of the command with ``flags``."""
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "flows.newsgroups", *flags],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return elapsed, peak_kb / 1e6, result.returncode, (errors[-1] if errors else "finished")[:90]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    print(f"{'case':<28} {'s':>6} {'peak GB':>8} {'exit':>5}  outcome")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.classes:
            path = corpus(Path(folder) / f"k{n}.jsonl", n)
            flags = ["--corpus", str(path), "--embedder", "tfidf", "--output-dir", f"{folder}/runs"]
            seconds, peak, status, outcome = measured(flags)
            print(f"{f'{n:,} classes x 2 posts':<28} {seconds:6.1f} {peak:8.2f} {status:>5}  {outcome}")
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
            flags = ["--corpus", str(path), "--task-runner", "dask", "--dask-address", address]
            seconds, peak, status, outcome = measured([*flags, "--output-dir", f"{folder}/runs"])
            print(f"{'silent --dask-address':<28} {seconds:6.1f} {peak:8.2f} {status:>5}  {outcome}")


if __name__ == "__main__":
    main()
