"""Seconds from the shell to a refusal of ``python -m flows.newsgroups``: the median of a few runs.

Each case is a real command in a fresh interpreter, timed from start to exit,
with the refusal it must print checked. Run from the repository root:

    python benchmarks/cli_refusal.py
    python benchmarks/cli_refusal.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cases(folder: Path) -> dict[str, tuple[list[str], str]]:
    """Label -> (flags, the start of the refusal they must get)."""
    (folder / "results.txt").write_text("a file")
    return {
        "--per-class -5": (["--per-class", "-5"], "error: Invalid parameter --per-class"),
        "--reducer nope": (["--reducer", "nope"], "usage:"),
        "--corpus missing.csv": (["--corpus", str(folder / "missing.csv")], "error: The corpus file"),
        "--output-dir <a file>": (["--output-dir", str(folder / "results.txt")], "error: The output folder"),
    }


def seconds(flags: list[str], refusal: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "flows.newsgroups", *flags],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.perf_counter() - started
    if result.returncode != 2 or not result.stderr.startswith(refusal):
        raise SystemExit(
            f"{flags}: expected exit 2 and {refusal!r}, got {result.returncode}: {result.stderr}"
        )
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="Runs per case (the median is shown).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'refusal':<24} {'median s':>8} {'min s':>6} {'max s':>6}")
        for label, (flags, refusal) in cases(Path(folder)).items():
            times = [seconds(flags, refusal) for _ in range(args.repeats)]
            print(f"{label:<24} {statistics.median(times):>8.2f} {min(times):>6.2f} {max(times):>6.2f}")


if __name__ == "__main__":
    main()
