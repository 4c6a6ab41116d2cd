"""Progress of long stages: log lines with rate and ETA, and a Prefect progress artifact inside a run."""

from __future__ import annotations

import logging

import numpy as np
from prefect import flow, task

from tasks.progress import advance_to, progress
from tasks.reduce import TsneReducer


def _points() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)


def test_tsne_reports_its_iterations_through_both_phases_without_prefect(caplog):
    caplog.set_level(logging.INFO)
    TsneReducer(perplexity=5, n_iter=100, seed=0).fit_transform(_points())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("map: ")]
    assert any(line.startswith("map: 50/350 t-SNE iterations (14%)") for line in lines)
    assert any(line.startswith("map: 300/350 t-SNE iterations") for line in lines)  # past early exaggeration
    assert any(line.startswith("map: 350/350 t-SNE iterations (100%)") for line in lines)
    assert any("KL divergence" in line for line in lines)


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
