"""Choose HDBSCAN's defaults by measurement on the tutorial's sample.

For each seed, the tutorial's sample (train split, 4 sci.* groups x 150) is
embedded with the default local model (through the embedding cache), then
clustered by HDBSCAN for each minimum cluster size, on the embeddings and on a
5-dimensional UMAP projection (BERTopic's way). Prints, per setting: clusters
found, noise share, Hungarian accuracy over assigned posts, and accuracy
counting unassigned posts as wrong; mean over seeds.

    python benchmarks/hdbscan_min_cluster_size.py [--seeds 0 1 2] [--sizes 5 10 15 25 40]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.clean import clean_corpus
from tasks.cluster import HdbscanClusterer
from tasks.config import CleaningSettings, EmbeddingSettings, SamplingSettings
from tasks.embed import new_job
from tasks.embed.cache import EmbeddingCache, text_keys
from tasks.evaluate import evaluate_clusters
from tasks.ingest import load_newsgroups
from tasks.sample import sample_corpus


def cached_vectors(texts: list[str], cache_dir: Path) -> np.ndarray:
    embedder, _ = new_job(EmbeddingSettings(), seed=0).embedder()
    store = EmbeddingCache.open(cache_dir, embedder.describe())
    keys = text_keys(texts)
    found, cached = store.lookup(keys)
    if not found.all():
        missing = np.flatnonzero(~found)
        store.add(keys[missing], embedder.embed([texts[i] for i in missing]))
        found, cached = store.lookup(keys)
    return cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 15, 25, 40])
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/.embedding-cache"))
    args = parser.parse_args()

    archive = os.environ.get("NEWSGROUPS_ARCHIVE")
    cleaned, _ = clean_corpus(load_newsgroups(archive=archive, subset="train"), CleaningSettings())
    rows = []
    for seed in args.seeds:
        sample = sample_corpus(cleaned, SamplingSettings(), seed=seed)
        vectors = cached_vectors(sample["text"].tolist(), args.cache_dir)
        classes = sample["class_name"].to_numpy(object)
        for dims in (0, 5):
            for size in args.sizes:
                labels = HdbscanClusterer(min_cluster_size=size, umap_dimensions=dims, seed=seed).fit_predict(
                    vectors
                )
                metrics = evaluate_clusters(classes, labels).metrics
                rows.append(
                    {
                        "umap_dims": dims,
                        "min_cluster_size": size,
                        "seed": seed,
                        "clusters": len(set(labels.tolist()) - {-1}),
                        "noise_share": metrics["noise_share"],
                        "accuracy_assigned": metrics["hungarian_accuracy"],
                        "accuracy_with_noise": metrics["hungarian_accuracy_with_noise"],
                    }
                )
                print(rows[-1], flush=True)
    table = (
        pd.DataFrame(rows)
        .groupby(["umap_dims", "min_cluster_size"])
        .mean(numeric_only=True)
        .drop(columns="seed")
    )
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
