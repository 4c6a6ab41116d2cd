"""Faults with real processes, signals and file systems: kills, concurrent runs, full and read-only disks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.newsgroups import newsgroups
from tasks.config import EmbeddingSettings, MapSettings, OutputSettings, SamplingSettings, SourceSettings
from tasks.errors import InputError, OutputError
from tasks.layout import create_run, release_run
from tests.servers import recorded_task_runs

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def env_for(prefect_home: Path, api_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("PREFECT_API_URL", None)
    if (
        api_url
    ):  # the session's server; without one, each run starts its own temporary server, as a user's would
        env["PREFECT_API_URL"] = api_url
    return env


def start_cli(args: list[str], prefect_home: Path, log: Path, api_url: str | None = None) -> subprocess.Popen:
    # A session of its own, so the temporary Prefect server it starts can be cleaned up after the kill.
    with log.open("w") as out:
        return subprocess.Popen(
            [PYTHON, "-m", "flows.newsgroups", *args],
            cwd=ROOT,
            env=env_for(prefect_home, api_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"the run ended (status {process.returncode}) first:\n{log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def earlier_run(tiny_corpus, tmp_path) -> Path:
    """A finished run in the output folder that later runs must never touch."""
    corpus = tmp_path / "tiny.csv"
    tiny_corpus.to_csv(corpus, index=False)
    newsgroups(
        source=SourceSettings(corpus=corpus),
        sampling=SamplingSettings(groups=[], per_class=0),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs", run_name="earlier"),
    )
    return tmp_path / "runs" / "earlier"


@pytest.mark.slow
def test_a_run_killed_at_any_stage_leaves_nothing_finished_and_the_same_command_then_completes(
    earlier_run, archive, tmp_path, prefect_server
):
    before = digest(earlier_run)
    data_home = tmp_path / "sklearn"  # fresh, so the first run unpacks the archive and can die doing so
    run = tmp_path / "runs" / "again"
    args = [
        "--archive",
        str(archive),
        "--data-home",
        str(data_home),
        "--per-class",
        "30",
        "--perplexity",
        "10",
        "--output-dir",
        str(tmp_path / "runs"),
        "--run-name",
        "again",
    ]
    stages = {
        "unpacking the archive": lambda: any(data_home.glob(".incomplete-*/*/*")),
        "cleaning": lambda: any((tmp_path / "runs" / ".corpus-store").glob("*/corpus.parquet")),
        "embedding": lambda: (run / "sample.parquet").exists(),
        "mapping": lambda: (run / "embeddings.parquet").exists(),
    }
    for attempt, (stage, reached) in enumerate(stages.items()):
        log = tmp_path / f"kill-{attempt}.log"
        process = start_cli(args, tmp_path / "prefect", log, prefect_server)
        wait_for(reached, process, log)
        os.kill(process.pid, signal.SIGKILL)
        kill_group(process)
        assert process.returncode == -signal.SIGKILL, stage
        assert not (run / "manifest.json").exists(), stage
        assert digest(earlier_run) == before, stage
    # No folder of a killed run may pass for the unpacked archive either.
    assert not [
        p for p in data_home.iterdir() if p.name.startswith("20news-bydate-") and not any(p.iterdir())
    ]

    log = tmp_path / "final.log"
    process = start_cli(args, tmp_path / "prefect", log, prefect_server)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert "removing the unfinished run folder" in log.read_text()
    assert (run / "manifest.json").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert pd.read_parquet(run / "sample.parquet").shape[0] == 4 * 30
    assert digest(earlier_run) == before


@pytest.mark.slow
def test_two_runs_started_at_once_in_the_same_output_folder_both_finish_in_their_own_folders(
    earlier_run, tiny_corpus, tmp_path, new_prefect_home
):
    before = digest(earlier_run)
    corpus = tmp_path / "tiny.csv"
    args = [
        "--corpus",
        str(corpus),
        "--groups",
        "--per-class",
        "0",
        "--embedder",
        "tfidf",
        "--perplexity",
        "3",
        "--output-dir",
        str(tmp_path / "runs"),
    ]
    # Both use the same Prefect home, as two commands typed by one user would: two temporary servers on one database.
    home = new_prefect_home(tmp_path / "prefect")
    processes = [start_cli(args, home, tmp_path / f"run-{i}.log") for i in range(2)]
    for index, process in enumerate(processes):
        assert process.wait(timeout=600) == 0, (tmp_path / f"run-{index}.log").read_text()[-3000:]
    finished = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/manifest.json"))
    assert len(finished) == 3 and "earlier" in finished
    assert digest(earlier_run) == before


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from tasks.layout import create_run
    create_run(sys.argv[1], "shared")
    print("holding", flush=True)
    time.sleep(600)
    """
)


def test_a_run_folder_in_use_is_refused_and_reclaimed_once_its_process_is_killed(tmp_path):
    holder = subprocess.Popen(
        [PYTHON, "-c", LOCK_HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        (tmp_path / "shared" / "half.parquet").write_bytes(b"PAR1 half")
        with pytest.raises(InputError, match=r"shared is in use by a run that is still going"):
            create_run(tmp_path, "shared")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    layout = create_run(tmp_path, "shared")
    try:
        assert [p.name for p in layout.root.iterdir()] == [".lock"]
    finally:
        release_run(layout)


def test_an_output_folder_under_a_file_gives_a_clear_error_and_writes_nothing(tiny_corpus, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("a file where a folder should be")
    state = newsgroups(
        source=SourceSettings(corpus=tmp_path / "never-read.csv"),
        output=OutputSettings(output_dir=blocker / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert "Cannot create the run folder" in state.message
    assert "(Not a directory); pass an --output-dir you can write to." in state.message
    assert blocker.read_text() == "a file where a folder should be"


WRITE_OVER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np, pandas as pd
    from tasks.layout import DOCUMENTS_SCHEMA, write_embeddings, write_json, write_table
    # A real limit enforced by the kernel, for root too: writes past it fail with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
    folder = sys.argv[1]
    n = 4000
    frame = pd.DataFrame({"doc_id": [str(i) for i in range(n)], "text": [f"post {i} " * 20 for i in range(n)],
                          "label": 0, "class_name": "a"})
    writes = {
        "table": lambda: write_table(frame, f"{folder}/sample.parquet", DOCUMENTS_SCHEMA),
        "embeddings": lambda: write_embeddings(frame["doc_id"].tolist(), np.random.default_rng(0).random((n, 64)), f"{folder}/e.parquet"),
        "json": lambda: write_json({"x": "y" * 100_000}, f"{folder}/manifest.json"),
    }
    for name, write in writes.items():
        try:
            write()
            print(name, "written")
        except OSError as error:
            print(name, type(error).__name__, error)
    """
)


def test_writes_that_hit_a_file_size_limit_fail_clearly_and_leave_no_file(tmp_path):
    result = subprocess.run(
        [PYTHON, "-c", WRITE_OVER_LIMIT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stderr
    for line, name in zip(lines, ["table", "embeddings", "json"], strict=True):
        assert line.startswith(f"{name} OutputError Could not write "), line
        assert (
            "File too large" in line
            and "check that the output folder is writable and the disk is not full" in line
        )
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_fails_the_run_clearly_and_leaves_no_half_written_parquet(small_mount, tmp_path):
    disk = small_mount()
    # About 2 MB of texts that do not compress: more than the 1 MiB disk holds.
    letters = np.random.default_rng(0).integers(97, 123, size=(4000, 500), dtype=np.uint8)
    corpus = tmp_path / "big.parquet"
    pd.DataFrame({"text": [row.tobytes().decode() for row in letters], "label": "a"}).to_parquet(corpus)
    state = newsgroups(
        source=SourceSettings(corpus=corpus),
        output=OutputSettings(output_dir=disk, run_name="full"),
        return_state=True,
    )
    assert state.is_failed()
    assert "full/sample.parquet (" in state.message
    assert "No space left on device" in state.message
    assert "check that the output folder is writable and the disk is not full." in state.message
    with pytest.raises(OutputError, match="No space left on device"):
        state.result()
    assert not list(disk.rglob("*.parquet")) and not list(disk.rglob(".tmp-*"))
    assert not (disk / "full").exists()


def test_a_read_only_output_folder_gives_a_clear_error(small_mount, tmp_path):
    disk = small_mount("ro")
    state = newsgroups(
        source=SourceSettings(corpus=tmp_path / "never-read.csv"),
        output=OutputSettings(output_dir=disk / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert "Cannot create the run folder" in state.message
    assert "(Read-only file system); pass an --output-dir you can write to." in state.message


def test_a_data_folder_that_cannot_be_written_fails_once_with_a_clear_error(archive, tmp_path):
    blocker = tmp_path / "data.txt"
    blocker.write_text("not a folder")
    state = newsgroups(
        source=SourceSettings(archive=archive, data_home=blocker / "sklearn"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert (
        "data.txt/sklearn as the data folder (Not a directory); pass a --data-home you can write to."
        in state.message
    )
    runs = recorded_task_runs(state.state_details.flow_run_id)
    assert [(run.name, run.run_count) for run in runs] == [("ingest", 1)]  # not retried: retrying cannot help


def test_a_full_data_folder_blames_the_folder_not_the_archive(small_mount, archive, tmp_path):
    disk = small_mount()
    state = newsgroups(
        source=SourceSettings(archive=archive, data_home=disk),
        output=OutputSettings(output_dir=tmp_path / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert f"Could not unpack {archive} into {disk} (No space left on device)" in state.message
    assert [p.name for p in disk.iterdir()] == []
