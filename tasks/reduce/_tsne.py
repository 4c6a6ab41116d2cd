"""openTSNE: the default reducer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.errors import InputError
from tasks.progress import advance_to, progress
from tasks.reduce._base import REDUCERS, Reducer

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

# openTSNE's (and the tutorial's scikit-learn's) early exaggeration phase.
EARLY_EXAGGERATION_ITERATIONS = 250
# Each report makes openTSNE evaluate the KL divergence, so not every iteration.
PROGRESS_EVERY = 50


@REDUCERS.register
class TsneReducer(Reducer):
    """openTSNE with PCA initialisation and a fixed seed, on one thread.

    openTSNE picks Barnes-Hut gradients below 10,000 points and FFT-accelerated
    ones above; benchmarks/tsne_implementations.py measured that choice against
    scikit-learn's TSNE (the tutorial's). One thread keeps the map identical on
    every machine: openTSNE's result changes with its thread count.
    """

    name: ClassVar[str] = "tsne"
    label: ClassVar[str] = "t-SNE"
    package: ClassVar[str] = "openTSNE"

    def __init__(self, *, perplexity: float = 30.0, n_iter: int = 750, seed: int = 0) -> None:
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> TsneReducer:
        """Read perplexity and iterations; use the run's seed."""
        return cls(perplexity=settings.perplexity, n_iter=settings.tsne_iterations, seed=seed)

    def check(self, n_samples: int) -> None:
        """Perplexity must be below the number of points."""
        super().check(n_samples)
        if self.perplexity >= n_samples:
            raise InputError(
                f"The t-SNE perplexity ({self.perplexity:g}) must be less than the number of "
                f"posts ({n_samples}); pass a smaller --perplexity or a larger sample."
            )

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Run early exaggeration (250 iterations) then ``n_iter`` more, logging progress."""
        from openTSNE import TSNE

        total = EARLY_EXAGGERATION_ITERATIONS + self.n_iter
        calls = [0]

        def report(iteration: int, error: float, embedding: np.ndarray) -> None:
            # Both phases number their iterations from 1, so count calls instead.
            calls[0] += 1
            advance_to(calls[0] * PROGRESS_EVERY)

        model = TSNE(
            n_components=2,
            perplexity=self.perplexity,
            n_iter=self.n_iter,
            early_exaggeration_iter=EARLY_EXAGGERATION_ITERATIONS,
            initialization="pca",
            negative_gradient_method="auto",
            random_state=self.seed,
            n_jobs=1,
            callbacks=report,
            callbacks_every_iters=PROGRESS_EVERY,
        )
        with progress("map", total, "t-SNE iterations", description="t-SNE iterations done"):
            embedding = model.fit(vectors)
            advance_to(total)
        log.info("map: t-SNE KL divergence %.3f", embedding.kl_divergence)
        return np.asarray(embedding, dtype=np.float32)
