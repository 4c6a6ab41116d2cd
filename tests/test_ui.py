"""docs/deployments.md's "Run on a schedule" and "Watch runs in the UI", for real.

A real ``prefect server start`` on a free 127.0.0.1 port, a process work pool,
``prefect deploy`` from ``prefect.yaml`` in a copy of the repository at another
path (so no path of this checkout can be relied on), a run triggered with a tiny
sample, a real worker started from the copy's root, then the API and headless
Chromium read back what a user would see. Subprocesses get their own
``PREFECT_HOME``/``PREFECT_API_URL``; the session's test harness is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from flows.watchdog import descendants
from tests.browser import chromium_available, click, fit_to_content, open_chrome, wait_for, wait_for_text
from tests.servers import running_prefect_server

ROOT = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).parent / "prefect"
SCREENSHOTS = ROOT / "docs" / "images"
DEPLOYMENT = "newsgroups/nightly-tutorial"
SENT = {
    "sampling": {"groups": ["sci"], "per_class": 10},
    "mapping": {"reducer": "tsne", "perplexity": 5.0},
    "output": {"run_name": "e2e-tiny"},
    "seed": 7,
}
SCI = ["sci.crypt", "sci.electronics", "sci.med", "sci.space"]

pytestmark = [pytest.mark.slow, pytest.mark.server]


@dataclass(frozen=True)
class Server:
    api: str
    ui: str
    env: dict[str, str]
    repo: Path

    def prefect(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the ``prefect`` CLI in the repository copy against this server."""
        return subprocess.run(
            [str(PREFECT), *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> list | dict:
        return self._request("POST", path, json=body)

    def _request(self, method: str, path: str, **options: object) -> list | dict:
        # The server answers 503 for errors a client may retry (a busy database), and Prefect's own
        # client retries them: so do these calls, as a busy CI machine makes them happen.
        for pause in (1, 2, 4, 8):
            response = httpx.request(method, self.api + path, timeout=30, **options)
            if response.status_code != 503:
                break
            time.sleep(pause)
        return response.raise_for_status().json()


def _wait_for(check: Callable[[], object], *, timeout: float, what: str, interval: float = 1.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


def _ended(server, run_id: str) -> dict | None:
    """The flow run, once it is in a final state; None while it runs."""
    run = server.get(f"/flow_runs/{run_id}")
    return run if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None


def _stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def _copy_repository(target: Path) -> Path:
    """The repository's tracked and untracked (not ignored) files, copied to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file() and not name.startswith("docs/images/"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory, archive, data_home, new_prefect_home) -> Iterator[Server]:
    """A real Prefect server with its UI, and a copy of the repository whose CLI calls point at it."""
    base = tmp_path_factory.mktemp("prefect-server")
    repo = _copy_repository(base / "newsgroups-map-copy")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "PWD"}
    env.update(
        # No run starts on its own: the nightly run the scheduler would add starts at 02:00 UTC on whichever
        # worker or `serve` a test has running then (it once did, under the cancelling test). The schedule
        # test asks the server to schedule the deployment's runs instead.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        NEWSGROUPS_ARCHIVE=str(archive),
        SCIKIT_LEARN_DATA=str(data_home),  # the archive unpacked once for the session
        HF_HUB_OFFLINE="1",
    )
    home = new_prefect_home(base / "home")
    with running_prefect_server(home, environ=env, ui=True) as api:
        env.update(PREFECT_HOME=str(home), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false")
        yield Server(api=api, ui=api.removesuffix("/api"), env=env, repo=repo)


@pytest.fixture(scope="module")
def deployed(server) -> dict:
    """The pool and the nightly deployment, created as docs/deployments.md says (only the local-embedder one)."""
    created = server.prefect("work-pool", "create", "newsgroups-process", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    result = server.prefect("--no-prompt", "deploy", "-n", "nightly-tutorial")
    assert result.returncode == 0, result.stdout + result.stderr
    return server.get("/deployments/name/" + DEPLOYMENT)


def _run_by_worker(server: Server, deployment: str, params: dict) -> dict:
    """Trigger ``deployment`` from the CLI and let a worker started in the copy's root run it."""
    triggered = server.prefect("deployment", "run", deployment, "--params", json.dumps(params))
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout).group(1)
    with open(server.repo.parent / "worker.log", "w") as log:
        # A shell's `cd` sets $PWD, which the pull step reads: exactly a user starting it from the clone.
        worker = subprocess.Popen(
            [
                "bash",
                "-c",
                'cd "$0" && exec "$1" worker start --pool newsgroups-process',
                str(server.repo),
                str(PREFECT),
            ],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            run = _wait_for(
                lambda: _ended(server, run_id),
                timeout=420,
                what="the flow run to finish",
                interval=2,
            )
            # The run is final before its process has sent its last log lines: stopping the worker
            # now would stop that process too, and lines the tests look for could be lost.
            _wait_for(lambda: not descendants(worker.pid), timeout=60, what="the flow run's process to exit")
        finally:
            _stop(worker)
    assert run["state_type"] == "COMPLETED", (server.repo.parent / "worker.log").read_text()[-4000:]
    return run


@pytest.fixture(scope="module")
def finished_run(server, deployed) -> dict:
    """A run of a tiny sample, triggered from the CLI and run by a worker started in the copy's root."""
    return _run_by_worker(server, DEPLOYMENT, SENT)


def test_nightly_update_adds_new_posts_to_the_latest_run_through_a_worker(server, finished_run):
    """The living map's deployment, deployed as the README says and run by a real worker."""
    result = server.prefect("--no-prompt", "deploy", "-n", "nightly-update")
    assert result.returncode == 0, result.stdout + result.stderr
    deployed = server.get("/deployments/name/update/nightly-update")
    assert deployed["parameters"] == {"updating": {"base": "latest"}}
    sent = {"updating": {"base": "latest", "max_new": 5}, "output": {"run_name": "e2e-update"}}
    run = _run_by_worker(server, "update/nightly-update", sent)
    manifest = json.loads((server.repo / "artifacts" / "e2e-update" / "manifest.json").read_text())
    assert manifest["base_run"]["name"] == "e2e-tiny" and manifest["counts"]["added"] == 5
    artifacts = _artifacts(server, run["id"])
    assert artifacts["newsgroups-changes"]["type"] == "table"
    assert "5 new posts" in artifacts["newsgroups-update"]["data"]


def _artifacts(server: Server, run_id: str) -> dict[str, dict]:
    found = server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    return {a["key"]: a for a in found}


def test_nightly_deployment_is_scheduled_at_two_utc_with_the_tutorial_parameters(server, deployed):
    (schedule,) = deployed["schedules"]
    assert schedule["schedule"] == {"cron": "0 2 * * *", "timezone": "UTC", "day_or": True}
    assert deployed["parameters"]["sampling"] == {"groups": ["sci"], "per_class": 150}
    assert deployed["parameters"]["embedding"] == {"embedder": "local"}
    assert deployed["pull_steps"][0]["prefect.deployments.steps.run_shell_script"]["script"] == "echo $PWD"
    assert str(ROOT) not in json.dumps(deployed) and str(server.repo) not in json.dumps(deployed)
    # The server schedules the runs as its scheduler service would, for tomorrow: no test runs till then.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    day = {"start_time": f"{tomorrow}T00:00:00Z", "end_time": f"{tomorrow}T23:59:59Z"}
    server.post(f"/deployments/{deployed['id']}/schedule", day)
    query = {
        "deployments": {"id": {"any_": [deployed["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    scheduled = server.post("/flow_runs/filter", query)
    assert [run["expected_start_time"][:19] for run in scheduled] == [f"{tomorrow}T02:00:00"]
    assert scheduled[0]["auto_scheduled"]


def test_triggered_run_completes_with_the_parameters_sent_in_the_copy_it_was_started_from(
    server, finished_run
):
    assert finished_run["state_type"] == "COMPLETED"
    for name, value in SENT.items():
        assert finished_run["parameters"][name] == value
    assert finished_run["name"] == "local-10-per-class-tsne-seed-7"
    assert {"newsgroups", "nightly", "embedder-local"} <= set(finished_run["tags"])
    # The pull step made the copy's root the working directory: the run folder is there.
    assert (server.repo / "artifacts" / "e2e-tiny" / "manifest.json").exists()


def test_embed_task_runs_are_named_by_batch_and_tagged_with_the_embedder(server, finished_run):
    tasks = server.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [finished_run["id"]]}}})
    embed = [t for t in tasks if t["name"].startswith("embed-")]
    assert [t["name"] for t in embed] == ["embed-local-batch-00000"]
    assert "embedder-local" in embed[0]["tags"]


def test_a_stages_own_log_lines_reach_the_flow_runs_logs_under_a_worker(server, finished_run):
    # The stages log through `tasks.*` loggers, not Prefect's run logger: only the environment that
    # prefect.yaml's job variables give the worker's flow-run process sends them to the API.
    query = {"logs": {"flow_run_id": {"any_": [finished_run["id"]]}}, "limit": 200}
    logs, page = [], None
    while page is None or len(page) == 200:
        page = server.post("/logs/filter", {**query, "offset": len(logs)})
        logs += page
    lines = [(entry["name"], entry["message"]) for entry in logs]
    assert any(
        name == "tasks.embed._local" and message.startswith("embed: loading all-MiniLM-L6-v2 from ")
        for name, message in lines
    ), lines
    assert any(
        name == "tasks.reduce._tsne" and message.startswith("map: t-SNE KL divergence")
        for name, message in lines
    ), lines


def test_run_publishes_the_accuracy_table_and_the_summary_with_plots(server, finished_run):
    artifacts = _artifacts(server, finished_run["id"])
    table = artifacts["newsgroups-accuracy"]
    assert table["type"] == "table"
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert [row["class"] for row in rows] == SCI
    assert all(row["posts"] == 10 and 0 <= row["accuracy"] <= 1 for row in rows)
    summary = artifacts["newsgroups-summary"]
    assert summary["type"] == "markdown"
    assert summary["data"].count("](data:image/png;base64,") == 3
    assert "sci.space" in summary["data"]


def _requested_runs(server: Server) -> list[dict]:
    """Flow runs someone asked for: the scheduler adds the nightly runs whenever its pass comes round."""
    return [run for run in server.post("/flow_runs/filter", {}) if not run["auto_scheduled"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sampling": {"per_class": -1}}, r"field 'sampling\.per_class'.*-1 is less than the minimum of 0"),
        ({"embedding": {"embedder": "word2vec"}}, r"field 'embedding\.embedder'.*'word2vec' is not one of"),
    ],
)
def test_a_run_with_a_bad_parameter_is_rejected_with_a_readable_message(server, deployed, params, message):
    before = len(_requested_runs(server))
    result = server.prefect("deployment", "run", DEPLOYMENT, "--params", json.dumps(params))
    output = " ".join((result.stdout + result.stderr).split())
    assert re.search(r"Error creating flow run: Validation failed for " + message, output), output
    assert len(_requested_runs(server)) == before


def test_deploying_a_bad_parameter_is_rejected_by_the_server_and_by_the_check_command(server, deployed):
    text = (server.repo / "prefect.yaml").read_text()
    bad = text.replace("per_class: 150", "per_class: -5").replace("name: nightly-tutorial", "name: bad")
    (server.repo / "bad.yaml").write_text(bad)
    result = server.prefect("--no-prompt", "deploy", "--prefect-file", "bad.yaml", "-n", "bad")
    assert result.returncode != 0
    assert (
        "Validation failed for field 'sampling.per_class'. Failure reason: -5 is less than the minimum of 0"
        in (result.stdout + result.stderr)
    )
    assert httpx.get(server.api + "/deployments/name/newsgroups/bad", timeout=30).status_code == 404
    check = subprocess.run(
        [sys.executable, "-m", "deployments.serve", "--check", "--file", "bad.yaml", "-n", "bad"],
        cwd=server.repo,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 2
    assert (
        "Deployment 'bad' in prefect.yaml has invalid parameters: sampling.per_class: Input should be "
        "greater than or equal to 0 (got -5)" in check.stderr
    )


def test_serve_registers_the_nightly_schedule_parameters_and_tags_of_prefect_yaml(server, deployed):
    served_yaml = (
        (server.repo / "prefect.yaml").read_text().replace("name: nightly-tutorial", "name: served-nightly")
    )
    (server.repo / "served.yaml").write_text(served_yaml)
    url = server.api + "/deployments/name/newsgroups/served-nightly"
    with open(server.repo.parent / "serve.log", "w") as log:
        serving = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--file", "served.yaml", "-n", "served-nightly"],
            cwd=server.repo,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            served = _wait_for(
                lambda: (
                    serving.poll() is None
                    and (r := httpx.get(url, timeout=30)).status_code == 200
                    and r.json()
                ),
                timeout=120,
                what="the served deployment",
            )
        finally:
            _stop(serving)
    assert served, (server.repo.parent / "serve.log").read_text()[-3000:]
    assert [s["schedule"] for s in served["schedules"]] == [s["schedule"] for s in deployed["schedules"]]
    assert served["parameters"] == deployed["parameters"]
    assert served["tags"] == deployed["tags"]
    assert served["work_pool_name"] is None


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium and chromium-driver")
def test_artifacts_tab_and_summary_render_the_table_and_the_plots_in_chromium(server, finished_run, tmp_path):
    update = os.environ.get("UPDATE_SCREENSHOTS") == "1"
    shots = SCREENSHOTS if update else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    artifacts = _artifacts(server, finished_run["id"])
    # Online: the page talks to the Prefect server on 127.0.0.1.
    with open_chrome(tmp_path / "profile", offline=False) as browser:
        browser.get(f"{server.ui}/runs/flow-run/{finished_run['id']}")
        wait_for_text(browser, "local-10-per-class-tsne-seed-7")
        click(browser, "li.p-tab#artifacts")
        wait_for_text(
            browser, "newsgroups-summary", "newsgroups-accuracy", "Per-class accuracy of run e2e-tiny"
        )
        browser.save_screenshot(str(shots / "ui-run-artifacts-tab.png"))

        browser.get(f"{server.ui}/artifacts/artifact/{artifacts['newsgroups-accuracy']['id']}")
        page = wait_for_text(browser, *SCI, "majority share")
        assert "<table" in page

        browser.get(f"{server.ui}/artifacts/artifact/{artifacts['newsgroups-summary']['id']}")
        page = wait_for_text(browser, "hungarian_accuracy", *SCI, "confusion matrix")
        assert page.count("<table") >= 2
        drawn = wait_for(
            browser,
            "return [...document.images].filter(i => i.src.startsWith('data:image/png')"
            " && i.complete && i.naturalWidth > 100).length",
            lambda n: n == 3,
        )
        assert drawn == 3
        fit_to_content(browser)
        browser.save_screenshot(str(shots / "ui-artifacts.png"))
    assert (shots / "ui-artifacts.png").stat().st_size > 20_000


# Cancelling from the UI: the Cancel button sets the run's state to Cancelling through the API; the
# worker (or the `serve` process) that started the run then sends its process group SIGTERM, then
# SIGKILL after a grace period, and marks the run Cancelled.
GEMINI_KEY = "test-key"
N_CANCEL_TEXTS = 200


def _slow_gemini_run(output_dir: Path) -> dict:
    """Parameters of a run whose embedding takes a minute: Gemini, against a slow fake, 5 texts a request."""
    return {
        "sampling": {"groups": ["sci"], "per_class": N_CANCEL_TEXTS // 4},
        "embedding": {
            "embedder": "gemini",
            "batch_size": 5,
            "max_concurrency": 1,
            "requests_per_minute": 100000,
            "tokens_per_minute": 10000000,
        },
        "mapping": {"reducer": "pca"},
        "output": {"output_dir": str(output_dir), "run_name": "cancelled"},
    }


def _alive(processes: list[tuple[int, int | None]]) -> list[str]:
    """The command lines of those ``(pid, start time)`` processes that still run."""
    from flows.watchdog import _running

    alive = []
    for pid, started in processes:
        with contextlib.suppress(OSError):  # it ended between the two reads
            if started and _running(pid, started):
                alive.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return alive


def _cache_parts(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob(".embedding-cache/*/part-*.parquet"))


def _starts_runs(how: str, server: Server, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A process worker on the pool, or `deployments.serve` serving the nightly deployment, in the copy."""
    if how == "worker":
        command = [str(PREFECT), "worker", "start", "--pool", "newsgroups-process"]
    else:
        command = [sys.executable, "-m", "deployments.serve", "--file", "served.yaml", "-n", "served-nightly"]
    with log.open("w") as out:
        # Through a shell's `cd`, which sets $PWD: the pull step of prefect.yaml reads it.
        return subprocess.Popen(
            ["bash", "-c", 'cd "$0" && exec "$@"', str(server.repo), *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.parametrize("how", ["worker", "serve"])
def test_cancelling_a_run_mid_embedding_ends_it_cancelled_keeps_the_cache_and_leaves_no_process(
    how, server, deployed, tmp_path
):
    from flows.watchdog import start_time
    from tests.gemini_server import FakeGemini

    output_dir, log = tmp_path / "runs", tmp_path / f"{how}.log"
    (server.repo / "served.yaml").write_text(
        (server.repo / "prefect.yaml").read_text().replace("name: nightly-tutorial", "name: served-nightly")
    )
    with FakeGemini(api_key=GEMINI_KEY, latency_s=0.3, default_dimensions=768) as gemini:
        env = {
            **server.env,
            "GOOGLE_GEMINI_BASE_URL": gemini.url,
            "GEMINI_API_KEY": GEMINI_KEY,
            # How often the runner of `serve` looks for runs to start (default 10 s).
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
        }
        starter = _starts_runs(how, server, env, log)
        try:
            name = DEPLOYMENT if how == "worker" else "newsgroups/served-nightly"
            deployment = _wait_for(
                lambda: (
                    (r := httpx.get(f"{server.api}/deployments/name/{name}", timeout=30)).status_code == 200
                    and r.json()
                ),
                timeout=120,
                what="the deployment",
            )
            run = server.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                {"parameters": _slow_gemini_run(output_dir)},
            )
            _wait_for(
                lambda: _cache_parts(output_dir), timeout=300, what="a batch in the cache", interval=0.1
            )
            run_processes = [(pid, start_time(pid)) for pid in descendants(starter.pid)]
            assert run_processes, "the run's process was not found under the " + how
            cancelled_at = time.monotonic()
            server.post(f"/flow_runs/{run['id']}/set_state", {"state": {"type": "CANCELLING"}})
            final = _wait_for(
                lambda: _ended(server, run["id"]),
                timeout=90,
                what="the run to end",
                interval=0.5,
            )
            took = time.monotonic() - cancelled_at
            deadline = time.monotonic() + 10
            while (left := _alive(run_processes)) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not left, f"still running 10 s after {final['state_name']}"
            requests, kept = gemini.requests, _cache_parts(output_dir)
            time.sleep(1.5)
            assert gemini.requests == requests, "a batch was sent after the run was cancelled"
        finally:
            _stop(starter)
    output = log.read_text()
    assert final["state_type"] == "CANCELLED", output[-4000:]
    assert took < 45, f"{took:.0f} s from Cancelling to {final['state_name']}"
    stored = sum(pq.ParquetFile(p).metadata.num_rows for p in kept)
    assert 5 <= stored < N_CANCEL_TEXTS, stored
    assert _cache_parts(output_dir) == kept
    assert not (output_dir / "cancelled" / "manifest.json").exists()
    assert (output_dir / "cancelled").is_dir()
    print(f"{how}: {final['state_name']} {took:.1f} s after Cancelling, {stored} texts kept")
