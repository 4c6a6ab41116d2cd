"""Size and time to first render of ``map.html``: this checkout's page against another commit's (main), and Bokeh.

Every page inlines its library and draws the same map (20 classes, 20 clusters
and 5% noise in Gaussian blobs; the posts are real 20 Newsgroups posts, cleaned,
when the archive is at $NEWSGROUPS_ARCHIVE or ../shared/data, else synthetic ones of
the same mean length) with one legend entry per group for both colourings, and
hover text. "this" is ``tasks/interactive.py`` of this checkout, with the
explorer panel (full texts, neighbours of random 384-dimensional vectors);
"main" is the page of ``--baseline`` (a commit; built in a temporary git
worktree of it, from the same posts). The Bokeh page (``--bokeh``) has the
class/cluster toggle but no search box. Time to first render is navigation
start to the first animation frame after the plot is drawn (plotly's
``newPlot`` promise; Bokeh's ``DocumentReady`` event), in headless Chromium
with software WebGL: the first load in a fresh browser, and the median of the
later ones (``--repeats`` loads in all), pages taking turns. "Hover ready" is
when the page has attached the hover rows it keeps out of the first render,
"panel ready" when the explorer has decompressed and parsed the full texts.
Targets: first render no slower than main; panel ready within 2 s after it;
at most 8 MB at 600 points and 30 MB at 18,846.

    pip install -e ".[bench]"        # Bokeh, for --bokeh
    python benchmarks/map_html.py
    python benchmarks/map_html.py --points 600 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

# This checkout's code, not an installed copy of the package; and the tests' browser helpers.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tasks.interactive import marker_size, render_map_html  # noqa: E402
from tasks.mapdata import NOISE, MapData, prepare_map  # noqa: E402
from tests.browser import chromium_available, open_chrome, wait_for  # noqa: E402

WORDS = (
    "orbit launch shuttle key chip encryption doctor diet patients circuit voltage amplifier "
    "government people think question problem system program software university research "
    "the and that with this have from they would about there their what which"
).split()
RENDERED = "return window.mapRenderedAt || null"
HOVER_READY = "return window.mapHoverReady || null"
PANEL_READY = "return window.mapPanelReady || null"
MEAN_POST_CHARS = 1352
"""Mean length of a cleaned 20 Newsgroups post (18,583 posts, 2026-12-04), for synthetic posts."""


@functools.cache
def real_posts() -> list[str]:
    """The cleaned posts of the 20 Newsgroups archive, or none if it is not here."""
    archive = Path(
        os.environ.get("NEWSGROUPS_ARCHIVE", ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz")
    )
    if not archive.exists():
        return []
    from tasks.clean import clean_corpus
    from tasks.config import CleaningSettings
    from tasks.ingest import load_newsgroups

    return clean_corpus(load_newsgroups(archive=archive, subset="all"), CleaningSettings())[0][
        "text"
    ].tolist()


def posts(n_points: int, rng: np.random.Generator) -> list[str]:
    """``n_points`` cleaned 20 Newsgroups posts (cycled), or synthetic ones of their mean length without the archive."""
    archive = Path(
        os.environ.get("NEWSGROUPS_ARCHIVE", ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz")
    )
    if archive.exists():
        from tasks.clean import clean_corpus
        from tasks.config import CleaningSettings
        from tasks.ingest import load_newsgroups

        texts = clean_corpus(load_newsgroups(archive=archive, subset="all"), CleaningSettings())[0][
            "text"
        ].tolist()
        return [texts[i % len(texts)] for i in rng.permutation(max(n_points, len(texts)))[:n_points]]
    words = MEAN_POST_CHARS // 6
    return [
        f"Re: {' '.join(rng.choice(WORDS, 5))}\n\n{' '.join(rng.choice(WORDS, words))}"
        for _ in range(n_points)
    ]


def synthetic_inputs(n_points: int, *, seed: int = 0) -> dict:
    """What both pages draw: ``n_points`` posts in 20 Gaussian blobs, clustered with 5% noise, and their vectors."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 20, n_points)
    centres = rng.uniform(-60, 60, (20, 2))
    xy = centres[groups] + rng.normal(0, 4, (n_points, 2))
    vectors = rng.normal(size=(20, 384))[groups] + rng.normal(size=(n_points, 384))
    return {
        "coords": pd.DataFrame({"doc_id": [f"d{i}" for i in range(n_points)], "x": xy[:, 0], "y": xy[:, 1]}),
        "texts": posts(n_points, rng),
        "clusters": np.where(rng.random(n_points) < 0.05, NOISE, groups),
        "classes": np.array([f"group.{g:02d}" for g in groups]),
        "names": {c: ", ".join(WORDS[c : c + 4]) for c in range(20)},
        "vectors": vectors.astype(np.float32),
    }


def synthetic_map(inputs: dict, *, vectors: bool = True) -> MapData:
    """The map of :func:`synthetic_inputs` (with neighbours from the vectors when ``vectors``)."""
    return prepare_map(
        inputs["coords"],
        inputs["texts"],
        inputs["clusters"],
        inputs["classes"],
        reducer_label="t-SNE",
        cluster_names=inputs["names"],
        matched_classes={c: f"group.{c:02d}" for c in range(20)},
        **({"vectors": inputs["vectors"]} if vectors else {}),
    )


BASELINE_SCRIPT = """
import json, sys
import numpy as np, pandas as pd
from tasks.interactive import render_map_html
from tasks.mapdata import prepare_map
folder, out = sys.argv[1], sys.argv[2]
frame = pd.read_parquet(folder + "/inputs.parquet")
names = {int(k): v for k, v in json.load(open(folder + "/names.json")).items()}
data = prepare_map(frame[["doc_id", "x", "y"]], frame["text"].tolist(), frame["cluster"].to_numpy(),
                   frame["class_name"].to_numpy(object), reducer_label="t-SNE", cluster_names=names,
                   matched_classes={c: f"group.{c:02d}" for c in range(20)})
render_map_html(data, out, title="Map")
"""


def render_baseline(inputs: dict, worktree: Path, path: Path) -> Path:
    """The same map drawn by the commit checked out in ``worktree`` (its own code, in a child process)."""
    folder = path.parent / f"inputs-{path.stem}"
    folder.mkdir()
    inputs["coords"].assign(
        text=inputs["texts"], cluster=inputs["clusters"], class_name=inputs["classes"]
    ).to_parquet(folder / "inputs.parquet")
    (folder / "names.json").write_text(json.dumps(inputs["names"]), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    subprocess.run(
        [sys.executable, "-c", BASELINE_SCRIPT, str(folder), str(path)], env=env, check=True, cwd=worktree
    )
    return path


def render_bokeh(data: MapData, path: Path) -> Path:
    """The same map with Bokeh (inline resources), for comparison."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.events import DocumentReady
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool, RadioButtonGroup
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    points = data.points.assign(
        subject=data.points["subject"].map(html.escape), preview=data.points["preview"].map(html.escape)
    )
    plot = figure(output_backend="webgl", sizing_mode="stretch_both", tools="pan,wheel_zoom,box_zoom,reset")
    renderers = {}
    for key, column_name, colours in (
        ("cluster", "cluster_label", data.cluster_colours),
        ("class", "class_name", data.class_colours),
    ):
        renderers[key] = [
            plot.scatter(
                "x",
                "y",
                source=ColumnDataSource(points[points[column_name] == name]),
                color=colour,
                size=marker_size(len(points)),
                alpha=0.8,
                legend_label=name,
                visible=key == "cluster",
            )
            for name, colour in colours.items()
        ]
    plot.add_tools(
        HoverTool(
            tooltips=[
                ("class", "@class_name"),
                ("cluster", "@cluster_label"),
                ("", "@subject"),
                ("", "@preview"),
            ]
        )
    )
    plot.legend.click_policy = "hide"
    toggle = RadioButtonGroup(labels=["Colour by cluster", "Colour by class"], active=0)
    toggle.js_on_change(
        "active",
        CustomJS(
            args=renderers,
            code="cluster.forEach(r => r.visible = this.active == 0); class.forEach(r => r.visible = this.active == 1);",
        ),
    )
    document = Document()
    document.add_root(column(toggle, plot, sizing_mode="stretch_both"))
    document.js_on_event(
        DocumentReady,
        CustomJS(
            code="requestAnimationFrame(() => window.mapRenderedAt = window.mapHoverReady = performance.now())"
        ),
    )
    path.write_text(file_html(document, INLINE, "Map"), encoding="utf-8")
    return path


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) of the running descendants of process ``root``, from /proc."""
    parents, times = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pid = int(stat.parent.name)
        parents[pid], times[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(times.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def first_render_s(path: Path, browser) -> tuple[float, float, float, float | None]:
    """One load of ``path`` in ``browser``: seconds from navigation start to the first frame after the plot is
    drawn, Chromium's CPU seconds, seconds until the hover rows are attached and until the explorer panel is ready
    (None for a page without one).

    CPU seconds do not grow when other jobs share the cores, wall seconds do.
    """
    driver_pid = browser.service.process.pid  # Chromium's processes are chromedriver's descendants
    ready = lambda value: value is not None  # noqa: E731
    browser.get("about:blank")
    before = cpu_seconds(driver_pid)
    browser.get(path.as_uri())
    wall = wait_for(browser, RENDERED, ready, timeout=120) / 1000
    hover = wait_for(browser, HOVER_READY, ready, timeout=120) / 1000
    has_panel = browser.execute_script("return !!document.getElementById('explorer-data')")
    panel = wait_for(browser, PANEL_READY, ready, timeout=120) / 1000 if has_panel else None
    cpu = cpu_seconds(driver_pid) - before
    requests = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    if requests:
        raise RuntimeError(f"{path.name} fetched {requests}.")
    return wall, cpu, hover, panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[600, 18_846])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="main", help="the commit to compare with (default: main)")
    parser.add_argument(
        "--bokeh", action="store_true", help="also draw the map with Bokeh (needs the bench extra)"
    )
    args = parser.parse_args()
    if not chromium_available():
        sys.exit("This benchmark needs chromium and chromedriver (Debian packages of those names).")
    if args.bokeh and not importlib.util.find_spec("bokeh"):
        sys.exit('--bokeh needs Bokeh: pip install -e ".[bench]".')
    rows = []
    load_before = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as folder:
        worktree = Path(folder) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(worktree), args.baseline],
            check=True,
        )
        try:
            for n_points in args.points:
                inputs = synthetic_inputs(n_points)
                renderers = {
                    args.baseline: lambda p, inputs=inputs: render_baseline(inputs, worktree, p),
                    "this": lambda p, inputs=inputs: render_map_html(synthetic_map(inputs), p, title="Map"),
                }
                if args.bokeh:
                    renderers["bokeh"] = lambda p, inputs=inputs: render_bokeh(
                        synthetic_map(inputs, vectors=False), p
                    )
                pages = {
                    name: render(Path(folder) / f"{name}-{n_points}.html")
                    for name, render in renderers.items()
                }
                loads: dict[str, list] = {name: [] for name in pages}
                stack = contextlib.ExitStack()
                browsers = {
                    name: stack.enter_context(open_chrome(Path(folder) / f"profile-{name}-{n_points}"))
                    for name in pages
                }
                # Pages take turns, each in its own fresh browser, so a burst of load elsewhere hits both alike.
                for _ in range(args.repeats):
                    for name, path in pages.items():
                        loads[name].append(first_render_s(path, browsers[name]))
                stack.close()
                for name, path in pages.items():
                    later = loads[name][1:] or loads[name]
                    median = [statistics.median(load[k] for load in later) for k in range(3)]
                    panels = [load[3] - load[0] for load in later if load[3] is not None]
                    panel = statistics.median(panels) if panels else None
                    rows.append(
                        (name, n_points, path.stat().st_size / 1e6, *loads[name][0][:3], *median, panel)
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False
            )
    print(
        f"map.html, {date.today()}, headless Chromium (software WebGL), {args.repeats} loads in a fresh browser each"
    )
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print(
        "| page | points | file size (MB) | first load: render (s) | CPU (s) | hover ready (s) "
        "| later loads, median: render (s) | CPU (s) | hover ready (s) | panel ready after render (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n_points, size, first, first_cpu, hover, later, later_cpu, later_hover, panel in rows:
        panel_text = "-" if panel is None else f"{panel:.2f}"
        print(
            f"| {name} | {n_points:,} | {size:.1f} | {first:.2f} | {first_cpu:.2f} | {hover:.2f} "
            f"| {later:.2f} | {later_cpu:.2f} | {later_hover:.2f} | {panel_text} |"
        )


if __name__ == "__main__":
    main()
