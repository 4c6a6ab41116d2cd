"""Size and time to first render of ``map.html``: plotly (what we ship) against Bokeh.

Both pages inline their library and draw the same synthetic map (20 classes,
20 clusters and 5% noise; posts of realistic length) with one legend entry per
group for both colourings, and hover text; plotly's (``tasks/interactive.py``)
uses SVG below 5,000 points and WebGL above, Bokeh's uses WebGL throughout. The Bokeh page has the
class/cluster toggle but no search box. Time to first render is navigation
start to the first animation frame after the plot is drawn (plotly's
``newPlot`` promise; Bokeh's ``DocumentReady`` event), in headless Chromium
with software WebGL: the first load in a fresh browser, and the median of the
later ones (``--repeats`` loads in all). "Hover ready" is when plotly's page
has attached the hover rows it keeps out of the first render. Targets: at most 6 MB
at 600 points and 20 MB at 18,846; under 3 s at 18,846.

    pip install -e ".[bench]"        # Bokeh, for the comparison (without it: plotly only)
    python benchmarks/map_html.py
    python benchmarks/map_html.py --points 600 --repeats 1
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import os
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

# This checkout's code, not an installed copy of the package; and the tests' WebDriver client.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from chromedriver_client import OFFLINE_ARGS, WEBGL_ARGS, WebDriver, chromium_available  # noqa: E402

from tasks.interactive import marker_size, render_map_html  # noqa: E402
from tasks.mapdata import NOISE, MapData, prepare_map  # noqa: E402

WORDS = (
    "orbit launch shuttle key chip encryption doctor diet patients circuit voltage amplifier "
    "government people think question problem system program software university research "
    "the and that with this have from they would about there their what which"
).split()
RENDERED = "return window.mapRenderedAt || null"
HOVER_READY = "return window.mapHoverReady || null"


def synthetic_map(n_points: int, *, seed: int = 0) -> MapData:
    """A map of ``n_points`` posts in 20 Gaussian blobs, clustered with 5% noise."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 20, n_points)
    centres = rng.uniform(-60, 60, (20, 2))
    xy = centres[groups] + rng.normal(0, 4, (n_points, 2))
    texts = [
        f"Re: {' '.join(rng.choice(WORDS, 5))}\n\n{' '.join(rng.choice(WORDS, 60))}" for _ in range(n_points)
    ]
    clusters = np.where(rng.random(n_points) < 0.05, NOISE, groups)
    coords = pd.DataFrame({"doc_id": [f"d{i}" for i in range(n_points)], "x": xy[:, 0], "y": xy[:, 1]})
    return prepare_map(
        coords,
        texts,
        clusters,
        np.array([f"group.{g:02d}" for g in groups]),
        reducer_label="t-SNE",
        cluster_names={c: ", ".join(WORDS[c : c + 4]) for c in range(20)},
        matched_classes={c: f"group.{c:02d}" for c in range(20)},
    )


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


def first_render_s(path: Path, profile: Path, repeats: int) -> list[tuple[float, float, float]]:
    """Per load: seconds from navigation start to the first frame after the plot is drawn, Chromium's CPU seconds,
    and seconds until hovering shows the posts (plotly's page attaches them after the first frame).

    A fresh browser opens the page ``repeats`` times: the first load is the one
    a reader waits for; later ones reuse what Chromium cached (compiled script).
    CPU seconds do not grow when other jobs share the cores, wall seconds do.
    """
    times = []
    with WebDriver(profile=profile, args=[*OFFLINE_ARGS, *WEBGL_ARGS], timeout=120) as browser:
        for _ in range(repeats):
            browser.open("about:blank")
            before = cpu_seconds(browser.driver_pid)
            browser.open(path.as_uri())
            wall = browser.wait_for(RENDERED, lambda value: value is not None) / 1000
            hover = browser.wait_for(HOVER_READY, lambda value: value is not None) / 1000
            times.append((wall, cpu_seconds(browser.driver_pid) - before, hover))
            requests = browser.run("return performance.getEntriesByType('resource').map(e => e.name)")
            if requests:
                raise RuntimeError(f"{path.name} fetched {requests}.")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[600, 18_846])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not chromium_available():
        sys.exit("This benchmark needs chromium and chromedriver (Debian packages of those names).")
    renderers = {"plotly": lambda d, p: render_map_html(d, p, title="Map")}
    if importlib.util.find_spec("bokeh"):
        renderers["bokeh"] = render_bokeh
    else:
        print('Bokeh is not installed (pip install -e ".[bench]"): measuring plotly only.')
    rows = []
    load_before = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as folder:
        for n_points in args.points:
            data = synthetic_map(n_points)
            for library, render in renderers.items():
                path = render(data, Path(folder) / f"{library}-{n_points}.html")
                loads = first_render_s(path, Path(folder) / f"profile-{library}-{n_points}", args.repeats)
                later = loads[1:] or loads
                median_wall = statistics.median(wall for wall, _, _ in later)
                median_cpu = statistics.median(cpu for _, cpu, _ in later)
                rows.append(
                    (library, n_points, path.stat().st_size / 1e6, *loads[0], median_wall, median_cpu)
                )
    print(
        f"map.html, {date.today()}, headless Chromium (software WebGL), {args.repeats} loads in a fresh browser"
    )
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print(
        "| library | points | file size (MB) | first load: render (s) | CPU (s) | hover ready (s) "
        "| later loads, median: render (s) | CPU (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for library, n_points, size, first, first_cpu, hover, later, later_cpu in rows:
        print(
            f"| {library} | {n_points:,} | {size:.1f} | {first:.2f} | {first_cpu:.2f} | {hover:.2f} "
            f"| {later:.2f} | {later_cpu:.2f} |"
        )


if __name__ == "__main__":
    main()
