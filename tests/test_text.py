"""A corpus of hostile labels runs to the end, and every output shows its labels as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from markdown_it import MarkdownIt
from prefect.settings import PREFECT_API_URL

from tasks.mapdata import prepare_map
from tasks.plots import confusion_figure, confusion_matrix_shown, map_figure
from tasks.text import console_text, markdown_text, matplotlib_text, plotly_text

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</script><b>x</b>",
    r"$\alpha$",
    "costs $5 to $10",
    "_hidden",
    "a|b",
    "say \"hi\" & 'bye'",
    "\x1b]0;title\x07",
    "\x1b[2J",
    "1",
]
TOPICS = [
    "rocket orbit shuttle station",
    "patient insulin doctor vaccine",
    "cipher key encryption attack",
    "engine car brakes tyre",
    "guitar chord song melody",
    "goal match referee league",
    "bread flour oven yeast",
    "river boat paddle canoe",
    "star telescope galaxy lens",
    "garden seed soil rose",
]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """The command line run on a JSONL corpus of hostile labels (tfidf, PCA), against the session's Prefect API."""
    folder = tmp_path_factory.mktemp("hostile")
    corpus = folder / "hostile.jsonl"
    with corpus.open("w") as handle:
        for label, words in zip(HOSTILE, TOPICS, strict=True):
            for j in range(6):
                handle.write(
                    json.dumps({"text": f"{words} post {j} {words.split()[j % 4]}", "label": label}) + "\n"
                )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    result = subprocess.run(
        [sys.executable, "-m", "flows.newsgroups", "--corpus", str(corpus), "--embedder", "tfidf"]
        + ["--reducer", "pca", "--output-dir", str(folder / "runs"), "--run-name", "hostile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "runs" / "hostile", result.stdout


@pytest.mark.slow
def test_the_console_shows_control_codes_escaped_and_every_label_as_written(hostile_run):
    _, stdout = hostile_run
    assert "\x1b" not in stdout and "\x07" not in stdout
    for label in HOSTILE:
        assert re.search(rf"^  {re.escape(console_text(label))} +1\.000$", stdout, flags=re.M), label
    assert r"\x1b]0;title\x07" in stdout and r"\x1b[2J" in stdout


@pytest.mark.slow
def test_the_figures_draw_every_label_as_written_with_no_mathtext_and_none_hidden(hostile_run):
    root, _ = hostile_run
    sample = pd.read_parquet(root / "sample.parquet")
    coords = pd.read_parquet(root / "map.parquet")
    clusters = pd.read_parquet(root / "assignments.parquet")["cluster"].to_numpy()
    data = prepare_map(
        coords,
        sample["text"].tolist(),
        clusters,
        sample["class_name"].to_numpy(dtype=object),
        reducer_label="PCA",
    )
    figure = map_figure(data, by="class", title="map")
    texts = figure.axes[0].get_legend().get_texts()
    shown = {
        text._preprocess_math(text.get_text()) for text in texts
    }  # what matplotlib draws, and whether as math
    assert shown == {(console_text(label), False) for label in HOSTILE}
    heatmap = confusion_figure(pd.read_parquet(root / "confusion.parquet"), title="confusion").axes[0]
    ticks = {t._preprocess_math(t.get_text()) for t in heatmap.get_yticklabels()}
    assert ticks == {(console_text(label), False) for label in HOSTILE}
    for name in ("map_by_class", "map_by_cluster", "confusion_matrix"):
        assert (root / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_the_summary_artifact_keeps_labels_as_text_in_their_own_cells(hostile_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    root, _ = hostile_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["newsgroups-summary"]))
        )
    markdown = next(a.data for a in artifacts if "hostile" in a.data)
    page = MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<img src=x" not in page and "<script" not in page and "</script" not in page and "<b>" not in page
    classes_table = page.split("<table>")[2].split("</table>")[0]
    rows = re.findall(r"<tr>\n<td>([^<]*)</td>\n<td>(\d+)</td>(.*?)</tr>", classes_table, flags=re.S)
    assert len(rows) == len(HOSTILE)
    assert all(rest.count("<td>") == 3 for _, _, rest in rows)  # a "|" added no cell
    unescape = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"'}
    cells = {re.sub("&(lt|gt|amp|quot);", lambda m: unescape[m.group()], cell) for cell, _, _ in rows}
    assert cells == {console_text(label) for label in HOSTILE}


@pytest.mark.slow
def test_the_interactive_map_names_each_class_exactly_as_written(hostile_run):
    root, _ = hostile_run
    page = (root / "map.html").read_text()
    assert "</script><b>" not in page and "<img src=x" not in page
    assert "&quot;" not in page.split('id="hover-rows">', 1)[1].split("</script>", 1)[0]
    names = {
        trace["name"]
        for trace in re.findall(r'"name":("(?:[^"\\]|\\.)*")', page)
        for trace in [{"name": json.loads(trace)}]
    }
    assert {plotly_text(label) for label in HOSTILE} <= names
    assert "say \"hi\" &amp; 'bye'" in names  # plotly decodes &amp; and shows the quotes as they are


def test_matplotlib_text_is_never_mathtext():
    import matplotlib.text

    for label in ["$5 to $10", r"$\alpha$", "a\\$b", "$", "$$"]:
        assert matplotlib.text.Text(text=matplotlib_text(label))._preprocess_math(matplotlib_text(label)) == (
            label,
            False,
        )


def test_markdown_text_cannot_open_a_cell_a_tag_or_a_row():
    assert markdown_text("a|b") == "a\\|b"
    assert markdown_text("<img onerror=x>") == "&lt;img onerror=x&gt;"
    assert markdown_text("a\nb") == "a\\\\nb"


def test_the_confusion_figure_shows_the_largest_classes_and_says_how_many_were_left_out():
    classes = [f"class {i:04d}" for i in range(1000)]
    confusion = pd.DataFrame(
        {"class_name": classes, "predicted": classes[1:] + classes[:1], "count": [1] * 999 + [50]}
    )
    matrix = confusion_matrix_shown(confusion, max_classes=30)
    assert matrix.shape[0] == 30 and "class 0999" in matrix.index
    assert matrix.to_numpy().sum() == confusion[confusion["class_name"].isin(matrix.index)]["count"].sum()
    figure = confusion_figure(confusion, title="confusion")
    assert "970 left out" in figure.axes[0].get_title()
    assert max(figure.get_size_inches()) < 25
