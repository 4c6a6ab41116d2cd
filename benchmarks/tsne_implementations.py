"""openTSNE (Barnes-Hut and FFT gradients) versus scikit-learn's TSNE, side by side.

Embeds 20 Newsgroups posts with the TF-IDF baseline (fast; t-SNE cost depends on
N, not on where the vectors came from), then maps the same vectors with each
implementation at growing N and prints seconds and trustworthiness (k=10, where
N is small enough to compute it). Everything runs on one thread
(OMP_NUM_THREADS=1), so the comparison holds on a busy machine.

    python benchmarks/tsne_implementations.py [--sizes 600 2000 5000 11000]
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy/sklearn start their thread pools

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from openTSNE import TSNE  # noqa: E402
from sklearn.manifold import TSNE as SklearnTSNE  # noqa: E402
from sklearn.manifold import trustworthiness  # noqa: E402

from tasks.config import EmbeddingSettings  # noqa: E402
from tasks.embed import new_job  # noqa: E402
from tasks.ingest import load_newsgroups  # noqa: E402

IMPLEMENTATIONS = {
    "openTSNE BH": lambda x: TSNE(
        negative_gradient_method="bh", initialization="pca", random_state=0, n_jobs=1
    ).fit(x),
    "openTSNE FFT": lambda x: TSNE(
        negative_gradient_method="fft", initialization="pca", random_state=0, n_jobs=1
    ).fit(x),
    "sklearn BH": lambda x: SklearnTSNE(init="pca", random_state=0).fit_transform(x),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[600, 2000, 5000, 11000])
    parser.add_argument("--subset", default="train")
    args = parser.parse_args()

    posts = load_newsgroups(subset=args.subset)
    order = np.random.default_rng(0).permutation(len(posts))
    texts = posts["text"].iloc[order[: max(args.sizes)]].tolist()
    embedder, _ = new_job(EmbeddingSettings(embedder="tfidf", tfidf_dimensions=128), seed=0).embedder()
    vectors = embedder.embed(texts)

    names = list(IMPLEMENTATIONS)
    print(
        f"{'N':>6} | "
        + " | ".join(f"{name + ' s':>14}" for name in names)
        + " | trustworthiness "
        + " / ".join(names)
    )
    for n in args.sizes:
        x = vectors[:n]
        seconds, maps = [], []
        for run in IMPLEMENTATIONS.values():
            start = time.perf_counter()
            maps.append(np.asarray(run(x)))
            seconds.append(time.perf_counter() - start)
        trust = " / ".join(f"{trustworthiness(x, m, n_neighbors=10):.3f}" for m in maps) if n <= 5000 else "-"
        print(f"{n:>6} | " + " | ".join(f"{s:14.1f}" for s in seconds) + f" | {trust}")


if __name__ == "__main__":
    main()
