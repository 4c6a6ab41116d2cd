"""The run manifest: parameters, counts, timings, versions and metrics, written last."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tasks.layout import RunLayout, write_json

PACKAGES = (
    "prefect",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "openTSNE",
    "sentence-transformers",
    "torch",
    "transformers",
    "google-genai",
    "matplotlib",
    "seaborn",
)


class Stopwatch:
    """Seconds per stage: ``with watch("embed"): ...`` adds to ``watch.seconds["embed"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the block as ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 3)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the results (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def write_manifest(
    layout: RunLayout,
    *,
    parameters: dict[str, Any],
    counts: dict[str, Any],
    timings_s: dict[str, float],
    metrics: dict[str, Any],
    embedding: dict[str, Any],
) -> dict[str, Any]:
    """Write ``manifest.json``; call it last, once every other file of the run is complete."""
    manifest = {
        "run_name": layout.root.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": parameters,
        "counts": counts,
        "timings_s": timings_s,
        "embedding": embedding,
        "metrics": metrics,
        "versions": package_versions(),
        "files": sorted(p.name for p in layout.root.iterdir() if not p.name.startswith(".")),
    }
    write_json(manifest, layout.manifest)
    return manifest
