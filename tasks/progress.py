"""Progress of a long stage: log lines with rate and ETA, mirrored in a Prefect progress artifact.

A stage opens one with :func:`progress`; code deep inside it (an openTSNE
callback, a batch loop) reports through :func:`advance_to` without being handed
anything, the way the embedders' counters work (``tasks.embed._base.tallying``).
Outside a Prefect run the lines go to the standard logger and no artifact is made,
so stages stay usable, and testable, without Prefect. Prefect is imported when a
stage opens a progress, not with this module: the backends' modules import it,
and the command line reads their names before Prefect loads.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from tasks.logs import run_logger

log = logging.getLogger(__name__)

_CURRENT: ContextVar[Progress | None] = ContextVar("progress", default=None)
LINE_EVERY_PERCENT = 10.0
LINE_EVERY_S = 5.0
"""A line is logged once both this share and these seconds have passed since the last one (and at the end)."""


class Progress:
    """``done`` of ``total`` ``unit`` of one stage, with rate and ETA.

    ``done`` may start above 0 (texts found in the cache): the rate counts only
    what this run did, from the first report on, so set-up before the first
    unit of work (t-SNE's affinities, loading a model) does not slow the rate
    down. A line is logged at most once per :data:`LINE_EVERY_PERCENT` and
    :data:`LINE_EVERY_S`, and at the end; the artifact (key ``<stage>-progress``)
    follows every report. ``clock`` is ``time.monotonic``, replaceable in tests.
    """

    def __init__(
        self,
        stage: str,
        total: int,
        unit: str,
        *,
        done: int = 0,
        description: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage, self.total, self.unit = stage, max(total, 1), unit
        self.done = done
        self._clock = clock
        self._first: tuple[float, int] | None = None  # (time, done) at the first report
        self._last_line = (clock(), self.percent)
        self.artifact_id = None
        self.logger = run_logger(log)
        if self.logger is not log:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = create_progress_artifact(
                progress=self.percent, key=f"{stage}-progress", description=description or f"{stage}: {unit}"
            )

    @property
    def percent(self) -> float:
        """Share done, 0-100."""
        return 100.0 * self.done / self.total

    def advance(self, count: int) -> None:
        """``count`` more units done."""
        self.advance_to(self.done + count)

    @property
    def rate(self) -> float:
        """Units per second since the first report (0 until a second report)."""
        if self._first is None:
            return 0.0
        since, done_then = self._first
        elapsed = self._clock() - since
        return (self.done - done_then) / elapsed if elapsed > 0 else 0.0

    def advance_to(self, done: int) -> None:
        """``done`` units done in all; updates the artifact, and logs a line when one is due."""
        self.done = min(done, self.total)
        now = self._clock()
        if self._first is None:
            self._first = (now, self.done)
        if self.artifact_id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.artifact_id, progress=self.percent)
        last_at, last_percent = self._last_line
        due = now - last_at >= LINE_EVERY_S and self.percent - last_percent >= LINE_EVERY_PERCENT
        if not (due or (self.done == self.total and last_percent < 100)):
            return
        self._last_line = (now, self.percent)
        rate = self.rate
        # The first line has no rate yet: it counts from the first report, not from the stage's start.
        pace = (
            f"{rate:.1f} {self.unit}/s, about {(self.total - self.done) / rate:.0f} s left"
            if rate > 0
            else "rate not known yet"
        )
        self.logger.info(
            "%s: %d/%d %s (%.0f%%), %s", self.stage, self.done, self.total, self.unit, self.percent, pace
        )


@contextlib.contextmanager
def progress(
    stage: str,
    total: int,
    unit: str,
    *,
    done: int = 0,
    description: str = "",
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Progress]:
    """Open the progress of ``stage``; :func:`advance_to` reports to it until the block ends."""
    current = Progress(stage, total, unit, done=done, description=description, clock=clock)
    token = _CURRENT.set(current)
    try:
        yield current
    finally:
        _CURRENT.reset(token)


def advance_to(done: int) -> None:
    """Report ``done`` units to the stage's open progress; nothing happens when none is open."""
    if (current := _CURRENT.get()) is not None:
        current.advance_to(done)
