"""The gemini embedder against a real HTTP server on 127.0.0.1 that speaks batchEmbedContents."""

from __future__ import annotations

import json
import logging
import re
import sys
import urllib.request

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.config import EmbeddingSettings
from tasks.embed._base import tallying
from tasks.embed._gemini import MAX_INPUT_CHARS, GeminiEmbedder, resolve_api_key
from tasks.embed._pacing import RateLimiter
from tasks.embed.plan import estimate_tokens
from tasks.errors import EmbeddingServiceError, InputError, MissingDependencyError
from tests.gemini_server import FakeGemini, fake_vector

KEY = "test-key-SECRET-123"


@pytest.fixture
def gemini(monkeypatch):
    """Start a fake Gemini (keyword arguments of FakeGemini) and point the SDK and the key at it."""
    servers = []

    def start(**kwargs) -> FakeGemini:
        server = FakeGemini(api_key=KEY, **kwargs).__enter__()
        servers.append(server)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def fast(api_key: str = KEY, **overrides) -> GeminiEmbedder:
    """An embedder with test-sized limits: no pacing, short timeouts and backoff."""
    options = {
        "dimensions": 128,
        "requests_per_minute": 1_000_000,
        "tokens_per_minute": 1_000_000_000,
        "request_timeout_s": 1.0,
        "retry_backoff_s": 0.01,
        "max_attempts": 6,
        **overrides,
    }
    return GeminiEmbedder(api_key, **options)


def expected(texts, dimensions=128) -> np.ndarray:
    vectors = np.stack([fake_vector(text, dimensions) for text in texts])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def texts_(n: int) -> list[str]:
    return [f"post number {i} about {'space' if i % 2 else 'medicine'}" for i in range(n)]


def test_every_text_is_embedded_exactly_once_in_its_own_row(gemini):
    server = gemini()
    texts = texts_(250)
    vectors = fast(max_concurrency=4).embed(texts)
    assert vectors.shape == (250, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-5)
    assert sorted(server.texts) == sorted(texts)


def test_a_large_batch_is_split_into_requests_of_at_most_100_texts(gemini):
    server = gemini()
    fast().embed(texts_(250))
    assert sorted(server.batch_sizes) == [50, 100, 100]


def test_requests_in_flight_never_exceed_max_concurrency(gemini):
    server = gemini(latency_s=0.15)
    # A timeout far above the latency: on busy cores a 1 s timeout fired once and its retry made 11 requests.
    embedder = fast(max_concurrency=3, request_timeout_s=10.0)
    embedder.embed(texts_(1000))
    assert server.requests == 10
    assert server.max_in_flight == 3


def test_a_429_is_retried_after_the_retry_delay_it_carries(gemini):
    server = gemini(faults=["429"], retry_delay="0.6s")
    embedder = fast()
    # A still clock: the 0.6 s pause counts whole however late the retry asks on a busy machine.
    embedder.pacing.limiter = RateLimiter(1_000_000, 1_000_000_000, clock=lambda: 0.0)
    with tallying() as tally:
        vectors = embedder.embed(texts_(5))
    np.testing.assert_allclose(vectors, expected(texts_(5)), atol=1e-5)
    assert server.statuses == [429, 200]
    assert server.request_times[1] - server.request_times[0] >= 0.55
    stats = tally.counts
    assert stats["requests"] == 2 and stats["retries"] == 1
    assert stats["throttled_s"] >= 0.5


def test_the_retry_log_states_the_wait_that_really_happens_when_pacing_holds_requests(gemini, caplog):
    server = gemini(faults=["429"], retry_delay="1.5s")
    with caplog.at_level(logging.WARNING, logger="tasks.embed._gemini"):
        fast(retry_backoff_s=0.01).embed(texts_(5))
    (stated,) = [float(m) for m in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    waited = server.request_times[1] - server.request_times[0]
    assert stated >= 1.4 and abs(waited - stated) < 0.3, (stated, waited, caplog.text)
    assert "pacing holds requests 1.5 s, the service asks for 1.5 s" in caplog.text


def test_server_errors_and_timeouts_are_retried_until_the_batch_succeeds(gemini, caplog):
    server = gemini(faults=["500", "503", "504", "timeout", "slow"], hang_s=2.0, slow_s=0.3)
    embedder = fast(request_timeout_s=0.8, max_attempts=6)
    with caplog.at_level(logging.WARNING, logger="tasks.embed._gemini"), tallying() as tally:
        vectors = embedder.embed(texts_(7))
    np.testing.assert_allclose(vectors, expected(texts_(7)), atol=1e-5)
    assert server.requests == 5  # the "slow" answer arrives within the timeout
    assert tally.counts["retries"] == 4
    assert "retrying" in caplog.text and "Timeout" in caplog.text


def test_retries_stop_after_max_attempts(gemini):
    server = gemini(always="503")
    embedder = fast(max_attempts=3)
    with pytest.raises(EmbeddingServiceError, match=r"failed 3 times in a row .*503 UNAVAILABLE"):
        embedder.embed(texts_(3))
    assert server.requests == 3


def test_a_bad_key_fails_on_the_first_request_before_the_rest_is_sent(gemini):
    server = gemini(latency_s=0.05)
    embedder = fast(api_key="wrong-key", max_concurrency=8)
    with pytest.raises(EmbeddingServiceError, match=r"^Gemini rejected the API key \(400 INVALID_ARGUMENT"):
        embedder.embed(texts_(1000))
    assert server.requests == 1
    with pytest.raises(EmbeddingServiceError, match="rejected the API key"):
        embedder.embed(texts_(3))  # later batches of the run fail without a request
    assert server.requests == 1


def test_a_403_fails_without_a_retry(gemini):
    server = gemini(faults=["403"])
    with pytest.raises(EmbeddingServiceError, match=r"refused access \(403 PERMISSION_DENIED"):
        fast().embed(texts_(3))
    assert server.requests == 1


def test_a_quota_wait_longer_than_five_minutes_fails_with_a_clear_message(gemini):
    server = gemini(faults=["429"], retry_delay="3600s")
    with pytest.raises(EmbeddingServiceError, match="quota is exhausted and it asks to wait 3600 s"):
        fast().embed(texts_(3))
    assert server.requests == 1


def test_texts_over_the_input_limit_are_truncated_and_counted(gemini, caplog):
    server = gemini()
    long_text = "word " * 4000
    embedder = fast()
    with caplog.at_level(logging.WARNING, logger="tasks.embed._gemini"), tallying() as tally:
        vectors = embedder.embed(["short text", long_text])
    assert vectors.shape == (2, 128)
    assert [len(t) for t in server.texts] == [len("short text"), MAX_INPUT_CHARS]
    assert tally.counts["truncated"] == 1
    assert "truncated 1 of 2 texts" in caplog.text


def test_gemini_embedding_2_gets_one_vector_per_text(gemini):
    server = gemini()
    vectors = fast(model="gemini-embedding-2").embed(texts_(4))
    np.testing.assert_allclose(vectors, expected(texts_(4)), atol=1e-5)
    assert server.paths == ["/v1/models/gemini-embedding-2:batchEmbedContents"]


def test_a_wrong_vector_count_is_a_permanent_error(gemini):
    server = gemini(faults=["short"])
    with pytest.raises(EmbeddingServiceError, match=r"returned 2 vectors of \[128\] dimensions for 3 texts"):
        fast().embed(texts_(3))
    assert server.requests == 1


def test_the_fake_server_speaks_the_v1beta_path_and_refuses_batches_over_100():
    with FakeGemini(api_key=KEY) as server:

        def post(n: int) -> tuple[int, dict]:
            body = {
                "requests": [
                    {"content": {"parts": [{"text": f"t{i}"}]}, "outputDimensionality": 8} for i in range(n)
                ]
            }
            request = urllib.request.Request(
                f"{server.url}/v1beta/models/gemini-embedding-001:batchEmbedContents",
                data=json.dumps(body).encode(),
                headers={"x-goog-api-key": KEY, "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request) as answer:
                    return answer.status, json.load(answer)
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)

        status, payload = post(2)
        assert status == 200 and len(payload["embeddings"]) == 2
        assert payload["embeddings"][0]["values"] == pytest.approx(fake_vector("t0", 8).tolist())
        status, payload = post(101)
        assert status == 400 and "at most 100" in payload["error"]["message"]


def test_rate_limiter_spaces_starts_by_requests_and_by_tokens():
    now = [0.0]
    limiter = RateLimiter(60, 6000, clock=lambda: now[0], sleep=lambda s: None)
    # 60 requests/min: one a second; 6000 tokens/min: 100 tokens a second.
    assert [limiter.acquire(10) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert limiter.acquire(500) == 3.0  # starts at 3 s, then holds the next for 5 s
    assert limiter.acquire(10) == 8.0
    now[0] = 20.0
    assert limiter.acquire(10) == 0.0
    limiter.pause(4.0)
    assert limiter.acquire(10) == 4.0


def test_requests_per_minute_paces_a_real_run(gemini):
    server = gemini()
    embedder = fast(requests_per_minute=600, max_concurrency=4)
    # The limiter's clock stands still: each request waits its whole slot (0, 0.1, ... 0.5 s at 600 a minute)
    # whenever it asks, so the waits do not depend on how busy the machine keeps the requests apart.
    embedder.pacing.limiter = RateLimiter(600, 1_000_000_000, clock=lambda: 0.0)
    with tallying() as tally:
        embedder.embed(texts_(600))
    times = sorted(server.request_times)
    # The waits are real sleeps: six starts span at least 0.5 s; arrival times at the server jitter by a few ms.
    assert len(times) == 6 and times[-1] - times[0] >= 0.45
    # Chunks embedded on the embedder's own threads count towards the caller's batch.
    assert tally.counts["requests"] == 6
    assert tally.counts["throttled_s"] == pytest.approx(0.1 + 0.2 + 0.3 + 0.4 + 0.5)


def test_no_key_anywhere_is_an_input_error_that_names_the_fix(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(InputError, match="needs an API key: set GEMINI_API_KEY"):
        GeminiEmbedder.check_ready(EmbeddingSettings(embedder="gemini"))


def test_the_key_can_come_from_a_prefect_secret_block(monkeypatch):
    from prefect.blocks.system import Secret

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    Secret(value=KEY).save("gemini-test-key", overwrite=True)
    settings = EmbeddingSettings(embedder="gemini", api_key_secret="gemini-test-key")
    GeminiEmbedder.check_ready(settings)
    assert resolve_api_key(settings) == KEY
    with pytest.raises(InputError, match="Secret block 'no-such-block', which does not exist"):
        resolve_api_key(EmbeddingSettings(embedder="gemini", api_key_secret="no-such-block"))


def test_a_missing_sdk_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.genai", None)
    with pytest.raises(MissingDependencyError, match="pip install google-genai"):
        GeminiEmbedder.check_ready(EmbeddingSettings(embedder="gemini"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gemini_dimensions", 64),
        ("gemini_dimensions", 4096),
        ("task_type", "CLUSTER"),
        ("max_concurrency", 0),
        ("requests_per_minute", 0),
        ("max_attempts", 0),
        ("request_timeout_s", 0),
        ("api_key_secret", "My Key"),
        ("gemini_model", "gemini embedding"),
    ],
)
def test_invalid_gemini_settings_are_rejected_naming_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        EmbeddingSettings(embedder="gemini", **{field: value})


def test_the_key_travels_only_in_the_header(gemini):
    server = gemini()
    embedder = fast()
    with tallying() as tally:
        embedder.embed(texts_(2))
    assert server.headers[0]["x-goog-api-key"] == KEY
    assert KEY not in repr(embedder) and KEY not in json.dumps(tally.counts | embedder.describe())
    assert not any(KEY in path for path in server.paths)


def _flow_settings(archive, data_home, output_dir, run_name, **embedding):
    from tasks.config import MapSettings, OutputSettings, SamplingSettings, SourceSettings

    return {
        "source": SourceSettings(archive=archive, data_home=data_home),
        "sampling": SamplingSettings(per_class=10),
        "embedding": EmbeddingSettings(
            embedder="gemini",
            batch_size=16,
            requests_per_minute=600,
            tokens_per_minute=1_000_000,
            retry_backoff_s=0.05,
            **embedding,
        ),
        "mapping": MapSettings(perplexity=5),
        "output": OutputSettings(output_dir=output_dir, run_name=run_name),
    }


def _prefect_records(flow_run_id) -> list[str]:
    """Everything Prefect stored about a run: its parameters, log lines and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return (
        [json.dumps(run.parameters, default=str)]
        + [log.message for log in logs]
        + [a.model_dump_json() for a in artifacts]
    )


@pytest.mark.slow
def test_the_whole_flow_embeds_with_gemini_and_the_key_appears_nowhere(
    gemini, archive, data_home, tmp_path, caplog, capfd, monkeypatch
):
    import pyarrow.parquet as pq

    import tasks.embed._gemini as gemini_module
    from flows.newsgroups import newsgroups
    from tasks.layout import read_embeddings

    resolutions = []
    resolve = gemini_module.resolve_api_key
    monkeypatch.setattr(gemini_module, "resolve_api_key", lambda s: resolutions.append(s) or resolve(s))
    server = gemini(faults=["503"])
    caplog.set_level(logging.DEBUG)
    state = newsgroups(**_flow_settings(archive, data_home, tmp_path, "gemini-run"), return_state=True)
    manifest = state.result()
    assert len(resolutions) == 1  # checked once before any data is read; the plan and the batches reuse it
    root = tmp_path / "gemini-run"

    doc_ids, vectors = read_embeddings(root / "embeddings.parquet")
    sample = pq.read_table(root / "sample.parquet").to_pandas()
    assert doc_ids == sample["doc_id"].tolist() and len(doc_ids) == 40
    sent = [text[:MAX_INPUT_CHARS] for text in sample["text"]]
    np.testing.assert_allclose(vectors, expected(sent, 768), atol=1e-5)
    assert sorted(server.texts) == sorted(sent)  # each post answered once
    # Three batches of 16 and one of 8; the first request went out alone, failed (503) and was resent.
    assert sorted(server.batch_sizes[1:]) == [8, 16, 16] and server.batch_sizes[0] == server.batch_sizes[1]
    assert server.statuses.count(503) == 1
    info = manifest["embedding"]
    assert info["model"] == "gemini-embedding-001" and info["dimensions"] == 768
    assert info["task_type"] == "CLUSTERING"
    assert info["requests"] == 4 and info["retries"] == 1
    assert info["truncated"] == sum(len(text) > MAX_INPUT_CHARS for text in sample["text"]) > 0
    assert info["throttled_s"] > 0
    # The plan logged before embedding: every text to embed, three batches, and the tokens that went out.
    plan = manifest["plan"]
    assert (plan["texts"], plan["to_embed"], plan["requests"]) == (40, 40, 3)
    assert plan["estimated_tokens"] == estimate_tokens(sent)
    assert plan["estimated_cost_usd"] == pytest.approx(estimate_tokens(sent) * 0.15 / 1e6, abs=1e-6)

    files = [path for path in root.rglob("*") if path.is_file()]
    assert len(files) >= 8
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":
            assert KEY not in json.dumps(pq.read_table(path).to_pylist(), default=str), path
    for record in _prefect_records(state.state_details.flow_run_id):
        assert KEY not in record
    assert any("embed:" in record for record in _prefect_records(state.state_details.flow_run_id))
    assert KEY not in caplog.text and caplog.records
    out, err = capfd.readouterr()
    assert KEY not in out + err


@pytest.mark.slow
def test_a_bad_key_fails_the_flow_after_one_request_without_prefect_retries(
    gemini, archive, data_home, tmp_path, monkeypatch
):
    from flows.newsgroups import newsgroups

    server = gemini(latency_s=0.05)
    monkeypatch.setenv("GEMINI_API_KEY", "not-the-key")
    with pytest.raises(EmbeddingServiceError, match="^Gemini rejected the API key"):
        newsgroups(**_flow_settings(archive, data_home, tmp_path, "bad-key", max_attempts=5))
    assert server.requests == 1


def test_the_plan_takes_minutes_from_whichever_quota_binds_and_prices_the_tokens(gemini):
    embedder = fast(requests_per_minute=100, tokens_per_minute=30_000, price_per_million_tokens=0.15)
    by_requests = embedder.estimate(10_000, 1_000, 200, texts_per_second=None)
    by_tokens = embedder.estimate(100, 300_000, 1, texts_per_second=None)
    assert by_requests.seconds == pytest.approx(60 * 2.0) and by_tokens.seconds == pytest.approx(60 * 10.0)
    assert by_tokens.cost_usd == pytest.approx(0.045)
