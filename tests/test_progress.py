"""Progress of long stages: log lines with rate and ETA, and a Prefect progress artifact inside a run."""

from __future__ import annotations

import itertools
import logging
from functools import partial

import numpy as np
import pytest
from prefect import flow, task

from tasks.progress import Progress, advance_to, progress
from tasks.reduce import TsneReducer


def _points() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)


class Ticking:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Manual:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog, stage: str = "map") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{stage}: ")]


def test_tsne_reports_its_iterations_through_both_phases_without_prefect(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    # Seconds pass between reports, so every report is due for a line.
    monkeypatch.setattr("tasks.reduce._tsne.progress", partial(progress, clock=Ticking(6.0)))
    TsneReducer(perplexity=5, n_iter=100, seed=0).fit_transform(_points())
    lines = _lines(caplog)
    assert any(line.startswith("map: 50/350 t-SNE iterations (14%)") for line in lines)
    assert any(line.startswith("map: 300/350 t-SNE iterations") for line in lines)  # past early exaggeration
    assert [line for line in lines if "350/350" in line] == [lines[-2]]  # the end, once
    assert lines[-2].startswith("map: 350/350 t-SNE iterations (100%)")
    assert "KL divergence" in lines[-1]


def test_a_short_tsne_logs_one_line_at_the_end(caplog):
    caplog.set_level(logging.INFO)
    TsneReducer(perplexity=5, n_iter=100, seed=0).fit_transform(_points())  # well under 5 s
    (line, kl) = _lines(caplog)
    assert line.startswith("map: 350/350 t-SNE iterations (100%)") and "KL divergence" in kl


def test_the_rate_counts_from_the_first_unit_of_work_not_from_the_set_up(caplog):
    caplog.set_level(logging.INFO)
    clock = Manual()
    bar = Progress("map", 600, "steps", clock=clock)
    clock.now = 100.0  # set-up (t-SNE's affinities) before the first unit of work
    bar.advance_to(60)
    assert bar.rate == 0.0
    clock.now = 106.0
    bar.advance_to(420)  # 360 steps in 6 s: 60 a second, 3 s left (from the set-up on it would be 45 s)
    assert bar.rate == pytest.approx(60.0)
    first, second = _lines(caplog)
    assert first == "map: 60/600 steps (10%), rate not known yet"
    assert second == "map: 420/600 steps (70%), 60.0 steps/s, about 3 s left"


def test_texts_found_in_the_cache_do_not_count_towards_the_rate(caplog):
    caplog.set_level(logging.INFO)
    clock = Manual()
    bar = Progress("embed", 1000, "texts", done=900, clock=clock)
    clock.now = 10.0
    bar.advance_to(950)
    clock.now = 20.0
    bar.advance_to(1000)
    assert bar.rate == pytest.approx(5.0)  # 50 texts in the 10 s after the first batch
    assert _lines(caplog, "embed")[-1] == "embed: 1000/1000 texts (100%), 5.0 texts/s, about 0 s left"


@pytest.mark.parametrize(
    ("seconds", "most"),
    [(1.0, 1), (30.0, 7), (1000.0, 11)],
    ids=["one-second", "half-a-minute", "a-quarter-hour"],
)
def test_lines_come_at_most_once_per_10_percent_and_5_seconds_and_at_the_end(caplog, seconds, most):
    caplog.set_level(logging.INFO)
    clock = Manual()
    bar = Progress("map", 1000, "steps", clock=clock)
    for done in range(1, 1001):
        clock.now = seconds * done / 1000
        bar.advance_to(done)
    lines = _lines(caplog)
    assert 1 <= len(lines) <= most, lines
    assert lines[-1].startswith("map: 1000/1000 steps (100%)")
    percents = [int(line.split("(")[1].split("%")[0]) for line in lines]
    assert all(b - a >= 10 for a, b in itertools.pairwise([0, *percents]))


def test_reporting_with_no_open_progress_does_nothing(caplog):
    caplog.set_level(logging.INFO)
    advance_to(5)
    assert not caplog.records


def test_a_stage_in_a_run_leaves_a_progress_artifact_at_100_percent():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    @task
    def slow_stage() -> None:
        with progress("map", 4, "steps", description="steps done"):
            for done in range(1, 5):
                advance_to(done)

    @flow
    def run_one_stage() -> None:
        slow_stage()

    state = run_one_stage(return_state=True)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert artifact.key == "map-progress"
    assert artifact.type == "progress"
    assert float(artifact.data) == 100.0
    assert artifact.description == "steps done"
