"""Accuracy of the tutorial protocol per embedder over several seeds.

The tutorial's protocol: train split, the four sci.* groups, 150 posts each,
tutorial cleaning, KMeans with k=4 on the embeddings. Each seed draws a new
sample and seeds KMeans. Prints per-class accuracy (one-to-one matching), the
Hungarian accuracy, ARI and NMI, then the mean and minimum per embedder.

    python benchmarks/tutorial_accuracy.py [--seeds 0 1 2 3 4] [--embedders local tfidf]
"""

from __future__ import annotations

import argparse

import numpy as np

from tasks.clean import clean_corpus
from tasks.cluster import build_clusterer
from tasks.config import CleaningSettings, ClusterSettings, EmbeddingSettings, SamplingSettings
from tasks.embed import new_job
from tasks.evaluate import evaluate_clusters
from tasks.ingest import load_newsgroups
from tasks.sample import sample_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--embedders", nargs="+", default=["local", "tfidf"])
    args = parser.parse_args()

    cleaned, _ = clean_corpus(load_newsgroups(subset="train"), CleaningSettings())
    print(
        f"{'embedder':<8} | {'seed':>4} | {'crypt':>6} | {'electr':>6} | {'med':>6} | {'space':>6} | {'hungarian':>9} | {'ARI':>5} | {'NMI':>5}"
    )
    print("-" * 80)
    for name in args.embedders:
        scores = []
        for seed in args.seeds:
            sample = sample_corpus(cleaned, SamplingSettings(), seed=seed)
            embedder, _ = new_job(EmbeddingSettings(embedder=name), seed=seed).embedder()
            vectors = embedder.embed(sample["text"].tolist())
            clusterer = build_clusterer(ClusterSettings(), n_classes=4, seed=seed)
            metrics = evaluate_clusters(
                sample["class_name"].to_numpy(object), clusterer.fit_predict(vectors)
            ).metrics
            per_class = " | ".join(f"{v:6.3f}" for v in metrics["per_class_accuracy"].values())
            print(
                f"{name:<8} | {seed:>4} | {per_class} | {metrics['hungarian_accuracy']:9.3f} | {metrics['ari']:5.3f} | {metrics['nmi']:5.3f}"
            )
            scores.append(metrics["hungarian_accuracy"])
        print(
            f"{name:<8} | mean hungarian {np.mean(scores):.3f}, min {np.min(scores):.3f} over {len(scores)} seeds"
        )


if __name__ == "__main__":
    main()
