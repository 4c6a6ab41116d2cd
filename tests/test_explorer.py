"""map.html's explorer panel in real headless Chromium through Selenium: clicks, selections, downloads, labels.

The `chrome` fixture (tests/browser.py) runs Chromium offline (every request goes to a closed port); its
performance log records every request the page makes, so a page that fetched
anything would show it.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.interactive import render_map_html
from tasks.mapdata import NOISE, MapData, prepare_map
from tests.browser import requests_of, wait_for

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "images" / "map-html-panel.png"
GD = "var gd = document.getElementById('map');"
HOSTILE = [
    "</script><script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned = 'img'\">",
    "quotes \" ' ` and \\ backslash",
    "line\u2028separator\u2029paragraph",
    "lone \ud800 surrogate",
]

pytestmark = pytest.mark.browser


def open_map(driver, path: Path) -> None:
    """Open map.html at 1500 x 1000, the size of its screenshot in the docs, once its explorer is ready."""
    requests_of(driver, path.as_uri())  # empties the network log
    driver.set_window_size(1500, 1000)
    driver.get(path.as_uri())
    wait_for(driver, "return window.mapPanelReady || null")


def click_at(driver, x: float, y: float) -> None:
    """A real mouse click at viewport pixel (x, y)."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(int(x), int(y)).pause(0.3).click()
    actions.perform()


def drag(driver, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A real mouse drag from viewport pixel ``start`` to ``end``."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(*map(int, start)).pointer_down()
    for step in range(1, 6):
        pointer.move_to_location(*(int(a + (b - a) * step / 5) for a, b in zip(start, end, strict=True)))
    pointer.pointer_up()
    actions.perform()


PIXELS = (
    GD
    + """var l = gd._fullLayout, r = gd.getBoundingClientRect(), out = {};
gd.data.forEach(function (t) { (t.customdata || []).forEach(function (row, i) {
  out[row[4]] = [r.left + l._size.l + l.xaxis.l2p(t.x[i]), r.top + l._size.t + l.yaxis.l2p(t.y[i])]; }); });
return out;"""
)


@pytest.mark.slow
def test_a_click_shows_the_whole_post_and_its_five_nearest_neighbours(chrome, real_map, tmp_path):
    data, vectors = real_map
    path = render_map_html(data, tmp_path / "map.html", title="sci posts")
    open_map(chrome, path)
    pixels = {int(k): v for k, v in chrome.execute_script(PIXELS).items()}
    labels = chrome.execute_script(
        "return [...document.querySelectorAll('.annotation')].map(e => e.getBoundingClientRect().toJSON())"
    )
    # A post well apart from the others and from every label, so the click can only mean it.
    xy = np.array([pixels[i] for i in range(len(pixels))])
    gaps = np.sort(np.linalg.norm(xy[:, None] - xy[None], axis=2), axis=1)[:, 1]

    def clear_of_labels(p):
        return all(
            not (b["left"] - 8 < p[0] < b["right"] + 8 and b["top"] - 8 < p[1] < b["bottom"] + 8)
            for b in labels
        )

    row = next(i for i in np.argsort(-gaps) if clear_of_labels(xy[i]))
    click_at(chrome, *xy[row])
    post = data.points.iloc[row]
    assert wait_for(chrome, "return document.getElementById('panel').dataset.post") == post["doc_id"]
    panel = chrome.execute_script(
        "var p = document.getElementById('panel'); return {subject: p.querySelector('h2').textContent,"
        " text: p.querySelector('.post-text').textContent,"
        " neighbours: [...p.querySelectorAll('.neighbours button')].map(b => b.dataset.doc)};"
    )
    assert panel["subject"] == post["subject"] and panel["text"] == post["text"]
    similarity = vectors @ vectors[row]
    similarity[row] = -np.inf
    expected = data.points["doc_id"].to_numpy()[np.argsort(-similarity)[:5]].tolist()
    assert panel["neighbours"] == expected

    # A neighbour is a link: it opens that post.
    chrome.find_element("css selector", ".neighbours button").click()
    assert wait_for(chrome, "return document.getElementById('panel').dataset.post") == expected[0]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(SCREENSHOT))
    assert requests_of(chrome, path.as_uri()) == [path.as_uri()]
    # The log does show what a page fetches, so its silence above means something.
    control = tmp_path / "control.html"
    control.write_text('<img src="http://example.org/tracker.png">', encoding="utf-8")
    chrome.get(control.as_uri())
    assert requests_of(chrome, control.as_uri()) == [control.as_uri(), "http://example.org/tracker.png"]


@pytest.mark.slow
def test_a_box_selection_lists_exactly_the_posts_inside_it_and_downloads_them(
    chrome, downloads, real_map, tmp_path
):
    data, _ = real_map
    path = render_map_html(data, tmp_path / "map.html", title="sci posts")
    open_map(chrome, path)
    chrome.find_element("css selector", '.modebar-btn[data-val="select"]').click()
    chrome.execute_script(
        GD + "gd.on('plotly_selected', function (e) { window.selectedRange = e && e.range; });"
    )
    box = chrome.execute_script(
        GD + "var r = gd.getBoundingClientRect(), s = gd._fullLayout._size;"
        "return [r.left + s.l, r.top + s.t, s.w, s.h];"
    )
    left, top, width, height = box
    drag(chrome, (left + 0.3 * width, top + 0.2 * height), (left + 0.75 * width, top + 0.7 * height))
    selected = int(wait_for(chrome, "return document.getElementById('panel').dataset.selected"))
    (x0, x1), (y0, y1) = (sorted(r) for r in wait_for(chrome, "return window.selectedRange").values())
    points = data.points
    inside = points[points["x"].between(x0, x1) & points["y"].between(y0, y1)]
    listed = chrome.execute_script(
        "return [...document.querySelectorAll('.selection button')].map(b => b.dataset.doc)"
    )
    assert 10 < selected == len(inside) < len(points)
    assert sorted(listed) == sorted(inside["doc_id"])
    heading = chrome.execute_script("return document.querySelector('#panel h2').textContent")
    assert heading == f"{len(inside)} posts selected"
    by_class = chrome.execute_script("return [...document.querySelectorAll('.breakdown')][0].textContent")
    for name, count in inside["class_name"].value_counts().items():
        assert f"{name}{count}" in by_class

    chrome.find_element("css selector", "#download-csv").click()
    target = downloads / "map-selection.csv"
    end = time.monotonic() + 20
    while not target.exists() and time.monotonic() < end:
        time.sleep(0.1)
    with target.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["doc_id", "subject", "class", "cluster"]
    expected = inside.set_index("doc_id")
    assert sorted(r["doc_id"] for r in rows) == sorted(expected.index)
    for r in rows:
        assert r["subject"] == expected.loc[r["doc_id"], "subject"]
        assert r["class"] == expected.loc[r["doc_id"], "class_name"]
        assert r["cluster"] == expected.loc[r["doc_id"], "cluster_label"]
    assert requests_of(chrome, path.as_uri()) == [path.as_uri()]


@pytest.mark.slow
def test_cluster_labels_do_not_overlap_and_a_cluster_in_the_list_is_shown_alone(chrome, real_map, tmp_path):
    data, vectors = real_map
    path = render_map_html(data, tmp_path / "map.html", title="sci posts")
    open_map(chrome, path)
    boxes = chrome.execute_script(
        "return [...document.querySelectorAll('.annotation')].map(e => [e.textContent, e.getBoundingClientRect().toJSON()])"
    )
    named = {c for c in set(data.points["cluster"]) if c != NOISE}
    assert 1 <= len(boxes) <= len(named)
    assert all("unassigned" not in text for text, _ in boxes)
    for (_, a), (_, b) in itertools.combinations(boxes, 2):
        apart = (
            a["right"] <= b["left"]
            or b["right"] <= a["left"]
            or a["bottom"] <= b["top"]
            or b["bottom"] <= a["top"]
        )
        assert apart, (a, b)
    chrome.find_element("css selector", "#show-labels").click()
    wait_for(chrome, "return [...document.querySelectorAll('.annotation')].length === 0")

    label = list(data.cluster_colours)[1]
    buttons = chrome.find_elements("css selector", "#cluster-list button")
    assert [b.text.split("\n")[0] for b in buttons][1] == label
    buttons[1].click()
    members = data.points[data.points["cluster_label"] == label]
    drawn = wait_for(
        chrome,
        GD + "var shown = gd.data.filter(t => t.visible !== false && t.x.length);"
        "return shown.length === 1 && document.querySelectorAll('.scatterlayer .point').length"
        " && [shown[0].name, document.querySelectorAll('.scatterlayer .point').length];",
    )
    assert drawn == [label, len(members)]
    central = chrome.execute_script(
        "return [...document.querySelectorAll('.central button')].map(b => b.dataset.doc)"
    )
    rows = members.index.to_numpy()
    unit = vectors[rows] / np.linalg.norm(vectors[rows], axis=1, keepdims=True)
    direction = unit.mean(axis=0)
    assert central == data.points["doc_id"].to_numpy()[rows[np.argsort(-(unit @ direction))[:5]]].tolist()
    chrome.find_element("css selector", ".show-all").click()
    wait_for(
        chrome,
        GD
        + f"return gd.data.filter(t => t.visible !== false && t.x.length).length === {len(data.cluster_colours)}",
    )


def hostile_map() -> MapData:
    """Posts, subjects, class names, cluster names and a column value that try to run script or break out."""
    n = 12
    texts = [
        f"{HOSTILE[i % len(HOSTILE)]} subject {i}\n\nbody {HOSTILE[(i + 1) % len(HOSTILE)]}\nend"
        for i in range(n)
    ]
    rng = np.random.default_rng(0)
    coords = pd.DataFrame(
        {"doc_id": [f"<b>d{i}</b>" for i in range(n)], "x": rng.normal(size=n), "y": rng.normal(size=n)}
    )
    classes = np.array([HOSTILE[i % 3] for i in range(n)], dtype=object)
    return prepare_map(
        coords,
        texts,
        np.array([i % 3 for i in range(n)]),
        classes,
        reducer_label="t-SNE",
        cluster_names={0: HOSTILE[0], 1: HOSTILE[1], 2: HOSTILE[3]},
        matched_classes={0: HOSTILE[0]},
        vectors=rng.normal(size=(n, 8)),
        columns={HOSTILE[1]: [HOSTILE[i % 2] for i in range(n)]},
    )


def test_hostile_texts_show_as_text_and_run_nothing(chrome, tmp_path):
    data = hostile_map()
    path = render_map_html(data, tmp_path / "map.html", title=HOSTILE[0])
    open_map(chrome, path)
    chrome.execute_script("mapExplorer.showPost(0)")
    panel = chrome.execute_script(
        "var p = document.getElementById('panel'); return [p.querySelector('h2').textContent,"
        " p.querySelector('.post-text').textContent, [...p.querySelectorAll('dd')].map(d => d.textContent)];"
    )
    post = data.points.iloc[0]
    assert panel[0] == post["subject"] and panel[1] == post["text"]
    assert panel[2] == [HOSTILE[0], post["cluster_label"], "<b>d0</b>", HOSTILE[0]]
    # The lone surrogate shows as the replacement character; the rest exactly as written.
    chrome.execute_script("mapExplorer.showPost(4)")
    assert "lone \ufffd surrogate" in chrome.execute_script(
        "return document.querySelector('#panel h2').textContent"
    )
    listed = chrome.execute_script(
        "return [...document.querySelectorAll('#cluster-list .name')].map(e => e.textContent)"
    )
    assert listed == list(data.cluster_colours)
    # Colour by the hostile column: its values are legend entries, as text.
    chrome.execute_script(
        "var s = document.getElementById('colour-by'); s.value = '0'; s.dispatchEvent(new Event('change'));"
    )
    legend = wait_for(
        chrome,
        "var t = [...document.querySelectorAll('.legendtext')].map(e => e.textContent);"
        f"return t.length === 2 && t.includes({json.dumps(HOSTILE[0])}) && t;",
    )
    assert sorted(legend) == sorted(HOSTILE[:2])
    assert chrome.execute_script("return document.title") == HOSTILE[0]
    assert chrome.execute_script(
        "return window.pwned === undefined && document.querySelectorAll('img').length === 0"
    )
    assert requests_of(chrome, path.as_uri()) == [path.as_uri()]
