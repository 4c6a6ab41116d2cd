"""Name -> class registries for the pluggable stages (embedders, reducers, clusterers)."""

from __future__ import annotations

from typing import Generic, TypeVar

from tasks.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named set of backend classes for one stage.

    ``kind`` names the stage in messages ("embedder", "reducer", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under its ``name`` class attribute."""
        self._classes[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._classes)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name lists the valid ones."""
        try:
            return self._classes[name]
        except KeyError:
            valid = ", ".join(repr(n) for n in self._classes)
            raise InputError(f"The {self.kind} must be one of {valid}. Got {name!r} instead.") from None
