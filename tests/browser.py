"""Headless Chromium for the browser tests, through Selenium and Debian's chromedriver.

:func:`open_chrome` starts Debian's ``/usr/bin/chromedriver`` (given explicitly,
so Selenium never downloads a driver) with the flags the project's facts list:
no sandbox, no GPU, no background networking, a fresh profile; offline by default
(every request, localhost included, goes to a closed port) with software WebGL.
The ``chrome`` fixture in ``tests/conftest.py`` yields such a driver, a plain
``selenium.webdriver.Chrome``; the helpers below wait for what a page draws.

A test that needs a browser::

    @pytest.mark.browser
    def test_the_page(chrome, tmp_path):
        chrome.get(path.as_uri())
        wait_for(chrome, "return window.mapRenderedAt || null")
        assert chrome.execute_script("return document.title") == "Map"
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]
OFFLINE_ARGS = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
"""Send every request, localhost included, to a closed port, so a page that fetches anything fails."""
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
"""Software WebGL, which headless Chromium without a GPU no longer enables on its own."""
TIMEOUT_S = 60.0


def chromium_available() -> bool:
    """Debian's chromium and chromedriver are installed, and Selenium is importable."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return bool(shutil.which("chromium")) and Path(CHROMEDRIVER).exists()


def require_chromium() -> None:
    """Skip a browser test where Chromium, chromedriver or Selenium is missing; under CI (CI set), fail instead.

    .ci/run installs all three, so a browser test that would skip there hides a broken install.
    """
    if chromium_available():
        return
    message = "needs Debian's chromium and chromium-driver, and selenium (pip install -e '.[test]')"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def open_chrome(
    profile: Path, *, offline: bool = True, log_network: bool = False, downloads: Path | None = None
) -> Iterator[Any]:
    """A ``selenium.webdriver.Chrome`` on a fresh ``profile``; quits it (and chromedriver) at the end.

    ``offline=False`` lets the page reach servers (the Prefect UI on 127.0.0.1);
    ``log_network`` keeps DevTools' network events for :func:`requests_of`;
    ``downloads``, an existing folder, is where what a page downloads is saved, without asking.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in [
        *CHROMIUM_ARGS,
        *(OFFLINE_ARGS + WEBGL_ARGS if offline else []),
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(arg)
    if log_network:
        # The page's own requests, seen by DevTools; Chromium's background traffic is not in it.
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(TIMEOUT_S)
    if downloads is not None:
        # DevTools' setting too: it allows downloads without a prompt, whatever the profile's preferences.
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(
    driver: Any, script: str, accept: Callable[[Any], bool] = bool, timeout: float = TIMEOUT_S
) -> Any:
    """Run ``script`` in the page until ``accept`` takes its result (by default: any true value); return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = driver.execute_script(script)
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {script!r} (last: {result!r})")
        time.sleep(0.1)


def wait_for_text(driver: Any, *texts: str, timeout: float = TIMEOUT_S) -> str:
    """Wait until the rendered page holds every one of ``texts``; return its HTML."""
    deadline = time.monotonic() + timeout
    while not all(text in (page := driver.page_source) for text in texts):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for the page to show {texts}")
        time.sleep(0.25)
    return page


def click(driver: Any, css: str, timeout: float = TIMEOUT_S) -> None:
    """Click the element ``css`` once it can be clicked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, timeout).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css))
    ).click()


def type_into(driver: Any, css: str, text: str, timeout: float = TIMEOUT_S) -> None:
    """Type ``text`` into the element ``css``, key by key, as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    field = WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    field.send_keys(text)


def requests_of(driver: Any, document: str) -> list[str]:
    """URLs the page ``document`` requested, itself included (needs ``log_network=True``).

    Reads (and so empties) the browser's log, which also holds Chromium's own pages.
    """
    messages = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return [
        m["params"]["request"]["url"]
        for m in messages
        if m["method"] == "Network.requestWillBeSent" and m["params"].get("documentURL") == document
    ]


def fit_to_content(driver: Any, width: int = 1400) -> None:
    """Resize the window to the height of the page's scrolled content, for a full-page screenshot."""
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight,"
        " ...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
    )
    driver.set_window_size(width, int(height) + 120)
