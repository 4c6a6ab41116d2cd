"""Gemini embedding throughput against the fake server (tests/gemini_server.py), by hand.

Run from the repository root: ``python benchmarks/gemini_throughput.py`` (about 1.5 minutes).

Every request waits a fixed latency at the server, so the figures measure the
request pattern, not Google. Rows:

1. the tutorial's loop: one blocking ``embed_content`` call per post;
2. our embedder: batches of 100, ``max_concurrency`` requests in flight, no pacing;
3. our embedder on a long run paced at ``requests_per_minute``: the share of that
   limit it achieves (target: at least 90%).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.embed._base import tallying  # noqa: E402
from tasks.embed._gemini import GeminiEmbedder  # noqa: E402
from tests.gemini_server import FakeGemini  # noqa: E402

KEY = "benchmark-key"
UNLIMITED = {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000}


def posts(n: int) -> list[str]:
    """``n`` distinct texts of about 800 characters, like cleaned newsgroup posts."""
    body = "The probe measured the orbit and the crew reported the telemetry to the ground station. "
    return [f"Post {i}. " + body * 9 for i in range(n)]


def tutorial_loop(texts: list[str], dimensions: int) -> None:
    """The tutorial's pattern, on the maintained SDK: one request per post, one at a time."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=KEY)
    config = types.EmbedContentConfig(task_type="CLUSTERING", output_dimensionality=dimensions)
    for text in texts:
        client.models.embed_content(model="gemini-embedding-001", contents=text, config=config)


def serve(conn, latency_s: float) -> None:
    """Child process: run the fake server until told to stop, then report what it saw."""
    with FakeGemini(api_key=KEY, latency_s=latency_s) as server:
        conn.send(server.url)
        conn.recv()
        conn.send({"requests": server.requests, "max_in_flight": server.max_in_flight})


def run(label: str, n_texts: int, work) -> dict:
    """Time ``work()``, which returns the number of requests it made."""
    start = time.perf_counter()
    requests = work()
    seconds = time.perf_counter() - start
    return {"label": label, "texts": n_texts, "requests": requests, "seconds": seconds}


def embedder_run(embedder: GeminiEmbedder, texts: list[str]):
    """Embed ``texts``; return the requests made."""

    def work() -> int:
        with tallying() as tally:
            embedder.embed(texts)
        return int(tally.counts["requests"])

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=0.1, help="fixed server latency per request")
    parser.add_argument("--dimensions", type=int, default=768)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tutorial-texts", type=int, default=100)
    parser.add_argument("--batched-texts", type=int, default=3000)
    parser.add_argument("--rpm", type=int, default=600, help="requests per minute of the paced run")
    parser.add_argument("--paced-seconds", type=float, default=45.0, help="length of the paced run")
    parser.add_argument(
        "--paced-dimensions",
        type=int,
        default=128,
        help="dimensions of the paced run: small, so that JSON work on a 2-core box does not bind first",
    )
    args = parser.parse_args()

    # The server runs in its own process, as a real one would: its JSON work does not take our GIL.
    conn, child_conn = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=serve, args=(child_conn, args.latency_s))
    child.start()
    os.environ["GOOGLE_GEMINI_BASE_URL"] = conn.recv()

    texts = posts(args.tutorial_texts)
    rows = [
        run(
            "tutorial: 1 call per post",
            len(texts),
            lambda: tutorial_loop(texts, args.dimensions) or len(texts),
        )
    ]
    batched = posts(args.batched_texts)
    embedder = GeminiEmbedder(KEY, dimensions=args.dimensions, max_concurrency=args.concurrency, **UNLIMITED)
    rows.append(
        run(
            f"ours: batches of 100, {args.concurrency} in flight",
            len(batched),
            embedder_run(embedder, batched),
        )
    )
    paced_texts = posts(100 * round(args.rpm * args.paced_seconds / 60))
    paced = GeminiEmbedder(
        KEY,
        dimensions=args.paced_dimensions,
        max_concurrency=args.concurrency,
        requests_per_minute=args.rpm,
        tokens_per_minute=1_000_000_000,
    )
    rows.append(
        run(
            f"ours: paced at {args.rpm} requests/min ({args.paced_dimensions} dims)",
            len(paced_texts),
            embedder_run(paced, paced_texts),
        )
    )
    conn.send("stop")
    seen = conn.recv()
    child.join()
    assert seen["requests"] == sum(row["requests"] for row in rows), seen
    assert seen["max_in_flight"] <= args.concurrency, seen

    tutorial_rate = rows[0]["texts"] / rows[0]["seconds"]
    print(
        f"fake Gemini server (own process), {args.latency_s * 1000:.0f} ms per request, "
        f"{args.dimensions} dimensions unless noted\n"
    )
    print("| run | texts | requests | seconds | texts/s | vs tutorial | requests/min (share of limit) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rate = row["texts"] / row["seconds"]
        per_minute = 60 * row["requests"] / row["seconds"]
        share = (
            f"{per_minute:.0f} ({per_minute / args.rpm:.0%})"
            if "paced" in row["label"]
            else f"{per_minute:.0f}"
        )
        print(
            f"| {row['label']} | {row['texts']} | {row['requests']} | {row['seconds']:.2f} | "
            f"{rate:.0f} | {rate / tutorial_rate:.0f}x | {share} |"
        )
    print(f"\npaced run: {paced.stats()}; server saw {seen}")


if __name__ == "__main__":
    main()
