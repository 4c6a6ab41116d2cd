"""The interactive map, ``map.html``: one self-contained page that makes no request.

The page holds plotly.js (inlined from the ``plotly`` package), the points and
a few lines of our own JavaScript for the search box and the toggle. Points are
coloured by class or by cluster (two sets of traces, one per legend entry,
switched by two buttons; noise is grey), the legend hides and shows groups, the
mouse zooms and pans, and hovering shows a post's class, cluster, subject and
start. Each post is in the page once, in the cluster traces: the class traces
are filled from them at the first toggle, which also keeps them out of the
first render, and the hover rows come as a JSON block the page attaches
once the map is drawn. Maps of :data:`WEBGL_FROM` points or more are drawn with WebGL,
smaller ones in SVG.

Why plotly rather than Bokeh, whose JavaScript also ships in its package
(``benchmarks/map_html.py``, 2026-11-27, headless Chromium with software
WebGL, on a 2-core machine shared with other jobs, load average about 9):

=========  ======  =========  ==========================  ==========================
library    points  size (MB)  first load: render / CPU s  later loads: render / CPU s
=========  ======  =========  ==========================  ==========================
plotly        600        5.3  4.5 / 4.0                   1.0 / 0.9
Bokeh         600        2.4  5.8 / 5.7                   5.5 / 4.8
plotly     18,846       17.9  4.1 / 4.5                   2.0 / 2.9
Bokeh      18,846       15.0  8.6 / 8.0                   7.9 / 7.7
=========  ======  =========  ==========================  ==========================

Bokeh's pages are smaller (its bundle is 1.6 MB against plotly's 4.8 MB), but
plotly draws first at both sizes with about half the CPU, both stay under the
size targets (6 MB at 600 points, 20 MB at 18,846), and plotly gives the toggle
(``updatemenus``), hover templates and legend toggling as figure settings, so
our own JavaScript is the search box, the filling of the class traces and the
explorer panel (``tasks/map_explorer.js``: a post read whole with its
neighbours, selections listed and exported, the cluster list, the labels'
toggle). Most of a first load is compiling plotly's 4.8 MB bundle;
docs/map-html.md and docs/benchmarks.md have the times of the page as it is
now.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tasks.explorer import compress, script_json
from tasks.explorer_page import cluster_labels, explorer_payload, explorer_settings
from tasks.layout import atomic_path
from tasks.mapdata import MapData
from tasks.text import plotly_text

HOVER_LINE_CHARS = 70
WEBGL_FROM = 5_000
"""Draw maps of this many points or more with WebGL: SVG is quicker below (no WebGL start-up), slower above."""
HIGHLIGHT_COLOUR = "#111111"
EXPLORER_JS = Path(__file__).with_name("map_explorer.js")
EXPLORER_CSS = Path(__file__).with_name("map_explorer.css")

HOVER_TEMPLATE = (
    "<b>%{customdata[2]}</b><br>class: %{customdata[0]}<br>cluster: %{customdata[1]}"
    "<br><br>%{customdata[3]}<extra></extra>"
)
UNLABELLED_HOVER_TEMPLATE = HOVER_TEMPLATE.replace("<br>class: %{customdata[0]}", "")

# Runs once the plot is drawn: notes the moment of first render (for the benchmark), wires the search box
# and the colouring buttons.
PAGE_SCRIPT = """
var gd = document.getElementById('{plot_id}'), settings = __SETTINGS__, points = null, rows = null;
// Per cluster trace, its points' hover rows: kept out of the figure until the map is drawn.
var hoverRows = function () { return rows || (rows = JSON.parse(document.getElementById('hover-rows').textContent)); };
requestAnimationFrame(function () {
  window.mapRenderedAt = performance.now();
  setTimeout(function () {
    Plotly.restyle(gd, {customdata: hoverRows()}, settings.clusters).then(function () {
      return Plotly.relayout(gd, {annotations: JSON.parse(document.getElementById('map-labels').textContent)});
    }).then(function () {
      window.mapHoverReady = performance.now();
      window.mapExplorer.start(gd);
    });
  }, 0);
});
var entities = {'&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#x27;': "'"};
var decode = function (s) { return s.replace(/<br>/g, ' ').replace(/&(amp|lt|gt|quot|#x27);/g, function (e) { return entities[e]; }); };
// Built at the first search, not before the first render.
var searchable = function () {
  points = [];
  settings.clusters.forEach(function (t, k) {
    var trace = gd.data[t], hover = hoverRows()[k];
    for (var i = 0; i < trace.x.length; i++) {
      points.push({x: trace.x[i], y: trace.y[i], text: decode(hover[i][2] + ' ' + hover[i][3]).toLowerCase()});
    }
  });
  return points;
};
var input = document.getElementById('search'), count = document.getElementById('search-count');
input.addEventListener('input', function () {
  var word = input.value.trim().toLowerCase(), all = points || searchable();
  var hits = word ? all.filter(function (p) { return p.text.indexOf(word) >= 0; }) : [];
  Plotly.restyle(gd, {x: [hits.map(function (p) { return p.x; })], y: [hits.map(function (p) { return p.y; })]}, [settings.highlight]);
  count.textContent = word ? hits.length + ' of ' + all.length + ' posts' : '';
});
// The class traces come empty and are filled at the first toggle, not before the first render, with the
// cluster traces' points and hover rows, so each post's text is in the page once.
var classesFilled = false;
gd.on('plotly_buttonclicked', function (event) {
  if (!classesFilled) {
    var byName = {};
    settings.classes.forEach(function (t) { byName[gd.data[t].name] = gd.data[t]; });
    settings.clusters.forEach(function (c, k) {
      var trace = gd.data[c];
      hoverRows()[k].forEach(function (row, i) {
        var t = byName[row[0]];
        t.x.push(trace.x[i]); t.y.push(trace.y[i]); t.customdata.push(row);
      });
    });
    classesFilled = true;
  }
  Plotly.update(gd, event.button.args[0], event.button.args[1]);
});
"""

# The magic comment asks V8 to compile plotly.js at once: its bundle is one function that V8 would otherwise
# pre-parse, then parse again when it is called straight away (about 0.1 s of a first load here).
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font-family: sans-serif; margin: 0 1em; }
header { display: flex; gap: 1em; align-items: baseline; }
#search { width: 18em; padding: .2em; }
#search-count { color: #555; }
__EXPLORERCSS__
</style>
</head>
<body>
<header><h1>__TITLE__</h1>
<label>Search posts <input id="search" type="search" placeholder="a word, e.g. orbit"></label>
<span id="search-count"></span></header>
<script>//# allFunctionsCalledOnLoad
__PLOTLYJS__</script>
<script>
// plotly draws WebGL at twice the canvas size, four times the pixels a screen of ratio 1 shows, and
// software WebGL (as in the benchmark) pays for every one: about 0.5 s of a load at 18,846 points.
Plotly.setPlotConfig({plotGlPixelRatio: Math.max(1, window.devicePixelRatio || 1)});
</script>
<script>
__EXPLORERJS__</script>
<script type="application/json" id="explorer-settings">__SETTINGS__</script>
<main id="layout">
<aside id="explorer">
<div class="controls"><label><input type="checkbox" id="show-labels" checked> Cluster labels</label>
<label>Colour by column <select id="colour-by" disabled><option value="">-</option></select></label></div>
<ol id="cluster-list" aria-label="Clusters"></ol>
<section id="panel" aria-live="polite"><p class="hint">Click a post to read it whole; select posts with the box or
lasso tool (top right of the map) to list and export them; click a cluster to see only its posts.</p></section>
</aside>
<div id="map-area">__PLOT__</div></main>
<script type="application/octet-stream" id="explorer-data">__DATA__</script>
</body>
</html>
"""


def marker_size(n_points: int) -> float:
    """Marker diameter in pixels: big enough to see 100 points, small enough for 20,000."""
    return float(np.clip(120 / np.sqrt(max(n_points, 1)), 3, 8))


def _wrap(text: str) -> list[str]:
    """Lines of a hover label, broken at spaces only, so the search can rejoin them with spaces."""
    return textwrap.wrap(text, HOVER_LINE_CHARS, break_long_words=False, break_on_hyphens=False)


def _hover_texts(points: pd.DataFrame) -> np.ndarray:
    """Per point: class, cluster label, subject, wrapped preview (HTML-escaped: plotly renders tags) and row.

    The row says which post the explorer panel shows when the point is clicked or selected.
    """

    def escape(values: pd.Series) -> list[str]:
        return [plotly_text(v) if v is not None else "" for v in values]

    previews = ["<br>".join(plotly_text(line) for line in _wrap(str(text))) for text in points["preview"]]
    columns = [
        escape(points["class_name"]),
        escape(points["cluster_label"]),
        escape(points["subject"]),
        previews,
        list(range(len(points))),
    ]
    return np.array(columns, dtype=object).T.reshape(len(points), 5)


def _scatter(n_points: int) -> type[go.Scatter] | type[go.Scattergl]:
    """The trace type for a map of ``n_points``: WebGL from :data:`WEBGL_FROM` points, SVG below."""
    return go.Scattergl if n_points >= WEBGL_FROM else go.Scatter


def _trace(
    name: str, colour: str, n_points: int, template: str, **data: list | bool
) -> go.Scatter | go.Scattergl:
    """One legend entry of a map of ``n_points``; ``data`` holds x, y, customdata and any other setting."""
    return _scatter(n_points)(
        **data,
        mode="markers",
        name=plotly_text(name),
        marker={"color": colour, "size": marker_size(n_points), "opacity": 0.8},
        hovertemplate=template,
    )


def map_figure(data: MapData) -> go.Figure:
    """The map as a plotly figure: per-cluster traces, per-class traces (if labelled), search highlight.

    Traces are ordered clusters, then classes, then the (empty) highlight trace
    that the page's search fills. The class traces are empty too: the page fills
    them at the first toggle (see :data:`PAGE_SCRIPT`), by the first field of the
    cluster traces' hover rows, the escaped class name, which is each class
    trace's name.
    """
    points = data.points
    hover = _hover_texts(points)
    template = HOVER_TEMPLATE if data.labelled else UNLABELLED_HOVER_TEMPLATE
    x, y = (np.round(points[axis].to_numpy(np.float64), 3) for axis in ("x", "y"))
    by_cluster = []
    for name, colour in data.cluster_colours.items():
        rows = np.flatnonzero((points["cluster_label"] == name).to_numpy())
        by_cluster.append(
            _trace(
                name,
                colour,
                len(points),
                template,
                x=x[rows].tolist(),
                y=y[rows].tolist(),
                customdata=hover[rows].tolist(),
                visible=True,
            )
        )
    by_class = [
        _trace(name, colour, len(points), template, x=[], y=[], customdata=[], visible=False)
        for name, colour in data.class_colours.items()
    ]
    highlight = _scatter(len(points))(
        x=[],
        y=[],
        mode="markers",
        name="search matches",
        showlegend=False,
        hoverinfo="skip",
        marker={"symbol": "circle-open", "size": 11, "color": HIGHLIGHT_COLOUR, "line": {"width": 2}},
    )
    # An update's posts new since its base: a trace to toggle from the legend, after every other.
    added = []
    if data.base_name is not None:
        rows = np.flatnonzero(points["added"].to_numpy())
        added = [
            _scatter(len(points))(
                x=x[rows].tolist(),
                y=y[rows].tolist(),
                mode="markers",
                name=html.escape(f"new since {data.base_name}"),
                hoverinfo="skip",
                visible="legendonly",
                marker={"symbol": "circle-open", "size": marker_size(len(points)) + 4, "color": "black"},
            )
        ]
    figure = go.Figure([*by_cluster, *by_class, highlight, *added])
    figure.update_layout(
        xaxis_title=f"{data.reducer_label} 1",
        yaxis_title=f"{data.reducer_label} 2",
        legend={"title": {"text": "Cluster"}, "itemsizing": "constant"},
        hovermode="closest",
        template="plotly_white",
        margin={"t": 60},
        annotations=cluster_labels(data),
    )
    if by_class:
        n_cluster, n_class = len(by_cluster), len(by_class)
        buttons = [
            {
                "label": label,
                # The page runs the command once it has filled the class traces: plotly runs a button's
                # command before it reports the click.
                "method": "skip",
                "args": [
                    {"visible": visible + [True] + ["legendonly"] * len(added)},
                    {"legend.title.text": legend},
                ],
            }
            for label, legend, visible in (
                ("Colour by cluster", "Cluster", [True] * n_cluster + [False] * n_class),
                ("Colour by class", "Class", [False] * n_cluster + [True] * n_class),
            )
        ]
        figure.update_layout(
            updatemenus=[
                {
                    "type": "buttons",
                    "direction": "right",
                    "buttons": buttons,
                    "x": 0,
                    "y": 1.1,
                    "xanchor": "left",
                }
            ]
        )
    return figure


def map_html(data: MapData, *, title: str) -> str:
    """The whole ``map.html`` page as a string (plotly.js inlined; nothing is fetched).

    Parameters
    ----------
    data : MapData
        What to draw, from :func:`tasks.mapdata.prepare_map`.
    title : str
        Page title and heading (plain text; it is escaped).
    """
    figure = map_figure(data)
    n_cluster, n_class = len(data.cluster_colours), len(data.class_colours)
    # The page attaches the hover rows once the map is drawn (see PAGE_SCRIPT): the first render need not
    # wait for the largest part of the page.
    hover_rows = [list(trace.customdata) for trace in figure.data[:n_cluster]]
    for trace in figure.data[:n_cluster]:
        trace.customdata = None
    # So are the cluster labels: plotly's SVG text costs a 600-point map a tenth of its first render.
    labels = [annotation.to_plotly_json() for annotation in figure.layout.annotations]
    figure.layout.annotations = ()
    settings = {
        "clusters": list(range(n_cluster)),
        "classes": list(range(n_cluster, n_cluster + n_class)),
        "highlight": n_cluster + n_class,
    }
    plot = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id="map",
        default_height="85vh",
        config={"displaylogo": False, "scrollZoom": True, "responsive": True},
        post_script=PAGE_SCRIPT.replace("__SETTINGS__", json.dumps(settings)),
    )
    plot = (
        f'<script type="application/json" id="hover-rows">{script_json(hover_rows)}</script>\n'
        f'<script type="application/json" id="map-labels">{script_json(labels)}</script>\n{plot}'
    )
    explorer = explorer_settings(data, n_cluster, n_class)
    parts = {
        "__TITLE__": html.escape(title),
        "__PLOTLYJS__": get_plotlyjs(),
        "__PLOT__": plot,
        "__EXPLORERCSS__": EXPLORER_CSS.read_text(encoding="utf-8"),
        "__EXPLORERJS__": EXPLORER_JS.read_text(encoding="utf-8"),
        "__SETTINGS__": script_json(explorer),
        "__DATA__": compress(explorer_payload(data, explorer)),
    }
    return re.sub(
        "__(TITLE|PLOTLYJS|PLOT|EXPLORERCSS|EXPLORERJS|SETTINGS|DATA)__", lambda m: parts[m.group()], PAGE
    )


def render_map_html(data: MapData, path: Path, *, title: str) -> Path:
    """Write :func:`map_html` to ``path`` atomically and return ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(map_html(data, title=title), encoding="utf-8")
    return path
