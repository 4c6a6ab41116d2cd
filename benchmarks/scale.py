"""Each stage at growing N: seconds and peak RSS, with the tutorial's choices side by side.

The corpus is the whole 20 Newsgroups (train + test, 20 groups), cleaned; the
N posts are the first N of one seeded shuffle, so smaller samples are inside
larger ones. Every stage runs the pipeline's own plain functions, each (stage,
N) in a fresh process, so its peak RSS is that of a process doing only that
stage (imports included):

- ingest + clean: the archive unpacked into an empty folder, then cleaned (once: it is per corpus);
- embed: the default local model (all-MiniLM-L6-v2, fp32) in the embed stage's batches, with no
  cache; one pass over the largest N, timed at every smaller N on the way (each a prefix, so the
  time at N is the cold time for N);
- embed with Gemini against the local fake server (``tests/gemini_server.py``, a fixed latency per
  request): our batched, concurrent embedder against the tutorial's one blocking call per text
  (measured up to ``--tutorial-gemini-max`` texts, projected linearly beyond, and marked so);
- map: openTSNE as the pipeline runs it against scikit-learn's ``TSNE`` (the tutorial's);
- cluster: KMeans with k = the number of groups in the sample; evaluate: Hungarian accuracy, ARI,
  NMI and the silhouette; name: c-TF-IDF names; publish: the PNG maps and ``map.html``.

    python benchmarks/scale.py                       # N = 600, 2,400, 11,314, 18,846 (about an hour here:
                                                     # MiniLM embeds ~12.5 of these posts/s on 2 cores)
    python benchmarks/scale.py --sizes 600 2400      # a quick look
    python benchmarks/scale.py --embed-max 2400 --embeddings RUN/embeddings.parquet   # map a whole-corpus run's vectors

Prints one table and writes it as Parquet (``--out``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ARCHIVE = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"
SIZES = [600, 2400, 11314, 18846]
EMBED_BATCH = 128  # the local embedder's own batch size (``default_batch_size``)
KEY = "benchmark-key"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_fresh_process(function, *args) -> dict:
    """Run ``function(*args)`` in a new process; returns its dict with the process's peak RSS."""
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(function, *args).result()


# --- stages, each run in its own process --------------------------------------------------------


def ingest_and_clean(archive: Path, workdir: Path) -> dict:
    """Unpack and read the whole corpus into an empty data folder, clean it, keep it for the others."""
    from tasks.clean import clean_corpus
    from tasks.config import CleaningSettings
    from tasks.ingest import load_newsgroups

    started = time.perf_counter()
    corpus = load_newsgroups(archive=archive, data_home=workdir / "data-home", subset="all")
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    cleaned, _ = clean_corpus(corpus, CleaningSettings())
    clean_s = time.perf_counter() - started
    order = np.random.default_rng(0).permutation(len(cleaned))
    cleaned.iloc[order].reset_index(drop=True).to_parquet(workdir / "posts.parquet")
    return {"ingest_s": ingest_s, "clean_s": clean_s, "posts": len(cleaned), "peak_rss_mb": _peak_rss_mb()}


def embed_local(workdir: Path, sizes: list[int]) -> list[dict]:
    """Load the model, then embed the largest N in batches; the load, then the time and peak RSS on reaching each N."""
    from tasks.embed._local import LocalEmbedder

    texts = pd.read_parquet(workdir / "posts.parquet")["text"].tolist()[: max(sizes)]
    started = time.perf_counter()
    embedder = LocalEmbedder()
    embedder.model  # noqa: B018  (loaded on first use otherwise; timed apart from embedding)
    rows = [{"n": 0, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}]
    started = time.perf_counter()
    vectors = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    marks = sorted(sizes)
    for start in range(0, len(texts), EMBED_BATCH):
        stop = min(start + EMBED_BATCH, len(texts))
        vectors[start:stop] = embedder.embed(texts[start:stop])
        while marks and stop >= marks[0]:
            rows.append(
                {"n": marks.pop(0), "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}
            )
    np.save(workdir / "vectors.npy", vectors)
    return rows


def vectors_of_a_run(workdir: Path, embeddings: Path) -> None:
    """The vectors of every post from a whole-corpus run's ``embeddings.parquet``, in the benchmark's order."""
    from tasks.layout import read_embeddings

    doc_ids, vectors = read_embeddings(embeddings)
    row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    order = pd.read_parquet(workdir / "posts.parquet", columns=["doc_id"])["doc_id"]
    missing = [d for d in order if d not in row]
    if missing:
        raise SystemExit(f"{embeddings} lacks {len(missing)} of the corpus's posts (first: {missing[0]})")
    np.save(workdir / "vectors.npy", vectors[[row[d] for d in order]])


def embed_gemini(workdir: Path, n: int, url: str, latency_s: float, tutorial: bool) -> dict:
    """Our Gemini embedder on N texts (and the tutorial's loop, when asked) against the fake server."""
    os.environ["GOOGLE_GEMINI_BASE_URL"] = url
    from tasks.embed._base import tallying
    from tasks.embed._gemini import GeminiEmbedder

    texts = pd.read_parquet(workdir / "posts.parquet")["text"].tolist()[:n]
    embedder = GeminiEmbedder(
        KEY, dimensions=768, max_concurrency=8, requests_per_minute=1_000_000, tokens_per_minute=1_000_000_000
    )
    started = time.perf_counter()
    with tallying() as tally:
        embedder.embed(texts)
    row = {"ours_s": time.perf_counter() - started, "ours_requests": int(tally.counts["requests"])}
    if tutorial:
        from google import genai
        from google.genai import types

        client = genai.Client(api_key=KEY)
        config = types.EmbedContentConfig(task_type="CLUSTERING", output_dimensionality=768)
        started = time.perf_counter()
        for text in texts:
            client.models.embed_content(model="gemini-embedding-001", contents=text, config=config)
        row["tutorial_s"] = time.perf_counter() - started
    return row | {"peak_rss_mb": _peak_rss_mb()}


def map_ours(workdir: Path, n: int) -> dict:
    """openTSNE as the map stage runs it (PCA start, auto BH/FFT, one thread)."""
    from tasks.reduce import TsneReducer

    vectors = np.load(workdir / "vectors.npy")[:n]
    started = time.perf_counter()
    coords = TsneReducer(seed=0).fit_transform(vectors)
    np.save(workdir / f"coords-{n}.npy", coords)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def map_tutorial(workdir: Path, n: int) -> dict:
    """The tutorial's ``TSNE(random_state=0, n_iter=1000)``, on scikit-learn's current API."""
    from sklearn.manifold import TSNE

    vectors = np.load(workdir / "vectors.npy")[:n]
    started = time.perf_counter()
    TSNE(random_state=0, max_iter=1000).fit_transform(vectors)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def cluster_to_publish(workdir: Path, n: int) -> list[dict]:
    """Cluster, evaluate, name and publish (PNGs and map.html) N posts; one row per stage."""
    import matplotlib.pyplot as plt

    from tasks.cluster import KMeansClusterer
    from tasks.evaluate import score
    from tasks.interactive import render_map_html
    from tasks.mapdata import prepare_map
    from tasks.names import name_clusters
    from tasks.publish import render_plots

    posts = pd.read_parquet(workdir / "posts.parquet").iloc[:n]
    vectors = np.load(workdir / "vectors.npy")[:n]
    xy = np.load(workdir / f"coords-{n}.npy")
    classes = posts["class_name"].to_numpy(dtype=object)
    rows = []

    def timed(stage: str, work):
        started = time.perf_counter()
        result = work()
        rows.append({"stage": stage, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()})
        return result

    k = len(set(classes))
    clusters = timed("cluster", lambda: KMeansClusterer(n_clusters=k, n_init=10, seed=0).fit_predict(vectors))
    evaluation, _ = timed("evaluate", lambda: score(classes, clusters, vectors, seed=0))
    texts = posts["text"].tolist()
    matched = evaluation.matched_classes()
    names = timed(
        "name", lambda: name_clusters(texts, clusters, class_names=classes, matched_classes=matched)
    )

    def publish() -> None:
        coords = pd.DataFrame({"doc_id": posts["doc_id"], "x": xy[:, 0], "y": xy[:, 1]})
        data = prepare_map(
            coords,
            texts,
            clusters,
            classes,
            reducer_label="t-SNE",
            cluster_names=dict(zip(names["cluster"], names["name"], strict=True)),
            matched_classes=matched,
        )
        for name, figure in render_plots(data, evaluation).items():
            figure.savefig(workdir / f"{name}-{n}.png", dpi=150)
            plt.close(figure)
        render_map_html(data, workdir / f"map-{n}.html", title="scale")

    timed("publish", publish)
    return rows


# --- the table ----------------------------------------------------------------------------------


def measure(
    sizes: list[int],
    archive: Path,
    workdir: Path,
    latency_s: float,
    tutorial_max: int,
    embeddings: Path | None = None,
    embed_max: int | None = None,
) -> pd.DataFrame:
    from gemini_server import FakeGemini

    rows = []

    def add(stage: str, n: int, ours: dict, tutorial_s: float | None = None, note: str = "") -> None:
        rows.append(
            {
                "stage": stage,
                "n": n,
                "seconds": ours["seconds"],
                "peak_rss_mb": ours["peak_rss_mb"],
                "tutorial_s": tutorial_s,
                "note": note,
            }
        )
        ratio = f", tutorial {tutorial_s:.1f} s" if tutorial_s else ""
        print(
            f"  {stage:<16} N={n:>6}: {ours['seconds']:7.1f} s, {ours['peak_rss_mb']:6.0f} MB{ratio} {note}",
            flush=True,
        )

    corpus = _in_fresh_process(ingest_and_clean, archive, workdir)
    sizes = sorted(min(n, corpus["posts"]) for n in sizes)
    add("ingest", corpus["posts"], {"seconds": corpus["ingest_s"], "peak_rss_mb": corpus["peak_rss_mb"]})
    add(
        "clean",
        corpus["posts"],
        {"seconds": corpus["clean_s"], "peak_rss_mb": corpus["peak_rss_mb"]},
        note="(same process as ingest)",
    )
    embedded = [n for n in sizes if embed_max is None or n <= embed_max]
    load, *reached = _in_fresh_process(embed_local, workdir, embedded)
    add("load model", embedded[-1], load, note="(once per process; not in the embed rows)")
    for row in reached:
        add("embed (local)", row["n"], row)
    if embeddings is not None:
        vectors_of_a_run(workdir, embeddings)
    with FakeGemini(api_key=KEY, latency_s=latency_s) as server:
        per_call = None
        for n in sizes:
            measured = n <= tutorial_max
            row = _in_fresh_process(embed_gemini, workdir, n, server.url, latency_s, measured)
            if measured:
                per_call = row["tutorial_s"] / n
            tutorial_s = row.get("tutorial_s", per_call * n if per_call else None)
            note = f"{row['ours_requests']} requests" + ("" if measured else "; tutorial projected")
            add(
                "embed (Gemini)",
                n,
                {"seconds": row["ours_s"], "peak_rss_mb": row["peak_rss_mb"]},
                tutorial_s,
                note,
            )
    for n in sizes:
        ours = _in_fresh_process(map_ours, workdir, n)
        add("map (t-SNE)", n, ours, _in_fresh_process(map_tutorial, workdir, n)["seconds"])
        for row in _in_fresh_process(cluster_to_publish, workdir, n):
            add(row["stage"], n, row)
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    sizes = sorted(table["n"].unique())
    lines = [
        f"{'stage':<16} " + " ".join(f"{'N=' + format(n, ','):>22}" for n in sizes),
        f"{'':<16} " + " ".join(f"{'s / MB / x tutorial':>22}" for _ in sizes),
    ]
    for stage, group in table.groupby("stage", sort=False):
        cells = []
        for n in sizes:
            row = group[group["n"] == n]
            if row.empty:
                cells.append(f"{'':>22}")
                continue
            r = row.iloc[0]
            ratio = f" / {r.tutorial_s / r.seconds:.1f}x" if pd.notna(r.tutorial_s) and r.seconds else ""
            cells.append(f"{f'{r.seconds:.1f} / {r.peak_rss_mb:.0f}{ratio}':>22}")
        lines.append(f"{stage:<16} " + " ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--latency-s", type=float, default=0.05, help="fake Gemini latency per request")
    parser.add_argument(
        "--tutorial-gemini-max",
        type=int,
        default=2400,
        help="largest N the tutorial's one-call-per-text loop is run at (projected beyond)",
    )
    parser.add_argument(
        "--embed-max",
        type=int,
        default=None,
        help="embed locally only up to this N (the pass is ~12 posts/s here); the larger maps need --embeddings",
    )
    parser.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        help="embeddings.parquet of a whole-corpus run (--subset all --groups --per-class 0): the vectors mapped",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmarks" / "scale.parquet")
    args = parser.parse_args()

    print(
        f"scale benchmark, {date.today()}, {os.cpu_count()} CPUs; fake Gemini latency "
        f"{args.latency_s * 1000:.0f} ms",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as workdir:
        table = measure(
            args.sizes,
            args.archive,
            Path(workdir),
            args.latency_s,
            args.tutorial_gemini_max,
            args.embeddings,
            args.embed_max,
        )
    print()
    print(format_table(table))
    print(
        "x tutorial: the tutorial's choice's seconds over ours (scikit-learn TSNE; one Gemini call per text)."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
