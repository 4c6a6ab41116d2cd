"""The base of every settings model, kept apart so stage modules never import ``tasks.config``.

``tasks.config`` imports the backend registries (their names are the valid
choices); backends read settings only through this base type, so the imports
run one way: config -> stages -> base.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Base of the stage models: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
