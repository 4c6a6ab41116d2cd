from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs_version

from tasks.interactive import WEBGL_FROM, map_figure, map_html, render_map_html
from tasks.mapdata import NOISE, NOISE_COLOUR, MapData, prepare_map
from tests.browser import click, requests_of, type_into, wait_for

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "images" / "map-html.png"


def small_map(*, labelled: bool = True) -> MapData:
    """Nine posts in three clusters (one point of noise); one post tries to inject markup."""
    texts = [
        "Orbits\n\nThe shuttle reached orbit.",
        "Launch window\n\nThe launch slipped a day.",
        "<script>alert('x')</script> & more\n\n<b>bold</b> claims about \"rockets\"",
        "Flour\n\nBread needs strong flour.",
        "Ovens\n\nPreheat the oven first.",
        "Yeast\n\nThe dough rose overnight.",
        "Chords\n\nA minor is an easy chord.",
        "Frets\n\nThe fret buzz went away.",
        "Tuning\n\nDrop D tuning on the guitar.",
    ]
    coords = pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(9)], "x": np.arange(9.0), "y": np.arange(9.0) % 3}
    )
    classes = np.repeat(["sci.space", "misc.food", "rec.music"], 3) if labelled else None
    return prepare_map(
        coords,
        texts,
        np.array([0, 0, NOISE, 1, 1, 1, 2, 2, 2]),
        classes,
        reducer_label="t-SNE",
        cluster_names={0: "orbit, launch", 1: "flour, oven"},
        matched_classes={0: "sci.space"} if labelled else None,
    )


class Links(HTMLParser):
    """Every src/href attribute of the page's markup (script bodies are not markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]


# --- the page as a string ----------------------------------------------------------------------


def test_the_page_links_nothing_outside_itself():
    parser = Links()
    parser.feed(map_html(small_map(), title="Map"))
    assert parser.links == []


def test_the_page_inlines_the_plotly_bundle_of_the_installed_package():
    page = map_html(small_map(), title="Map")
    assert f"plotly.js v{get_plotlyjs_version()}" in page
    assert "cdn.plot.ly" not in page.split("plotly.js v", 1)[0]


def test_each_post_is_in_the_page_once():
    data = small_map()
    page = map_html(data, title="Map")
    for subject in ["Orbits", "Launch window", "Flour", "Tuning"]:
        assert page.count(f'"{subject}"') == 1
    unlabelled = map_html(small_map(labelled=False), title="Map")
    assert unlabelled.count('"Orbits"') == 1


def test_every_point_is_in_a_cluster_trace_and_the_class_traces_wait_for_the_toggle():
    figure = map_figure(small_map())
    by_cluster, by_class, highlight = figure.data[:4], figure.data[4:7], figure.data[7]
    assert sum(len(trace.x) for trace in by_cluster) == 9
    # The page fills them at the first toggle (checked in the browser below), by the class in each hover row.
    assert all(trace.x == () and trace.customdata == () for trace in by_class)
    hover_classes = {row[0] for trace in by_cluster for row in trace.customdata}
    assert hover_classes == {trace.name for trace in by_class}
    assert [t.name for t in by_cluster] == [
        "0: orbit, launch (sci.space)",
        "1: flour, oven",
        "cluster 2",
        "unassigned",
    ]
    assert by_cluster[-1].marker.color == NOISE_COLOUR
    assert [t.name for t in by_class] == ["misc.food", "rec.music", "sci.space"]
    assert highlight.x == () and highlight.name == "search matches"


def test_post_texts_are_escaped_so_they_cannot_inject_markup():
    data = small_map()
    page = map_html(data, title="<i>Map</i>")
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "<title>&lt;i&gt;Map&lt;/i&gt;</title>" in page
    noise = map_figure(data).data[3]
    # Plotly decodes &amp; &lt; &gt; but shows &quot; as written: quotes stay as they are.
    assert noise.customdata[0][2] == "&lt;script&gt;alert('x')&lt;/script&gt; &amp; more"
    assert noise.customdata[0][3] == '&lt;b&gt;bold&lt;/b&gt; claims about "rockets"'


def test_long_previews_are_wrapped_for_the_hover_label():
    data = small_map()
    long_post = "Essay\n\n" + " ".join(["long-term"] * 40)
    points = data.points.copy()
    points.loc[0, "preview"] = long_post.split("\n\n")[1]
    figure = map_figure(MapData(points, data.reducer_label, data.class_colours, data.cluster_colours))
    preview = figure.data[0].customdata[0][3]
    # Broken at spaces only, so the page's search can put the spaces back.
    assert preview.count("<br>") >= 3 and preview.replace("<br>", " ") == " ".join(["long-term"] * 40)


def test_the_toggle_shows_clusters_first_then_classes():
    figure = map_figure(small_map())
    (menu,) = figure.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["Colour by cluster", "Colour by class"]
    assert {b.method for b in menu.buttons} == {"skip"}
    assert menu.buttons[0].args[0]["visible"] == [True] * 4 + [False] * 3 + [True]
    assert menu.buttons[1].args[0]["visible"] == [False] * 4 + [True] * 3 + [True]
    assert [t.visible for t in figure.data] == [True] * 4 + [False] * 3 + [None]


def test_an_unlabelled_map_has_only_the_cluster_colouring_and_no_toggle():
    figure = map_figure(small_map(labelled=False))
    assert figure.layout.updatemenus == ()
    assert len(figure.data) == 5
    assert "class:" not in figure.data[0].hovertemplate and "cluster:" in figure.data[0].hovertemplate


def test_render_map_html_writes_the_page_and_leaves_no_temporary_file(tmp_path):
    data = small_map()
    path = render_map_html(data, tmp_path / "map.html", title="Map")
    assert path.read_text(encoding="utf-8") == map_html(data, title="Map")
    assert [p.name for p in tmp_path.iterdir()] == ["map.html"]


# --- the page in a browser ---------------------------------------------------------------------


DATA = "var gd = document.getElementById('map');"


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_draws_hovers_searches_and_toggles_offline(real_map, tmp_path, chrome):
    data, _ = real_map
    points = data.points
    path = render_map_html(
        data, tmp_path / "map.html", title=f"20 Newsgroups, sci groups: {len(points)} posts"
    )
    # A post with a word in its subject that few others hold, to search for.
    post = points.loc[points["subject"].str.contains("Clipper", case=False)].iloc[0]
    word = "clipper"
    searched = (points["subject"] + " " + points["preview"]).str.lower()
    expected = int(searched.str.contains(word, regex=False).sum())
    control = tmp_path / "control.html"
    control.write_text('<img src="http://example.org/tracker.png">', encoding="utf-8")

    chrome.set_window_size(1400, 1000)
    chrome.get(path.as_uri())
    wait_for(chrome, "return window.mapRenderedAt || null", lambda value: value is not None)
    drawn = chrome.execute_script(
        DATA + "return gd.data.filter(t => t.visible !== false).map(t => t.x.length);"
    )
    assert sum(drawn[:-1]) == len(points) and drawn[-1] == 0

    # The hover rows are attached once the map is drawn.
    wait_for(chrome, "return window.mapHoverReady || null", lambda value: value is not None)
    hover = chrome.execute_script(
        DATA
        + "return gd.data.filter(t => t.visible !== false).flatMap(t => t.customdata || []).map(c => c[2]);"
    )
    assert html.escape(post["subject"]) in hover
    type_into(chrome, "#search", word)
    count = wait_for(chrome, "return document.getElementById('search-count').textContent")
    assert count == f"{expected} of {len(points)} posts"
    matches = chrome.execute_script(
        DATA + "var h = gd.data[gd.data.length - 1]; return h.x.map((x, i) => [x, h.y[i]]);"
    )
    assert len(matches) == expected
    assert [round(float(post["x"]), 3), round(float(post["y"]), 3)] in matches
    # The hover label really drawn when the pointer is over the post.
    chrome.execute_script(DATA + f"Plotly.Fx.hover(gd, {{xval: {post['x']}, yval: {post['y']}}});")
    label = wait_for(
        chrome,
        "return [...document.querySelectorAll('.hoverlayer .hovertext')].map(e => e.textContent).join(' ')",
    )
    assert post["subject"] in label and post["cluster_label"] in label

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(SCREENSHOT))

    legend = "return [...document.querySelectorAll('.legendtext')].map(e => e.textContent)"
    assert chrome.execute_script(legend) == list(data.cluster_colours)
    click(chrome, ".updatemenu-button:nth-of-type(2)")
    wait_for(chrome, legend, lambda names: names == list(data.class_colours))
    colours = chrome.execute_script(
        DATA + "return gd.data.filter(t => t.visible === true).map(t => t.marker.color);"
    )
    assert colours[:-1] == list(data.class_colours.values())
    drawn = chrome.execute_script(
        DATA + "return gd.data.filter(t => t.visible === true).map(t => t.x.length);"
    )
    assert sum(drawn[:-1]) == len(points)
    by_class = chrome.execute_script(
        DATA + "return gd.data.filter(t => t.visible === true).map(t => [t.name, t.customdata || []]);"
    )
    assert {name for name, rows in by_class[:-1] for row in rows if row[0] != name} == set()
    assert html.escape(post["subject"]) in [row[2] for _, rows in by_class for row in rows]

    assert chrome.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
    assert requests_of(chrome, path.as_uri()) == [path.as_uri()]
    # The log does show what a page fetches, so its silence above means something.
    chrome.get(control.as_uri())
    assert requests_of(chrome, control.as_uri()) == [control.as_uri(), "http://example.org/tracker.png"]


def test_settings_in_the_page_name_the_cluster_and_class_traces_and_the_highlight():
    page = map_html(small_map(), title="Map")
    settings = json.loads(re.search(r"settings = (\{.*?\})", page).group(1))
    assert settings == {"clusters": [0, 1, 2, 3], "classes": [4, 5, 6], "highlight": 7}


def test_small_maps_are_drawn_in_svg_and_large_ones_with_webgl():
    rng = np.random.default_rng(0)
    n = WEBGL_FROM
    coords = pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(n)], "x": rng.normal(size=n), "y": rng.normal(size=n)}
    )
    large = prepare_map(coords, ["Subject\n\nbody"] * n, rng.integers(0, 3, n), reducer_label="PCA")
    assert {trace.type for trace in map_figure(large).data} == {"scattergl"}
    assert {trace.type for trace in map_figure(small_map()).data} == {"scatter"}
