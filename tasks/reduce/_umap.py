"""UMAP (umap-learn, an optional extra); :func:`umap_class` also serves HDBSCAN's projection."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.errors import InputError, MissingDependencyError
from tasks.reduce._base import REDUCERS, Reducer

if TYPE_CHECKING:
    from tasks.base import Settings

UMAP_INSTALL = "UMAP needs umap-learn; install it with: pip install 'umap-learn>=0.5.12' (or the project's [umap] extra)."


def umap_class() -> type:
    """``umap.UMAP``, or a :class:`MissingDependencyError` that says how to install it."""
    try:
        from umap import UMAP
    except ImportError as error:
        raise MissingDependencyError(UMAP_INSTALL) from error
    keep_compiled_code(("umap", "pynndescent"))
    return UMAP


@functools.cache
def keep_compiled_code(packages: tuple[str, ...]) -> None:
    """Let numba keep on disk what it compiles for ``packages``' loaded modules, as ``cache=True`` does.

    umap-learn leaves most of its numba functions uncached, so each process that
    fits a UMAP compiled them again: 8.6 s of a 100-post fit on these machines,
    0.3 s once they are kept (docs/scaling.md). numba stores them beside the
    package's source, or in the user's cache folder where that is read-only
    (``NUMBA_CACHE_DIR`` moves them), keyed by the source file and this CPU, so an
    upgrade or another machine compiles afresh.
    """
    from numba.core.dispatcher import Dispatcher

    functions = {
        value
        for name, module in list(sys.modules.items())
        if module is not None and name.partition(".")[0] in packages
        for value in vars(module).values()
        if isinstance(value, Dispatcher)
    }
    for function in functions:
        function.enable_caching()


@REDUCERS.register
class UmapReducer(Reducer):
    """umap-learn with the cosine metric and a fixed seed (which makes it single-threaded and repeatable).

    UMAP keeps more of the global layout than t-SNE (clusters that are near in
    the embedding stay near on the map) and scales to large corpora.
    """

    name: ClassVar[str] = "umap"
    label: ClassVar[str] = "UMAP"
    package: ClassVar[str] = "umap-learn"

    def __init__(self, *, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> UmapReducer:
        """Read ``umap_neighbors`` and ``umap_min_dist``; use the run's seed."""
        umap_class()  # a missing package is refused at the check step, before embedding
        return cls(n_neighbors=settings.umap_neighbors, min_dist=settings.umap_min_dist, seed=seed)

    def check(self, n_samples: int) -> None:
        """The neighbourhood must be smaller than the sample."""
        super().check(n_samples)
        if self.n_neighbors >= n_samples:
            raise InputError(
                f"The UMAP neighbourhood ({self.n_neighbors}) must be less than the number of posts "
                f"({n_samples}); pass a smaller --umap-neighbors or a larger sample."
            )

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Embed ``vectors`` in 2-D with UMAP."""
        model = umap_class()(
            n_components=2,
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            metric="cosine",
            random_state=self.seed,
        )
        return np.asarray(model.fit_transform(vectors), dtype=np.float32)
