"""Sample: keep the chosen classes and draw N posts from each, reproducibly."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from tasks.errors import InputError
from tasks.layout import RunLayout, documents_schema, write_table

if TYPE_CHECKING:
    from tasks.config import SamplingSettings


def _matches(name: str, pattern: str) -> bool:
    if pattern in name:
        return True
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _regex_error(pattern: str) -> re.error | None:
    try:
        re.compile(pattern)
    except re.error as error:
        return error
    return None


def select_groups(frame: pd.DataFrame, patterns: list[str]) -> pd.DataFrame:
    """Keep rows whose ``class_name`` contains or matches (regex) any of ``patterns``.

    An empty ``patterns`` keeps every row, as does an unlabelled corpus. A
    pattern that is not a valid regular expression still matches as a substring;
    if it matches nothing at all it is refused, since it is surely a typo.
    """
    if not patterns or frame["class_name"].isna().all():
        return frame
    names = sorted(frame["class_name"].dropna().unique())
    for pattern in patterns:
        error = _regex_error(pattern)
        if error is not None and not any(pattern in name for name in names):
            raise InputError(
                f"The group filter {pattern!r} is not a valid regular expression ({error}) nor part of "
                "a class name; escape special characters with a backslash (for example 'c\\+\\+')."
            )
    chosen = [name for name in names if any(_matches(name, p) for p in patterns)]
    if not chosen:
        raise InputError(
            f"The group filter {patterns} matches none of the {len(names)} classes; "
            f"the classes are: {', '.join(names)}; pass --groups with no value to take every class."
        )
    return frame[frame["class_name"].isin(chosen)]


def _stable_hash(name: str) -> int:
    """A 64-bit integer from ``name`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def sample_per_class(frame: pd.DataFrame, per_class: int, *, seed: int) -> pd.DataFrame:
    """Draw ``per_class`` rows of each class without replacement (0: all rows).

    Each class is shuffled by its own generator, seeded by ``seed`` and the class
    name, and its first ``per_class`` rows are taken. So the draw depends only on
    the seed and the class's rows (not their order, nor which other classes are
    selected), and a larger sample contains the smaller one: a run with 300 per
    class re-uses the 150 of an earlier run (and their cached embeddings).
    An unlabelled corpus is one class, so ``per_class`` caps its size.
    Returns rows sorted by class name, then doc_id.
    """
    keys = frame["class_name"].fillna("")
    ordered = frame.assign(_key=keys).sort_values(["_key", "doc_id"], kind="stable")
    parts = []
    for name, group in ordered.groupby("_key", sort=True):
        if per_class and len(group) < per_class:
            label = f"The class {name!r}" if name else "The corpus"
            raise InputError(
                f"{label} has only {len(group)} posts after cleaning, fewer than the "
                f"{per_class} per class asked for; pass --per-class {len(group)} or less (0 takes all)."
            )
        if per_class:
            rng = np.random.default_rng([seed, _stable_hash(name)])
            group = group.iloc[np.sort(rng.permutation(len(group))[:per_class])]
        parts.append(group)
    return pd.concat(parts).drop(columns="_key").reset_index(drop=True)


def sample_corpus(frame: pd.DataFrame, settings: SamplingSettings, *, seed: int) -> pd.DataFrame:
    """:func:`select_groups` then :func:`sample_per_class`.

    Unset fields take everything; the flow first fills them in for its source
    (:meth:`tasks.config.SamplingSettings.resolved`).
    """
    if frame.empty:
        raise InputError("No posts are left after cleaning; check the corpus and --max-chars.")
    return sample_per_class(select_groups(frame, settings.groups or []), settings.per_class or 0, seed=seed)


def class_names(sample: pd.DataFrame) -> np.ndarray | None:
    """The sample's true classes (n,), or None unless every sampled post has one (an empty sample has none).

    The one rule for whether a sample is scored against classes, and drawn by class.
    """
    labelled = bool(len(sample)) and bool(sample["class_name"].notna().all())
    return sample["class_name"].to_numpy(dtype=object) if labelled else None


@task(name="sample", task_run_name="sample")
def sample_task(
    frame: pd.DataFrame, settings: SamplingSettings, *, seed: int, layout: RunLayout
) -> pd.DataFrame:
    """Prefect task: :func:`sample_corpus`, persisted to ``sample.parquet``."""
    sample = sample_corpus(frame, settings, seed=seed)
    write_table(sample, layout.sample, documents_schema(sample.columns))
    return sample
