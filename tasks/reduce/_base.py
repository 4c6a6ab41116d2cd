"""The reducer interface and its registry: embeddings (n, d) -> a 2-D map (n, 2)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.errors import InputError
from tasks.registry import Registry

if TYPE_CHECKING:
    from tasks.base import Settings

REDUCERS: Registry[Reducer] = Registry("reducer", declares={"label": str, "package": str})


class Reducer(ABC):
    """Maps vectors to 2-D; sklearn's ``fit_transform`` convention.

    Attributes
    ----------
    name : str
        Registry name, used on the command line (``--reducer NAME``).
    label : str
        Display name, for plot axes and titles ("t-SNE").
    package : str
        The distribution that computes the map; its version is part of a
        stored map's key, as an upgrade may change the map.

    A reducer's settings are its instance attributes (also part of the key).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    package: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, seed: int) -> Reducer:
        """Build the reducer from the run's map settings."""

    def check(self, n_samples: int) -> None:
        """Raise :class:`InputError` if ``n_samples`` points cannot be mapped."""
        if n_samples < 3:
            raise InputError(f"A map needs at least 3 posts; the sample has {n_samples}.")

    @abstractmethod
    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """Map ``vectors`` (n, d) to float32 (n, 2)."""


def build_reducer(settings: Settings, *, seed: int) -> Reducer:
    """The reducer ``settings.reducer`` names, built from the map settings and the run's seed."""
    return REDUCERS.get(settings.reducer).from_settings(settings, seed=seed)
