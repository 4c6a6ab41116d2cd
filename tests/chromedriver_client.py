"""A few W3C WebDriver calls to Debian's chromedriver over HTTP, enough to drive the Prefect UI.

Selenium is not needed for opening a page, clicking a tab, reading the rendered
DOM and saving a screenshot. Chromium runs headless with the flags the project's
facts list (no sandbox, no GPU, no background networking, a fresh profile).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

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


def chromium_available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


class WebDriver:
    """One chromedriver process and one browser session; use it as a context manager."""

    def __init__(
        self, *, profile: Path, timeout: float = 60, args: Sequence[str] = (), log_network: bool = False
    ) -> None:
        self.profile, self.timeout, self.args, self.log_network = profile, timeout, list(args), log_network

    @property
    def driver_pid(self) -> int:
        """Process id of chromedriver; Chromium's processes are its descendants."""
        return self._driver.pid

    def __enter__(self) -> WebDriver:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._driver = subprocess.Popen(
            ["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=self.timeout)
            self.wait_until(self._ready, what="chromedriver to start")
            options = {
                "binary": shutil.which("chromium"),
                "args": [*CHROMIUM_ARGS, *self.args, f"--user-data-dir={self.profile}"],
            }
            capabilities: dict[str, Any] = {"goog:chromeOptions": options}
            if self.log_network:
                # The page's own requests, seen by DevTools; Chromium's background traffic is not in it.
                options["perfLoggingPrefs"] = {"enableNetwork": True, "enablePage": False}
                capabilities["goog:loggingPrefs"] = {"performance": "ALL"}
            session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
            self._session = f"/session/{session['sessionId']}"
        except BaseException:
            self._driver.kill()
            self._driver.wait(10)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call("DELETE", self._session)
        finally:
            self._http.close()
            self._driver.terminate()
            try:
                self._driver.wait(10)
            except subprocess.TimeoutExpired:
                self._driver.kill()
                self._driver.wait(10)

    def _ready(self) -> bool:
        try:
            return bool(self._http.get("/status").json()["value"]["ready"])
        except httpx.HTTPError:
            return False

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self._http.request(method, path, json=body if body is not None else None)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"WebDriver {method} {path} failed: {value.get('message', value)}")
        return value

    def wait_until(self, check: Callable[[], Any], *, what: str, interval: float = 0.25) -> Any:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if result := check():
                return result
            time.sleep(interval)
        raise TimeoutError(f"gave up after {self.timeout:.0f} s waiting for {what}")

    def open(self, url: str) -> None:
        self._call("POST", f"{self._session}/url", {"url": url})

    def source(self) -> str:
        return self._call("GET", f"{self._session}/source")

    def wait_for_text(self, *texts: str) -> str:
        """Wait until the rendered page holds every one of ``texts``; return its HTML."""

        def shown() -> str | None:
            page = self.source()
            return page if all(text in page for text in texts) else None

        return self.wait_until(shown, what=f"the page to show {texts}")

    def run(self, script: str) -> Any:
        return self._call("POST", f"{self._session}/execute/sync", {"script": script, "args": []})

    def wait_for(self, script: str, accept: Callable[[Any], bool]) -> Any:
        """Run ``script`` until ``accept`` takes its result; return the result."""
        box: list[Any] = []

        def check() -> bool:
            box[:] = [self.run(script)]
            return accept(box[0])

        self.wait_until(check, what=f"{script!r} to be accepted")
        return box[0]

    def click(self, css: str) -> None:
        element = self.wait_until(lambda: self._find(css), what=f"an element {css!r}")
        self._call("POST", f"{self._session}/element/{element}/click", {})

    def requests_of(self, document: str) -> list[str]:
        """URLs the page ``document`` requested, itself included (needs ``log_network=True``).

        Reads (and so empties) the browser's log, which also holds Chromium's own pages.
        """
        entries = self._call("POST", f"{self._session}/se/log", {"type": "performance"})
        messages = [json.loads(entry["message"])["message"] for entry in entries]
        return [
            m["params"]["request"]["url"]
            for m in messages
            if m["method"] == "Network.requestWillBeSent" and m["params"].get("documentURL") == document
        ]

    def type(self, css: str, text: str) -> None:
        """Type ``text`` into the element ``css``, key by key, as a user would."""
        element = self.wait_until(lambda: self._find(css), what=f"an element {css!r}")
        self._call("POST", f"{self._session}/element/{element}/value", {"text": text})

    def _find(self, css: str) -> str | None:
        response = self._http.post(f"{self._session}/element", json={"using": "css selector", "value": css})
        return next(iter(response.json()["value"].values())) if response.status_code == 200 else None

    def fit_to_content(self, width: int = 1400) -> None:
        """Resize the window to the height of the page's scrolled content, for a full-page screenshot."""
        height = self.run(
            "return Math.max(document.body.scrollHeight,"
            " ...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
        )
        self.resize(width, int(height) + 120)

    def resize(self, width: int, height: int) -> None:
        """Set the window's outer size in pixels."""
        self._call("POST", f"{self._session}/window/rect", {"width": width, "height": height})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("GET", f"{self._session}/screenshot")))
        return path
