"""PCA: the first two principal components."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.reduce._base import REDUCERS, Reducer

if TYPE_CHECKING:
    from tasks.base import Settings


@REDUCERS.register
class PcaReducer(Reducer):
    """The first two principal components: instant, linear, deterministic."""

    name: ClassVar[str] = "pca"
    label: ClassVar[str] = "PCA"
    package: ClassVar[str] = "scikit-learn"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> PcaReducer:
        """PCA has no options beyond the seed."""
        return cls(seed=seed)

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Project ``vectors`` on their first two principal components."""
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=self.seed).fit_transform(vectors).astype(np.float32)
