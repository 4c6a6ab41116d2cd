"""A real HTTP server on 127.0.0.1 that speaks Gemini's batchEmbedContents, with faults on demand.

It stands in for ``generativelanguage.googleapis.com`` in tests and benchmarks:
point the SDK at it with ``GOOGLE_GEMINI_BASE_URL=server.url``. It answers
``POST /{v1,v1beta}/models/<model>:batchEmbedContents`` with deterministic
vectors (:func:`fake_vector` of each text), checks the ``x-goog-api-key``
header, refuses batches over 100 texts as the service does, and injects the
faults it is told to, in arrival order::

    with FakeGemini(api_key="k", faults=["429", "503", "timeout"]) as server:
        ...  # requests 1-3 fail as scripted, the rest succeed
    server.batch_sizes, server.max_in_flight, server.statuses

Faults: ``"429"`` (RESOURCE_EXHAUSTED with a RetryInfo ``retryDelay``),
``"500"``, ``"503"``, ``"504"``, ``"400"`` (API_KEY_INVALID), ``"403"``
(PERMISSION_DENIED), ``"slow"`` (answers after ``slow_s``) and ``"timeout"``
(answers after ``hang_s``, past the client's timeout), and ``"short"`` (one
vector too few, as a broken proxy might answer). ``always`` is the fault
used once the script is spent (None: succeed).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):batchEmbedContents$")
MAX_BATCH = 100
ERRORS = {
    "400": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"),
    "403": (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", None),
    "429": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", None),
    "500": (500, "INTERNAL", "An internal error has occurred.", None),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", None),
    "504": (504, "DEADLINE_EXCEEDED", "The request timed out.", None),
}


def fake_vector(text: str, dimensions: int) -> np.ndarray:
    """The server's vector for ``text``: a seeded Gaussian of ``dimensions`` values (not normalised)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dimensions).astype(np.float32) * 3


def error_body(code: int, status: str, message: str, reason: str | None, retry_delay: str) -> dict:
    """A Google API error payload, with RetryInfo on 429 and ErrorInfo when ``reason`` is given."""
    details: list[dict] = []
    if code == 429:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason})
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


class FakeGemini:
    """The server, running in a daemon thread; use it as a context manager.

    Parameters
    ----------
    api_key : str
        The only key accepted; any other answers 400 API_KEY_INVALID.
    faults : iterable of str
        Faults for the first requests, one per request in arrival order.
    always : str or None
        Fault for every request once ``faults`` is spent.
    latency_s : float
        Fixed delay before every answer (the benchmark's service time).
    retry_delay : str
        RetryInfo ``retryDelay`` sent with a 429, e.g. ``"0.05s"``.
    slow_s, hang_s : float
        Delay of a ``"slow"`` answer, and of a ``"timeout"`` one.
    default_dimensions : int
        Vector size when a request names no ``outputDimensionality``.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        faults: Iterable[str] = (),
        always: str | None = None,
        latency_s: float = 0.0,
        retry_delay: str = "0.05s",
        slow_s: float = 0.3,
        hang_s: float = 3.0,
        default_dimensions: int = 3072,
    ) -> None:
        self.api_key, self.always, self.latency_s = api_key, always, latency_s
        self.retry_delay, self.slow_s, self.hang_s = retry_delay, slow_s, hang_s
        self.default_dimensions = default_dimensions
        self._faults = deque(faults)
        self._lock = threading.Lock()
        self.paths: list[str] = []
        self.batch_sizes: list[int] = []  # texts per request, every request
        self.statuses: list[int] = []
        self.texts: list[str] = []  # texts of the requests answered 200, in answer order
        self.request_times: list[float] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def requests(self) -> int:
        """Requests received (every attempt counts)."""
        return len(self.paths)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else self.always

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.paths.append(self.path)
                    server.headers.append(dict(self.headers))
                    server.request_times.append(time.monotonic())
                    server.batch_sizes.append(len(body.get("requests", [])))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload = server._answer(self.path, self.headers, body)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                        server.statuses.append(status)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a scripted timeout)
                    self.close_connection = True

        return Handler

    def _answer(self, path: str, headers, body: dict) -> tuple[int, dict]:
        match = PATH.match(path)
        if not match:
            return 404, error_body(404, "NOT_FOUND", f"Unknown path {path}.", None, "")
        fault = self._next_fault()
        if headers.get("x-goog-api-key") != self.api_key:
            fault = "400"
        time.sleep({"slow": self.slow_s, "timeout": self.hang_s}.get(fault or "", self.latency_s))
        if fault in ERRORS:
            return ERRORS[fault][0], error_body(*ERRORS[fault], self.retry_delay)
        requests = body.get("requests", [])
        if len(requests) > MAX_BATCH:
            message = (
                f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests are allowed in a batch."
            )
            return 400, error_body(400, "INVALID_ARGUMENT", message, None, "")
        embeddings, texts = [], []
        for request in requests:
            # One vector per request entry, over all its parts, as the service does.
            text = "".join(part.get("text", "") for part in request["content"]["parts"])
            dimensions = request.get("outputDimensionality") or self.default_dimensions
            embeddings.append({"values": fake_vector(text, dimensions).tolist()})
            texts.append(text)
        if fault == "short":
            embeddings, texts = embeddings[:-1], texts[:-1]
        with self._lock:
            self.texts.extend(texts)
        return 200, {"embeddings": embeddings}
