"""Checks before the money is spent: settings on their own, then against the sample.

:func:`check_settings` runs before any data is read (a missing package or API
key fails the run in its first second); :func:`check_sample` runs right after
sampling, before embedding, and builds the reducer and the clusterer once for
the stages that use them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task

from tasks.clean import dropped_summary
from tasks.cluster import Clusterer, build_clusterer
from tasks.config import MAX_CLASSES, PRESETS, RunSettings
from tasks.embed import EMBEDDERS
from tasks.errors import InputError
from tasks.execution import check_execution
from tasks.logs import run_logger
from tasks.reduce import Reducer, build_reducer
from tasks.sample import class_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backends:
    """What the sample needs, checked: its classes, and the reducer and clusterer built for it.

    Attributes
    ----------
    n_classes : int
        Number of distinct classes in the sample.
    reducer : Reducer
    clusterer : Clusterer
    """

    n_classes: int
    reducer: Reducer
    clusterer: Clusterer


def preset_summary(settings: RunSettings) -> str | None:
    """What the run's preset set, as ``group.field=value`` pairs (None without a preset)."""
    if not settings.preset:
        return None
    chosen = [
        f"{group}.{name}={getattr(getattr(settings, group), name)}"
        for group, values in PRESETS[settings.preset].items()
        for name in values
    ]
    return f"preset {settings.preset}: " + (", ".join(chosen) or "the defaults")


def check_settings(settings: RunSettings) -> dict[str, Any]:
    """Refuse settings that cannot work whatever the data: the embedder and the task runner must be ready.

    Also logs what a preset resolved to, before anything else happens. Returns
    what the embedder's check resolved (its API key), for the plan to build the
    embedder with (:func:`tasks.embed.plan.plan_sample`).
    """
    if summary := preset_summary(settings):
        run_logger(log).info("settings: %s", summary)
    resolved = EMBEDDERS.get(settings.embedding.embedder).check_ready(settings.embedding)
    check_execution(settings.execution)
    return resolved


def check_sample(
    sample: pd.DataFrame, settings: RunSettings, *, dropped: dict[str, int] | None = None
) -> Backends:
    """Build the reducer and the clusterer for ``sample`` and check they can handle its size.

    Raises :class:`~tasks.errors.InputError` (more than
    :data:`~tasks.config.MAX_CLASSES` classes, a perplexity at or above the
    number of posts, more clusters than posts, ...) before anything is embedded.
    ``dropped`` is the cleaning report: a refusal of a sample too small for the
    reducer or the clusterer then says what cleaning dropped.
    """
    n_classes = int(sample["class_name"].nunique())
    if n_classes > MAX_CLASSES:
        raise InputError(
            f"The sample has {n_classes:,} classes, more than the {MAX_CLASSES} a map can tell apart "
            f"(--label-column); keep at most {MAX_CLASSES} with --groups, or merge classes in the corpus."
        )
    try:
        reducer = build_reducer(settings.mapping, seed=settings.seed)
        reducer.check(len(sample))
        # Clusterers that need a number take the number of classes only when every post has one.
        scored = n_classes if class_names(sample) is not None else 0
        clusterer = build_clusterer(settings.clustering, n_classes=scored, seed=settings.seed)
        clusterer.check(len(sample))
    except InputError as error:
        if why := dropped_summary(dropped):
            raise InputError(f"{error} {why}") from None
        raise
    return Backends(n_classes, reducer, clusterer)


@task(name="check", task_run_name="check")
def check_task(
    sample: pd.DataFrame, settings: RunSettings, *, dropped: dict[str, int] | None = None
) -> Backends:
    """Prefect task: :func:`check_sample`."""
    return check_sample(sample, settings, dropped=dropped)
