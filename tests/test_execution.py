"""Embed batches on Dask workers: settings, the scheduler check, the same results as threads, shared Gemini limits."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.config import (
    EmbeddingSettings,
    ExecutionSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
)
from tasks.errors import InputError
from tasks.execution import check_execution, scheduler_identity
from tests.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "test-key-dask"
DASK_COMMAND = str(Path(sys.executable).with_name("dask"))
DASK = ExecutionSettings(task_runner="dask", dask_workers=2)


@pytest.fixture
def worker_env(monkeypatch):
    """Dask workers are new processes: they must import this checkout's code, whatever the cwd."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task_runner": "spark"}, "task_runner"),
        ({"task_runner": "dask", "dask_workers": 0}, "dask_workers"),
        ({"task_runner": "dask", "dask_address": "127.0.0.1:8786"}, "dask_address"),
        ({"dask_address": "tcp://127.0.0.1:8786"}, "dask_address"),
    ],
)
def test_invalid_execution_settings_are_rejected_naming_the_field(changes, field):
    with pytest.raises(ValidationError, match=field):
        ExecutionSettings(**changes)


def test_an_unreachable_scheduler_is_refused_before_any_work_with_the_fix():
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(
        InputError, match=rf"{address}, which does not answer as a Dask scheduler .*`dask scheduler`"
    ):
        check_execution(ExecutionSettings(task_runner="dask", dask_address=address))


def test_the_thread_runner_and_a_local_cluster_pass_the_check():
    check_execution(ExecutionSettings())
    check_execution(DASK)


@pytest.fixture
def silent_listener():
    """A port that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_listener_is_refused_in_one_sentence_within_15_s_leaving_no_folder(
    silent_listener, tmp_path
):
    start = time.monotonic()
    result = _command(tmp_path, "--task-runner", "dask", "--dask-address", silent_listener)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and silent_listener in lines[0] and "does not answer as a Dask scheduler" in lines[0]
    )
    assert elapsed < 15
    assert not (tmp_path / "runs").exists()


def _command(tmp_path, *flags, env=None):
    """The command line on a tiny corpus, in a new process; returns the finished process."""
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("text,label\n" + "".join(f"post number {i},c{i % 2}\n" for i in range(8)))
    command = [sys.executable, "-m", "flows.newsgroups", "--corpus", str(corpus), "--embedder", "tfidf"]
    command += ["--output-dir", str(tmp_path / "runs"), *flags]
    env = env or {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def scheduler():
    """A real ``dask scheduler`` on a free port of 127.0.0.1; yields its address."""
    address = f"tcp://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            DASK_COMMAND,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            address.rsplit(":", 1)[1],
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while scheduler_answers(address) is False:
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.5)
        yield address
    finally:
        process.terminate()
        process.wait(30)


def scheduler_answers(address: str) -> bool:
    try:
        return scheduler_identity(address)["type"] == "Scheduler"
    except InputError:
        return False


@contextlib.contextmanager
def worker(address: str, tmp_path, api: str | None):
    """A real ``dask worker`` for ``address``, reporting to the Prefect API ``api`` (None: none set)."""
    from distributed import Client

    env = {**os.environ, "PYTHONPATH": ROOT, "PREFECT_HOME": str(tmp_path / "worker-prefect")}
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api
    process = subprocess.Popen(
        [DASK_COMMAND, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        yield
    finally:
        process.terminate()
        process.wait(60)


@pytest.mark.slow
def test_a_cluster_whose_workers_have_no_prefect_server_is_refused_naming_what_to_set(scheduler, tmp_path):
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    settings = ExecutionSettings(task_runner="dask", dask_address=scheduler)
    with worker(scheduler, tmp_path, api=None):
        with pytest.raises(
            InputError, match=rf"report to no Prefect server .*PREFECT_API_URL={re.escape(api)} dask worker"
        ):
            check_execution(settings)
    with worker(scheduler, tmp_path, api=api):
        check_execution(settings)  # every worker reports to this run's server


@pytest.mark.slow
def test_the_command_on_a_cluster_without_prefect_api_url_is_refused_before_work(scheduler, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    result = _command(tmp_path, "--task-runner", "dask", "--dask-address", scheduler, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: A run on the Dask cluster at {scheduler} needs a Prefect server its workers can reach, and "
        "PREFECT_API_URL is not set: start one with `prefect server start`, then set "
        "PREFECT_API_URL=http://<host>:4200/api for this command and for each `dask worker`."
    ]
    assert not (tmp_path / "runs").exists()


def _run(archive, data_home, output_dir, name, embedding, execution):
    from flows.newsgroups import newsgroups

    return newsgroups(
        source=SourceSettings(archive=archive, data_home=data_home),
        sampling=SamplingSettings(per_class=8),
        embedding=embedding,
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=output_dir, run_name=name),
        execution=execution,
    )


def _files(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_thread_runners_outputs_and_vectors(
    archive, data_home, tmp_path, worker_env, caplog
):
    import logging

    from tasks.embed import EMBEDDERS
    from tasks.embed.cache import EmbeddingCache, text_keys
    from tasks.layout import TMP_PREFIX, read_embeddings

    threads = _run(
        archive,
        data_home,
        tmp_path,
        "threads",
        EmbeddingSettings(batch_size=8, cache=False),
        ExecutionSettings(),
    )
    cache_dir = tmp_path / "dask-cache"
    caplog.set_level(logging.INFO, logger="prefect.task_runner.dask")
    on_dask = _run(
        archive, data_home, tmp_path, "dask", EmbeddingSettings(batch_size=8, cache_dir=cache_dir), DASK
    )
    assert "Creating a new Dask cluster" in caplog.text  # the batches did go to a Dask cluster

    assert _files(tmp_path / "threads") == _files(tmp_path / "dask")
    assert threads["counts"] == on_dask["counts"] and threads["counts"]["sampled"] == 32
    assert set(threads) == set(on_dask)
    ids_t, vectors_t = read_embeddings(tmp_path / "threads" / "embeddings.parquet")
    ids_d, vectors_d = read_embeddings(tmp_path / "dask" / "embeddings.parquet")
    assert ids_t == ids_d
    np.testing.assert_allclose(vectors_d, vectors_t, atol=1e-5)
    assert on_dask["parameters"]["execution"]["task_runner"] == "dask"

    # The workers wrote the cache: one whole part per batch, every text found, the same vectors.
    assert on_dask["embedding"]["cache"]["embedded"] == 32
    import pyarrow.parquet as pq

    texts = pq.read_table(tmp_path / "dask" / "sample.parquet").to_pandas()["text"].tolist()
    description = EMBEDDERS.get("local").from_settings(EmbeddingSettings(), seed=0).describe()
    store = EmbeddingCache.open(cache_dir, description)
    assert len(list(store.folder.glob("part-*.parquet"))) == 4
    assert not list(store.folder.glob(TMP_PREFIX + "*"))
    found, cached = store.lookup(text_keys(texts))
    assert found.all()
    np.testing.assert_allclose(cached, vectors_t, atol=1e-5)


@pytest.mark.slow
def test_gemini_limits_hold_for_the_whole_run_across_two_workers(
    archive, data_home, tmp_path, worker_env, monkeypatch
):
    from tests.gemini_server import FakeGemini

    requests_per_minute = 30
    # The first three answers take 3 s, longer than the 2 s between starts: without run-wide
    # in-flight slots, the second worker's request would overlap the first's.
    with FakeGemini(api_key=KEY, faults=["slow"] * 3, slow_s=3.0) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        embedding = EmbeddingSettings(
            embedder="gemini",
            batch_size=4,
            max_concurrency=1,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=1_000_000_000,
            retry_backoff_s=0.05,
            cache=False,
        )
        manifest = _run(archive, data_home, tmp_path, "gemini-dask", embedding, DASK)

    assert manifest["embedding"]["requests"] == server.requests == 8
    assert sorted(server.statuses) == [200] * 8
    assert server.max_in_flight == 1
    # Starts are spaced by 60/30 = 2 s run-wide (two workers pacing alone would start together);
    # arrival times jitter by the time a request takes to leave its worker.
    starts = np.sort(server.request_times)
    assert np.diff(starts).min() >= 0.8 * 60 / requests_per_minute
    # So no window sees more than one request beyond the per-minute rate.
    for first in range(len(starts)):
        window = starts[first:] - starts[first]
        for width in (10.0, 20.0, 60.0):
            assert (window <= width).sum() <= 1 + width * requests_per_minute / 60
