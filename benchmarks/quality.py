"""Clustering quality of the local models on the tutorial protocol, train and test split, 10 seeds.

Protocol (the tutorial's, with the project's own stages): ingest the real bydate
archive (``tasks.ingest.load_newsgroups``), clean (``tasks.clean.clean_corpus``,
default settings), keep the four ``sci.*`` groups and draw 150 posts per class
with seed ``s`` (``tasks.sample.sample_per_class``), embed, cluster into 4, and
score with ``tasks.evaluate.evaluate_clusters`` (Hungarian accuracy, ARI, NMI).
Seeds 0-9, on the train split and on the test split. ``--splits whole`` adds
the 20-group full corpus (both splits, every post, k = 20; the seed varies the
clusterer only): the scale the whole-corpus run maps.

Vectors are kept in the project's embedding cache (``EmbeddingCache`` keyed by
the embedder's ``describe()``; default ``artifacts/.embedding-cache``, which the
pipeline shares), so a rerun only clusters. Embedding every post the seeds need
first, in the background, is what ``--embed-only MODEL`` is for::

    nice -n 10 python benchmarks/quality.py --embed-only embeddinggemma-300m
    python benchmarks/quality.py [--configs minilm-kmeans gemma-kmeans ...] [--seeds 0 1 ...]

Prints one table (mean/min/max per configuration and split) and writes it,
with the per-seed rows, as Parquet (``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.clean import clean_corpus
from tasks.cluster import GaussianMixtureClusterer, KMeansClusterer
from tasks.config import CleaningSettings
from tasks.embed._local import LocalEmbedder, describe_local
from tasks.embed.cache import EmbeddingCache, text_keys
from tasks.embed.hybrid import append_tfidf
from tasks.evaluate import evaluate_clusters
from tasks.ingest import load_newsgroups
from tasks.sample import sample_per_class, select_groups

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"
GROUPS = ["sci"]
PER_CLASS = 150
WHOLE = "whole"
"""The split name of the full corpus: ``subset="all"``, all 20 groups, no sampling."""
# The tutorial's Gemini embedding-001 result (train split, one sample): per class and mean.
GEMINI = {"per_class": [0.967, 0.960, 0.953, 0.927], "mean": 0.952}
THROUGHPUT_FILE = "throughput.json"
LENGTH_WINDOW = 512


# --- data -------------------------------------------------------------------------------------


def load_split(split: str, *, archive: Path = ARCHIVE, data_home: Path | None = None) -> pd.DataFrame:
    """The cleaned posts of the four sci groups of ``split`` ("train" or "test"), or of the whole corpus."""
    frame = load_newsgroups(archive=archive, data_home=data_home, subset="all" if split == WHOLE else split)
    cleaned, _ = clean_corpus(frame, CleaningSettings())
    return cleaned if split == WHOLE else select_groups(cleaned, GROUPS).reset_index(drop=True)


def draw(frame: pd.DataFrame, split: str, seed: int) -> pd.DataFrame:
    """The posts seed ``seed`` clusters: 150 per class, or every post of the whole corpus."""
    return frame if split == WHOLE else sample_per_class(frame, PER_CLASS, seed=seed)


def needed_texts(splits: dict[str, pd.DataFrame], seeds: list[int]) -> list[str]:
    """Every text the seeds' samples need, seed by seed (so a partial run covers whole seeds first)."""
    ordered: dict[str, None] = {}
    for seed in seeds:
        for split, frame in splits.items():
            for text in draw(frame, split, seed)["text"]:
                ordered.setdefault(text, None)
    return list(ordered)


# --- cached embedding -------------------------------------------------------------------------


def longest_first(indices: np.ndarray, texts: list[str]) -> np.ndarray:
    """``indices`` ordered by the length of their text, longest first (ties keep their order)."""
    lengths = np.array([len(texts[i]) for i in indices], dtype=np.int64)
    return indices[np.argsort(-lengths, kind="stable")]


def embed_cached(
    model: str,
    texts: list[str],
    cache_dir: Path,
    *,
    precision: str = "fp32",
    runtime: str = "torch",
    max_tokens: int | None = None,
    chunk: int = 32,
    progress: Callable[[str], None] = print,
) -> np.ndarray:
    """Vectors of ``texts`` from the cache; the missing ones are embedded and stored chunk by chunk.

    The model is loaded only if something is missing. Embedding speed is
    recorded in ``<cache_dir>/throughput.json`` (posts/s of the last run that embedded).
    """
    description = describe_local(model, precision, runtime, max_tokens)
    store = EmbeddingCache.open(cache_dir, description)
    if store is None:
        raise RuntimeError(f"cannot open the embedding cache in {cache_dir}")
    keys = text_keys(texts)
    found, stored = store.lookup(keys)
    vectors = np.zeros((len(texts), description["dimensions"]), dtype=np.float32)
    vectors[found] = stored
    # Longest first within windows of a few hundred: the model pads a chunk to its longest post
    # (EmbeddingGemma: up to 512 tokens), so chunks of like length pad less, and the seeds' posts
    # still come roughly seed by seed.
    missing = np.flatnonzero(~found)
    missing = np.concatenate(
        [longest_first(missing[i : i + LENGTH_WINDOW], texts) for i in range(0, len(missing), LENGTH_WINDOW)]
        or [missing]
    )
    if len(missing):
        progress(f"{model} {precision}: {found.sum()} cached, embedding {len(missing)}")
        embedder = LocalEmbedder(model, precision=precision, runtime=runtime, max_tokens=max_tokens)
        started = time.perf_counter()
        for start in range(0, len(missing), chunk):
            rows = missing[start : start + chunk]
            vectors[rows] = embedder.embed([texts[i] for i in rows])
            store.add(keys[rows], vectors[rows])
            done = start + len(rows)
            elapsed = time.perf_counter() - started
            progress(
                f"{model} {precision}: {done}/{len(missing)} in {elapsed:.0f} s ({done / elapsed:.2f} posts/s)"
            )
        budget = f"/{max_tokens}" if max_tokens else ""
        record_throughput(
            cache_dir, f"{model}/{precision}/{runtime}{budget}", len(missing), time.perf_counter() - started
        )
    return vectors


def all_cached(config: Config, sample: pd.DataFrame, cache_dir: Path) -> bool:
    """Whether every post of ``sample`` has a cached vector for ``config``'s model and precision."""
    description = describe_local(config.model, config.precision, config.runtime, config.max_tokens)
    store = EmbeddingCache.open(cache_dir, description)
    return store is not None and bool(store.lookup(text_keys(sample["text"].tolist()))[0].all())


def record_throughput(cache_dir: Path, key: str, n_posts: int, seconds: float) -> None:
    """Remember how fast ``key`` embedded (read by the table)."""
    path = Path(cache_dir) / THROUGHPUT_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = {"posts": n_posts, "seconds": round(seconds, 1), "posts_per_s": round(n_posts / seconds, 2)}
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- configurations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One embedder x clusterer configuration.

    ``tfidf_weight`` > 0 appends the sample's own TF-IDF-SVD vectors (256 dims) times the weight
    (``--tfidf-weight``); ``clusterer`` is "kmeans" or "gmm" (on ``pca`` principal components).
    """

    name: str
    model: str
    precision: str = "fp32"
    runtime: str = "torch"
    max_tokens: int | None = None  # --max-tokens; None: the model's own budget
    clusterer: str = "kmeans"
    pca: int = 0
    tfidf_weight: float = 0.0


CONFIGS = {
    c.name: c
    for c in [
        Config("minilm-kmeans", "all-MiniLM-L6-v2"),
        Config("minilm-128-kmeans", "all-MiniLM-L6-v2", max_tokens=128),
        Config("minilm-int8-kmeans", "all-MiniLM-L6-v2", precision="int8"),
        Config("minilm-int8-128-kmeans", "all-MiniLM-L6-v2", precision="int8", max_tokens=128),
        Config("minilm-onnx-kmeans", "all-MiniLM-L6-v2", runtime="onnx"),
        Config("minilm-onnx-int8-kmeans", "all-MiniLM-L6-v2", precision="int8", runtime="onnx"),
        # "-ov": OpenVINO, the default runtime since 2026-12-06 (the rows above without it are PyTorch's).
        Config("minilm-ov-kmeans", "all-MiniLM-L6-v2", runtime="openvino"),
        Config("minilm-ov-int8-kmeans", "all-MiniLM-L6-v2", precision="int8", runtime="openvino"),
        Config("gemma-kmeans", "embeddinggemma-300m"),
        Config("gemma-256-kmeans", "embeddinggemma-300m", max_tokens=256),
        Config("gemma-1024-kmeans", "embeddinggemma-300m", max_tokens=1024),
        Config("gemma-gmm-pca15", "embeddinggemma-300m", clusterer="gmm", pca=15),
        Config("gemma+tfidf-kmeans", "embeddinggemma-300m", tfidf_weight=0.5),
        Config("gemma+tfidf-gmm-pca20", "embeddinggemma-300m", clusterer="gmm", pca=20, tfidf_weight=0.5),
        Config("gemma+tfidf.6-gmm-pca25", "embeddinggemma-300m", clusterer="gmm", pca=25, tfidf_weight=0.6),
        Config(
            "gemma-256+tfidf.6-gmm-pca25",
            "embeddinggemma-300m",
            max_tokens=256,
            clusterer="gmm",
            pca=25,
            tfidf_weight=0.6,
        ),
        # --preset best as it runs now: OpenVINO.
        Config(
            "gemma-256-ov+tfidf.6-gmm-pca25",
            "embeddinggemma-300m",
            runtime="openvino",
            max_tokens=256,
            clusterer="gmm",
            pca=25,
            tfidf_weight=0.6,
        ),
    ]
}


def cluster(
    config: Config, vectors: np.ndarray, texts: list[str], *, n_clusters: int, seed: int
) -> np.ndarray:
    """Features of ``config`` for one sample, clustered by the pipeline's own code; returns the labels."""
    features = append_tfidf(vectors, texts, weight=config.tfidf_weight, seed=seed)
    if config.clusterer == "gmm":
        clusterer = GaussianMixtureClusterer(n_clusters=n_clusters, pca_dimensions=config.pca, seed=seed)
    else:
        clusterer = KMeansClusterer(n_clusters=n_clusters, n_init=10, seed=seed)
    return clusterer.fit_predict(features)


def run(
    configs: list[Config],
    splits: dict[str, pd.DataFrame],
    seeds: list[int],
    cache_dir: Path,
    progress: Callable[[str], None] = print,
    *,
    cached_only: bool = False,
) -> pd.DataFrame:
    """One row per configuration, split and seed: scores and clustering seconds.

    ``cached_only`` skips the seeds whose posts are not all in the cache (nothing is embedded).
    """
    rows = []
    for config in configs:
        for split, frame in splits.items():
            samples = {seed: draw(frame, split, seed) for seed in seeds}
            n_clusters = frame["class_name"].nunique()
            if cached_only:
                samples = {s: frame for s, frame in samples.items() if all_cached(config, frame, cache_dir)}
                if not samples:
                    progress(f"{config.name} {split}: no seed is fully cached; skipped")
                    continue
            texts = list(dict.fromkeys(t for s in samples.values() for t in s["text"]))
            vectors = embed_cached(
                config.model,
                texts,
                cache_dir,
                precision=config.precision,
                runtime=config.runtime,
                max_tokens=config.max_tokens,
                progress=progress,
            )
            index = {text: i for i, text in enumerate(texts)}
            for seed, sample in samples.items():
                sample_texts = sample["text"].tolist()
                started = time.perf_counter()
                labels = cluster(
                    config,
                    vectors[[index[t] for t in sample_texts]],
                    sample_texts,
                    n_clusters=n_clusters,
                    seed=seed,
                )
                seconds = time.perf_counter() - started
                metrics = evaluate_clusters(sample["class_name"].to_numpy(object), labels).metrics
                rows.append(
                    {
                        "config": config.name,
                        "split": split,
                        "seed": seed,
                        "hungarian": metrics["hungarian_accuracy"],
                        "ari": metrics["ari"],
                        "nmi": metrics["nmi"],
                        "cluster_s": seconds,
                        **{f"acc_{k}": v for k, v in metrics["per_class_accuracy"].items()},
                    }
                )
            last = [r["hungarian"] for r in rows if r["config"] == config.name and r["split"] == split]
            progress(f"{config.name} {split}: mean {np.mean(last):.3f} min {np.min(last):.3f}")
    return pd.DataFrame(rows)


def summarise(per_seed: pd.DataFrame, cache_dir: Path) -> pd.DataFrame:
    """Mean/min/max of each score per configuration and split, with embedding speed; plus the Gemini row."""
    speeds = (
        json.loads((cache_dir / THROUGHPUT_FILE).read_text())
        if (cache_dir / THROUGHPUT_FILE).exists()
        else {}
    )
    table = (
        per_seed.groupby(["config", "split"], sort=False)
        .agg(
            seeds=("seed", "count"),
            hungarian_mean=("hungarian", "mean"),
            hungarian_min=("hungarian", "min"),
            hungarian_max=("hungarian", "max"),
            ari_mean=("ari", "mean"),
            ari_min=("ari", "min"),
            ari_max=("ari", "max"),
            nmi_mean=("nmi", "mean"),
            nmi_min=("nmi", "min"),
            nmi_max=("nmi", "max"),
            cluster_s=("cluster_s", "mean"),
        )
        .reset_index()
    )
    table["embed_posts_per_s"] = [
        speeds.get(f"{CONFIGS[c].model}/{CONFIGS[c].precision}", {}).get("posts_per_s", np.nan)
        for c in table["config"]
    ]
    gemini = {"config": "gemini-001 (tutorial, published)", "split": "train", "seeds": 1}
    gemini |= {"hungarian_mean": GEMINI["mean"], "hungarian_min": min(GEMINI["per_class"])}
    return pd.concat([table, pd.DataFrame([gemini])], ignore_index=True)


def format_table(table: pd.DataFrame) -> str:
    """The summary as plain text."""
    header = (
        f"{'configuration':<34} {'split':<5} {'n':>2} | {'Hungarian mean/min/max':^22} | "
        f"{'ARI mean/min/max':^20} | {'NMI mean/min/max':^20} | {'clust s':>7} {'posts/s':>7}"
    )
    lines = [header, "-" * len(header)]

    def triple(row: pd.Series, name: str) -> str:
        values = [row.get(f"{name}_{k}") for k in ("mean", "min", "max")]
        return " ".join("  -  " if pd.isna(v) else f"{v:.3f}" for v in values)

    for _, row in table.iterrows():
        cluster_s = "" if pd.isna(row.get("cluster_s")) else f"{row['cluster_s']:.2f}"
        speed = row.get("embed_posts_per_s")
        speed = "" if pd.isna(speed) else f"{speed:.2f}"
        lines.append(
            f"{row['config']:<34} {row['split']:<5} {int(row['seeds']):>2} | {triple(row, 'hungarian'):^22} | "
            f"{triple(row, 'ari'):^20} | {triple(row, 'nmi'):^20} | {cluster_s:>7} {speed:>7}"
        )
    lines.append(
        "Gemini row: the tutorial's published per-class figures (min is the worst class, not a seed)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test", WHOLE])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--data-home", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "artifacts" / ".embedding-cache")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmarks" / "quality.parquet")
    parser.add_argument("--embed-only", metavar="MODEL", help="Only embed what the seeds need with MODEL.")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="With --embed-only.")
    parser.add_argument("--cached-only", action="store_true", help="Score only the seeds already embedded.")
    args = parser.parse_args()

    splits = {
        split: load_split(split, archive=args.archive, data_home=args.data_home) for split in args.splits
    }
    if args.embed_only:
        texts = needed_texts(splits, args.seeds)
        embed_cached(args.embed_only, texts, args.cache_dir, precision=args.precision)
        return
    configs = [CONFIGS[name] for name in args.configs]
    per_seed = run(configs, splits, args.seeds, args.cache_dir, cached_only=args.cached_only)
    table = summarise(per_seed, args.cache_dir)
    print(format_table(table))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    per_seed.to_parquet(args.out.with_name(args.out.stem + "-per-seed.parquet"), index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
