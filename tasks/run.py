"""One run's lifecycle: its folder, the time of each stage, and the manifest written last.

``with open_run(settings) as run:`` creates and locks the run folder. Leaving
the block normally writes ``manifest.json`` (which marks the folder finished)
and lets go of the folder. A :class:`~tasks.errors.PipelineError` (the run
cannot finish as asked: bad input, a refused key) removes the folder, so no
partial folder is left for a later run to meet; any other failure, an
interrupt included, leaves it unfinished, to be reclaimed by a re-run with the
same name. A flow can open several runs, one per variant, without any folder
or manifest code of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any, TypeVar

from packaging.requirements import Requirement
from prefect import Task
from prefect.context import FlowRunContext

from tasks.base import Settings
from tasks.environment import log_stages
from tasks.errors import PipelineError
from tasks.layout import RunLayout, create_run, default_run_name, file_sha256, release_run, write_json
from tasks.text import console_text

DISTRIBUTION = "newsgroups-map"
# Packages whose versions shape results but come in through others (no requirement names them).
INDIRECT_PACKAGES = ("torch", "transformers")

T = TypeVar("T")


@dataclass
class Run:
    """A run in progress: its folder, stage timings and what the manifest will report.

    Attributes
    ----------
    layout : RunLayout
        Paths of the run's files.
    settings : Settings
        Every setting of the run (a :class:`tasks.config.RunSettings`).
    timings_s : dict of str to float
        Seconds per stage, filled by :meth:`step`.
    report : dict
        Manifest sections filled by :meth:`record` (``counts``, ``metrics``, ...).
    manifest : dict or None
        The manifest, once the run has finished.
    """

    layout: RunLayout
    settings: Settings
    timings_s: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    keep: bool = True

    def discard(self) -> None:
        """Leave no folder behind when the block ends (a run that only planned)."""
        self.keep = False

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.layout.root.name

    def step(self, stage: str, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``function(*args, **kwargs)`` as the stage ``stage`` (see :func:`call`), timing it."""
        start = time.perf_counter()
        try:
            return call(function, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            self.timings_s[stage] = round(self.timings_s.get(stage, 0.0) + elapsed, 3)

    def record(self, **sections: Any) -> None:
        """Add manifest sections; a dict section is merged into what is already there."""
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(self.report.get(key), dict):
                self.report[key] = {**self.report[key], **value}
            else:
                self.report[key] = value


def call(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call a Prefect task as a task inside a flow run, and as its plain function outside one.

    So a flow's body also runs as a plain function: the command line answers
    ``--plan`` with the flow's own first steps, without starting a Prefect server.
    """
    if isinstance(function, Task) and FlowRunContext.get() is None:
        return function.fn(*args, **kwargs)
    return function(*args, **kwargs)


@contextlib.contextmanager
def open_run(settings: Settings, *, label: str | None = None) -> Iterator[Run]:
    """Create and lock the run folder of ``settings``; write the manifest when the block succeeds.

    ``settings.output`` names the folder (``output_dir``, ``run_name``; a missing
    run name becomes the UTC time, ``label`` and a random suffix).
    """
    log_stages()
    output = settings.output  # type: ignore[attr-defined]
    layout = create_run(output.output_dir, output.run_name or default_run_name(label or "run"))
    run = Run(layout, settings)
    try:
        yield run
    except PipelineError:
        release_run(layout, discard=True)
        raise
    except BaseException:
        release_run(layout)
        raise
    if not run.keep:
        release_run(layout, discard=True)
        run.manifest = {**manifest_of(run), "files": [], "planned_only": True}
        return
    try:
        run.manifest = write_manifest(run)
    finally:
        release_run(layout)


def manifest_of(run: Run) -> dict[str, Any]:
    """The manifest of ``run`` as it stands, without its file list."""
    return {
        "run_name": run.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": run.settings.model_dump(mode="json"),
        "timings_s": run.timings_s,
        **run.report,
        "versions": package_versions(),
    }


def write_manifest(run: Run) -> dict[str, Any]:
    """Write ``manifest.json``; called last, once every other file of the run is complete.

    It lists every file with its sha256, so a later run that builds on this
    one (an update) can check the files are still the ones written.
    """
    files = sorted(p.name for p in run.layout.root.iterdir() if not p.name.startswith("."))
    manifest = {
        **manifest_of(run),
        "files": files,
        "checksums": {name: file_sha256(run.layout.root / name) for name in files},
    }
    write_json(manifest, run.layout.manifest)
    return manifest


@cache
def result_packages() -> tuple[str, ...]:
    """The packages this project requires, with every extra, plus those that come in indirectly.

    Derived from the installed project's metadata, so a new dependency is
    recorded without anyone listing it twice.
    """
    names = []
    for line in requires(DISTRIBUTION) or []:
        requirement = Requirement(line)
        # The test tools do not shape results; the "all" extra names the project itself.
        if requirement.name != DISTRIBUTION and "test" not in str(requirement.marker or ""):
            names.append(requirement.name)
    return tuple(dict.fromkeys([*names, *INDIRECT_PACKAGES]))


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the results (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in result_packages():
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def interrupted(embedding: Any, output_dir: Path) -> str:
    """The line printed when a run is interrupted: what the cache kept, and how to continue.

    ``embedding`` is the run's :class:`tasks.config.EmbeddingSettings`.
    """
    from tasks.embed.cache import default_cache_dir, texts_stored

    stored = texts_stored()
    if not embedding.cache:
        return (
            "interrupted: the cache is off (--no-cache), so nothing embedded was kept; "
            "run the same command again to start over."
        )
    if not stored:
        return (
            "interrupted: no text was embedded yet, so nothing was kept; "
            "run the same command again to start over."
        )
    cache_dir = embedding.cache_dir or default_cache_dir(output_dir)
    return (
        f"interrupted: the {stored} texts embedded so far are kept in the embedding cache {cache_dir}; "
        "run the same command again to continue from there."
    )


def summary(manifest: dict[str, Any]) -> str:
    """What the command line prints when a flow returns ``manifest``: the plan, or the run folder and scores."""
    if manifest.get("planned_only"):
        from tasks.embed.plan import EmbeddingPlan

        plans = [EmbeddingPlan(**plan).summary() for plan in manifest.get("plans") or [manifest["plan"]]]
        return "\n".join(
            [*plans, "Nothing was embedded (--plan); run the same command without --plan to do it."]
        )
    metrics = manifest.get("metrics", {})
    root = Path(manifest["parameters"]["output"]["output_dir"]) / manifest["run_name"]
    lines = ["", f"run folder: {root}"]
    if "map.html" in manifest.get("files", []):
        lines.append(f"interactive map: {(root / 'map.html').resolve()}")
    for row in manifest.get("comparison", []):
        accuracy = "-" if row["hungarian_accuracy"] is None else f"{row['hungarian_accuracy']:.3f}"
        noise = f" ({row['noise_share']:.0%} unassigned)" if row["noise_share"] else ""
        lines.append(
            f"  {row['embedder'] + ' + ' + row['clusterer']:<28} {accuracy}{noise}   {row['seconds']:.1f} s"
        )
    if "hungarian_accuracy" in metrics:
        lines += [
            f"  {console_text(name):<28} {value:.3f}" for name, value in metrics["per_class_accuracy"].items()
        ]
        lines.append(
            f"  {'hungarian accuracy':<28} {metrics['hungarian_accuracy']:.3f}   "
            f"ARI {metrics['ari']:.3f}   NMI {metrics['nmi']:.3f}"
        )
        if metrics.get("noise_share"):
            lines.append(
                f"  {metrics['noise_share']:.1%} of posts unassigned; counting them as wrong: "
                f"{metrics['hungarian_accuracy_with_noise']:.3f}"
            )
    return "\n".join(lines)
