"""Ctrl-C, SIGTERM and SIGKILL of a real command while it embeds: it stops at once and leaves no process behind.

Each case runs ``python -m flows.newsgroups`` in a session of its own, embedding
with Gemini against a local fake service whose every answer takes a while, so
the signal surely lands while batches are being embedded. The process tree is
read from ``/proc`` before the signal and checked afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.watchdog import _running, descendants, start_time
from tests.gemini_server import FakeGemini

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key"
N_TEXTS = 200


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory, new_prefect_home) -> Path:
    """One Prefect home for the module's commands, its database already migrated."""
    return new_prefect_home(tmp_path_factory.mktemp("prefect-home"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "posts.csv"
    pd.DataFrame(
        {
            "text": [f"post number {i} about topic {i % 4}" for i in range(N_TEXTS)],
            "label": [i % 4 for i in range(N_TEXTS)],
        }
    ).to_csv(path, index=False)
    return path


def command(corpus: Path, output_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "flows.newsgroups", "--corpus", str(corpus), "--embedder", "gemini",
        "--batch-size", "5", "--max-concurrency", "1", "--requests-per-minute", "100000",
        "--tokens-per-minute", "10000000", "--reducer", "pca", "--output-dir", str(output_dir),
        "--run-name", "r",
    ]  # fmt: skip


def start(
    args: list[str], server: FakeGemini, prefect_home: Path, log: Path, api_url: str | None = None
) -> subprocess.Popen:
    """The command in a session of its own; with ``api_url`` it uses that server instead of starting one."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
        "GOOGLE_GEMINI_BASE_URL": server.url,
        "GEMINI_API_KEY": KEY,
    }
    env.pop("PREFECT_API_URL", None)  # a temporary server of its own, as a user's command has
    if api_url:
        env["PREFECT_API_URL"] = api_url
    with log.open("w") as out:
        # A session of its own, like a command typed at a terminal: killpg then reaches what a Ctrl-C reaches.
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def parts(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob(".embedding-cache/*/part-*.parquet"))


def wait_for_parts(process: subprocess.Popen, output_dir: Path, log: Path, count: int = 2) -> None:
    deadline = time.monotonic() + 400
    while len(parts(output_dir)) < count:
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"no batch was stored while the run lived:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def tree(pid: int) -> list[tuple[int, int | None]]:
    """The descendants of ``pid`` with their start times; the temporary Prefect server among them."""
    return [(child, start_time(child)) for child in descendants(pid)]


def still_running(processes: list[tuple[int, int | None]], within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while True:
        alive = [pid for pid, started in processes if started and _running(pid, started)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def uvicorn_in(processes: list[tuple[int, int | None]]) -> bool:
    return any(b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in processes)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "status"),
    [("ctrl-c", 130), ("sigint", 130), ("sigterm", 143)],
    ids=["ctrl-c-to-the-group", "sigint-to-the-main-process", "sigterm-to-the-main-process"],
)
def test_an_interrupt_while_embedding_stops_within_5_s_keeps_the_cache_and_ends_the_server(
    how, status, corpus, prefect_home, tmp_path
):
    output_dir, log = tmp_path / "runs", tmp_path / "run.log"
    with FakeGemini(api_key=KEY, latency_s=0.3, default_dimensions=768) as server:
        process = start(command(corpus, output_dir), server, prefect_home, log)
        wait_for_parts(process, output_dir, log)
        children = tree(process.pid)
        assert uvicorn_in(children), children
        sent = time.monotonic()
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        else:
            os.kill(process.pid, signal.SIGINT if how == "sigint" else signal.SIGTERM)
        returncode = process.wait(timeout=30)
        took = time.monotonic() - sent
        requests = server.requests
        kept = parts(output_dir)
        time.sleep(1.5)
        assert server.requests == requests, "a batch was sent after the command exited"
    output = log.read_text()
    assert returncode == status, output[-3000:]
    assert took < 5, f"took {took:.1f} s to stop"
    assert "Traceback" not in output
    stored = sum(pq.ParquetFile(p).metadata.num_rows for p in kept)
    assert 10 <= stored < N_TEXTS
    interrupted = [line for line in output.splitlines() if line.startswith("interrupted:")]
    assert interrupted == [
        f"interrupted: the {stored} texts embedded so far are kept in the embedding cache "
        f"{output_dir / '.embedding-cache'}; run the same command again to continue from there."
    ]
    assert parts(output_dir) == kept
    assert not (output_dir / "r" / "manifest.json").exists() and (output_dir / "r" / ".lock").exists()
    assert still_running(children, within_s=0.5) == []


@pytest.mark.slow
def test_after_sigterm_the_same_command_continues_and_embeds_only_the_rest(
    corpus, prefect_home, tmp_path, prefect_server
):
    output_dir, log = tmp_path / "runs", tmp_path / "run.log"
    with FakeGemini(api_key=KEY, latency_s=0.2, default_dimensions=768) as server:
        process = start(command(corpus, output_dir), server, prefect_home, log, prefect_server)
        wait_for_parts(process, output_dir, log, count=14)  # 70 texts: enough to measure a throughput
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 143
        stored = sum(pq.ParquetFile(p).metadata.num_rows for p in parts(output_dir))
        time.sleep(1.5)  # a request in flight at the signal reaches the server's record after its latency
        first = len(server.texts)
        again = start(
            command(corpus, output_dir), server, prefect_home, tmp_path / "again.log", prefect_server
        )
        assert again.wait(timeout=600) == 0, (tmp_path / "again.log").read_text()[-3000:]
        assert len(server.texts) - first == N_TEXTS - stored
    manifest = json.loads((output_dir / "r" / "manifest.json").read_text())
    # The stopped run kept its measured throughput: the next plan used it, not the typical figure.
    assert manifest["plan"]["throughput_source"] == "measured here"
    assert manifest["plan"]["to_embed"] == N_TEXTS - stored


@pytest.mark.slow
def test_sigkill_of_the_command_leaves_no_server_or_watchdog_running(corpus, prefect_home, tmp_path):
    output_dir, log = tmp_path / "runs", tmp_path / "run.log"
    with FakeGemini(api_key=KEY, latency_s=0.3, default_dimensions=768) as server:
        process = start(command(corpus, output_dir), server, prefect_home, log)
        wait_for_parts(process, output_dir, log)
        children = tree(process.pid)
        assert uvicorn_in(children) and len(children) >= 2, children  # the server and the watchdog
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert still_running(children, within_s=5) == []
        requests = server.requests
        time.sleep(1)
        assert server.requests == requests
