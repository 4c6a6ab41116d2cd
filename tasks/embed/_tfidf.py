"""TF-IDF + truncated SVD baseline: fast, no model, fitted on the corpus it embeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.embed._base import EMBEDDERS, Embedder, l2_normalise

if TYPE_CHECKING:
    from tasks.base import Settings


@EMBEDDERS.register
class TfidfEmbedder(Embedder):
    """TF-IDF (sublinear tf, English stop words) reduced by truncated SVD, L2-normalised.

    Parameters
    ----------
    dimensions : int, default=256
        SVD components; capped at ``min(n_texts, n_terms) - 1`` for small corpora.
    seed : int, default=0
        Seed of the randomized SVD.
    """

    name: ClassVar[str] = "tfidf"
    # The vocabulary and the SVD are fitted on the whole corpus: one batch.
    default_batch_size: ClassVar[int | None] = None
    cacheable: ClassVar[bool] = False
    typical_texts_per_second: ClassVar[float | None] = 2000.0

    def __init__(self, *, dimensions: int = 256, seed: int = 0) -> None:
        self.dimensions = dimensions
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> TfidfEmbedder:
        """Read ``tfidf_dimensions``; the SVD uses the run's seed."""
        return cls(dimensions=settings.tfidf_dimensions, seed=seed)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Fit on ``texts`` and embed them; returns (len(texts), k) float32."""
        return self.fit(texts)[1]

    def fit(self, texts: Sequence[str]) -> tuple[TfidfState, np.ndarray]:
        """Fit on ``texts``: the fitted state (to embed later texts alike) and the texts' vectors."""
        # Imported here: scikit-learn takes a second or more, and the command line imports this
        # module (through tasks.config) to refuse a bad flag before any of it is needed.
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        # Terms in a single post are noise in a real corpus but all there is in a tiny one.
        min_df, max_df = (2, 0.5) if len(texts) >= 50 else (1, 1.0)
        tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=min_df, max_df=max_df)
        matrix = tfidf.fit_transform(texts)
        components = max(1, min(self.dimensions, matrix.shape[0] - 1, matrix.shape[1] - 1))
        svd = TruncatedSVD(n_components=components, random_state=self.seed)
        vectors = l2_normalise(svd.fit_transform(matrix))
        vocabulary = sorted(tfidf.vocabulary_, key=tfidf.vocabulary_.get)
        state = TfidfState(vocabulary, tfidf.idf_.astype(np.float64), svd.components_.astype(np.float64))
        return state, vectors

    def describe(self) -> dict[str, Any]:
        """Requested dimensions (the fitted count may be lower on small corpora)."""
        return {"embedder": self.name, "model": "tfidf-svd", "dimensions": self.dimensions}


@dataclass(frozen=True)
class TfidfState:
    """A fitted TF-IDF-SVD as plain data: it embeds new texts as the fit embedded its own.

    Attributes
    ----------
    vocabulary : list of str
        The terms, in column order.
    idf : ndarray, shape (n_terms,)
        Inverse document frequencies.
    components : ndarray, shape (k, n_terms)
        The SVD's components.
    """

    vocabulary: list[str]
    idf: np.ndarray
    components: np.ndarray

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length (len(texts), k) float32 vectors of ``texts`` in the fitted space."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", vocabulary=self.vocabulary)
        tfidf.idf_ = self.idf
        return l2_normalise(np.asarray(tfidf.transform(texts) @ self.components.T))
