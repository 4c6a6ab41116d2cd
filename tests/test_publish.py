"""Publish: which figures a run gets, the summary Markdown, the saved PNGs and the Prefect artifacts."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

from tasks.evaluate import evaluate_clusters
from tasks.layout import create_run, write_png
from tasks.mapdata import prepare_map
from tasks.publish import ACCURACY_KEY, SUMMARY_KEY, publish_task, render_plots, save_plots, summary_markdown

CLASSES = np.array(["a", "a", "a", "b", "b", "c", "c"], dtype=object)
CLUSTERS = np.array([0, 0, 1, 1, 1, 1, 2])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def coords() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(7)], "x": rng.normal(size=7), "y": rng.normal(size=7)}
    )


@pytest.fixture
def evaluation():
    return evaluate_clusters(CLASSES, CLUSTERS)


@pytest.fixture
def sample(coords) -> pd.DataFrame:
    return pd.DataFrame(
        {"doc_id": coords["doc_id"], "text": [f" Subject {i}\nbody" for i in range(7)], "class_name": CLASSES}
    )


def map_data(coords, evaluation, reducer="t-SNE"):
    texts = [f" Subject {i}\nbody" for i in range(len(coords))]
    if evaluation is None:
        return prepare_map(coords, texts, CLUSTERS, reducer_label=reducer)
    return prepare_map(
        coords, texts, CLUSTERS, CLASSES, reducer_label=reducer, matched_classes=evaluation.matched_classes()
    )


@pytest.fixture
def tiny_png(tmp_path):
    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [0, 1])
    return write_png(figure, tmp_path / "tiny.png", dpi=20)


def legend_texts(figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].get_legend().get_texts()]


def test_a_labelled_run_gets_three_figures(coords, evaluation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figures = render_plots(map_data(coords, evaluation), evaluation)
    assert list(figures) == ["map_by_class", "map_by_cluster", "confusion_matrix"]
    assert list(tmp_path.iterdir()) == []


def test_the_cluster_map_legend_names_each_cluster_by_its_matched_class(coords, evaluation):
    figures = render_plots(map_data(coords, evaluation), evaluation)
    assert legend_texts(figures["map_by_class"]) == ["a", "b", "c"]
    assert legend_texts(figures["map_by_cluster"]) == ["cluster 0 (a)", "cluster 1 (b)", "cluster 2 (c)"]
    assert figures["map_by_class"].axes[0].get_xlabel() == "t-SNE 1"


def test_an_unlabelled_run_gets_only_the_cluster_map(coords):
    figures = render_plots(map_data(coords, None, reducer="PCA"), None)
    assert list(figures) == ["map_by_cluster"]
    assert legend_texts(figures["map_by_cluster"]) == ["cluster 0", "cluster 1", "cluster 2"]
    assert figures["map_by_cluster"].axes[0].get_xlabel() == "PCA 1"


def test_the_summary_holds_the_metrics_and_the_per_class_table(evaluation):
    metrics = {**evaluation.metrics, "silhouette": 0.25}
    markdown = summary_markdown("run-1", metrics, evaluation.table, {})
    assert markdown.startswith("# Run `run-1`\n")
    assert "| hungarian_accuracy | 0.7143 |" in markdown
    assert "| majority_collisions | 2 |" in markdown
    assert "| silhouette | 0.2500 |" in markdown
    assert "per_class_accuracy" not in markdown
    assert "| a | 3 | 0.667 | 0.667 | - |" in markdown
    assert "| c | 2 | 0.500 | 0.500 | b |" in markdown


def test_the_summary_inlines_each_image_as_a_data_uri(tiny_png):
    markdown = summary_markdown("run-1", {"silhouette": None}, None, {"map_by_cluster": tiny_png})
    assert "| silhouette | None |" in markdown
    assert "## map by cluster" in markdown
    (encoded,) = re.findall(r"!\[map_by_cluster\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert base64.b64decode(encoded) == tiny_png.read_bytes()
    assert "file://" not in markdown


def test_the_summary_markdown_is_not_indented(evaluation, tiny_png):
    markdown = summary_markdown("run-1", evaluation.metrics, evaluation.table, {"confusion_matrix": tiny_png})
    assert not [line for line in markdown.splitlines() if line.startswith(" ")]


def test_save_plots_writes_one_png_per_figure_and_closes_it(coords, evaluation, tmp_path):
    layout = create_run(tmp_path, "run")
    figures = render_plots(map_data(coords, evaluation), evaluation)
    paths = save_plots(figures, layout)
    assert {name: path.name for name, path in paths.items()} == {
        "map_by_class": "map_by_class.png",
        "map_by_cluster": "map_by_cluster.png",
        "confusion_matrix": "confusion_matrix.png",
    }
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in paths.values())
    assert sorted(p.name for p in layout.root.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in paths.values()
    )
    assert not plt.get_fignums()


async def run_artifact(flow_run_id, key: str):
    """The artifact ``key`` of one flow run (other test workers publish under the same keys)."""
    async with get_client() as client:
        (artifact,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    return artifact


def test_publish_task_saves_the_plots_and_publishes_both_artifacts(sample, coords, evaluation, tmp_path):
    layout = create_run(tmp_path, "published")

    @flow
    def publish_only():
        return publish_task(
            sample, coords, CLUSTERS, evaluation, evaluation.metrics, reducer_label="t-SNE", layout=layout
        )

    state = publish_only(return_state=True)
    images = state.result()
    assert set(images) == {"map_by_class", "map_by_cluster", "confusion_matrix", "map_html"}
    assert images["map_html"] == layout.map_html and "plotly" in layout.map_html.read_text()[:200_000].lower()
    table = asyncio.run(run_artifact(state.state_details.flow_run_id, ACCURACY_KEY))
    summary = asyncio.run(run_artifact(state.state_details.flow_run_id, SUMMARY_KEY))
    assert table.type == "table"
    rows = json.loads(table.data)
    assert rows[0] == {
        "class": "a",
        "posts": 3,
        "accuracy": 0.6667,
        "majority share": 0.6667,
        "majority shared with": "-",
    }
    assert summary.type == "markdown"
    assert summary.data.startswith("# Run `published`")
    assert summary.data.count("data:image/png;base64,") == 3
    assert str(layout.map_html.resolve()) in summary.data
