"""The Gemini API key never reaches logs, artifacts, parameters, Parquet or the manifest.

The real command line runs against a real HTTP server on 127.0.0.1 standing in for
Gemini and a real Prefect server, both with debug logs on; then every byte the run
left behind is searched for the key: its output, its run folder, its Prefect home,
and the whole home of the Prefect server (database of logs, artifacts, parameters
and states, and the server's own log).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.embed import EMBEDDERS
from tests.servers import running_prefect_server

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    "gemini" not in EMBEDDERS.names(), reason="the gemini embedder is not on this branch yet"
)


def vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [((seed[i % 32] + i) % 17) / 17 - 0.5 for i in range(dimensions)]


class FakeGemini(BaseHTTPRequestHandler):
    """Answers batchEmbedContents; ``mode`` picks success, a realistic bad-key error, or one echoing the key."""

    mode = "ok"
    keys_seen: list[str] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        key = self.headers.get("x-goog-api-key", "")
        type(self).keys_seen.append(key)
        if self.mode == "ok":
            requests = body.get("requests", [body])
            answer = {
                "embeddings": [
                    {"values": vector(r["content"]["parts"][0]["text"], r.get("outputDimensionality", 768))}
                    for r in requests
                ]
            }
            if "requests" not in body:
                answer = {"embedding": answer["embeddings"][0]}
            self.reply(200, answer)
        else:
            message = "API key not valid. Please pass a valid API key."
            if self.mode == "echo":  # a proxy or SDK version that repeats the request back
                message += f" (received key {key})"
            self.reply(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": message,
                        "status": "INVALID_ARGUMENT",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "API_KEY_INVALID",
                                "domain": "googleapis.com",
                            }
                        ],
                    }
                },
            )

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_gemini():
    FakeGemini.keys_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory, new_prefect_home):
    """A real Prefect server logging at DEBUG, and its home: the runs' API, searched after each run."""
    home = new_prefect_home(tmp_path_factory.mktemp("prefect-server-home"))
    with running_prefect_server(home, environ={**os.environ, "PREFECT_LOGGING_LEVEL": "DEBUG"}) as url:
        yield url, home


def files_holding(secret: bytes, *folders: Path) -> list[str]:
    hits = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and secret in path.read_bytes():
                hits.append(str(path))
    return hits


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ok", "bad-key", "echo"])
def test_the_api_key_appears_in_no_output_log_artifact_parameter_or_file(
    mode, fake_gemini, debug_server, archive, tmp_path, new_prefect_home
):
    key = "AIzaSy" + secrets.token_urlsafe(24)
    FakeGemini.mode = mode
    api_url, server_home = debug_server
    home, runs = new_prefect_home(tmp_path / "prefect"), tmp_path / "runs"
    env = {
        **os.environ,
        "GEMINI_API_KEY": key,
        "GOOGLE_API_KEY": key,
        "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{fake_gemini.server_address[1]}",
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.newsgroups",
            "--embedder",
            "gemini",
            "--archive",
            str(archive),
            "--per-class",
            "5",
            "--perplexity",
            "5",
            "--output-dir",
            str(runs),
            "--debug",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert key in FakeGemini.keys_seen  # the run really used the key the test looks for
    assert (result.returncode == 0) == (mode == "ok"), result.stderr[-3000:]
    secret = key.encode()
    assert secret not in result.stdout and secret not in result.stderr
    assert files_holding(secret, runs, home, server_home) == []
    if mode == "ok":
        assert list(runs.glob("*/manifest.json"))
