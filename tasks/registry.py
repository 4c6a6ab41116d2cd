"""Name -> class registries for the pluggable stages (embedders, reducers, clusterers)."""

from __future__ import annotations

from typing import Generic, TypeVar

from tasks.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named set of backend classes for one stage.

    ``kind`` names the stage in messages ("embedder", "reducer", ...).
    ``declares`` lists the class attributes every backend of the stage must set
    (besides ``name``), so what a backend is and needs is checked in one place,
    when it is registered, not discovered by the flow at run time.
    """

    def __init__(self, kind: str, *, declares: dict[str, type | tuple[type, ...]] | None = None) -> None:
        self.kind = kind
        self.declares = {"name": str, **(declares or {})}
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under its ``name`` once its declarations are checked."""
        for attribute, kind in self.declares.items():
            value = getattr(cls, attribute, None)
            if not isinstance(value, kind):
                raise TypeError(
                    f"The {self.kind} {cls.__name__} must declare {attribute!r} as a class attribute "
                    f"of type {kind}; got {value!r}."
                )
        self._classes[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._classes)

    def classes(self) -> tuple[type[T], ...]:
        """The registered classes, in registration order."""
        return tuple(self._classes.values())

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name lists the valid ones."""
        try:
            return self._classes[name]
        except KeyError:
            valid = ", ".join(repr(n) for n in self._classes)
            raise InputError(f"The {self.kind} must be one of {valid}. Got {name!r} instead.") from None
