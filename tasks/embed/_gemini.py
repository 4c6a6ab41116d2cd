"""Gemini embedder: batches of up to 100 texts, sent concurrently, paced under the quota, retried.

google-genai does not split batches, retry, or read a 429's RetryInfo, so this
module does: each batch is one ``batchEmbedContents`` request; a shared
:class:`RateLimiter` spaces request starts to stay within requests and tokens
per minute; 429/5xx answers and timeouts are retried with exponential backoff
and jitter, and a 429's ``retryDelay`` holds back every batch, since the quota
is shared. Anything else (a bad key, a refused model) is permanent: it raises
:class:`~tasks.errors.EmbeddingServiceError` and no further request is sent.
The first request goes out alone, so a bad key costs one request, not one per
batch.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.embed._base import EMBEDDERS, Embedder, Estimate, count, l2_normalise
from tasks.embed._pacing import LocalPacing, SharedPacing
from tasks.errors import EmbeddingServiceError, InputError, MissingDependencyError

if TYPE_CHECKING:
    from tasks.base import Settings

log = logging.getLogger(__name__)

INSTALL_HINT = "The gemini embedder needs google-genai; install it with: pip install google-genai"
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # google-genai's own precedence
MAX_BATCH = 100  # batchEmbedContents answers 400 beyond this
MAX_INPUT_TOKENS = 2048
# What the Developer API does past 2,048 tokens is undocumented, so cut early: few
# texts have fewer than 3 characters per token, while ~4 is the usual figure.
MAX_INPUT_CHARS = 3 * MAX_INPUT_TOKENS
CHARS_PER_TOKEN = 4  # Google's rule of thumb, for pacing tokens per minute
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0
# A retryDelay longer than this means a daily quota is spent: waiting in the run is pointless.
MAX_RETRY_DELAY_S = 300.0


def _genai() -> tuple[Any, Any, Any]:
    """google-genai's ``genai``, ``types`` and ``errors`` modules, imported when first needed."""
    try:
        from google import genai
        from google.genai import errors, types
    except ImportError as error:
        raise MissingDependencyError(INSTALL_HINT) from error
    return genai, types, errors


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and dropped connections of httpx and of its fork httpx2 (google-genai 3.x uses either)."""
    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        found += [module.TimeoutException, module.NetworkError, module.RemoteProtocolError]
    return tuple(found)


def resolve_api_key(settings: Settings) -> str:
    """The Gemini API key: from the Prefect Secret block ``settings.api_key_secret``, else the environment.

    Raises :class:`~tasks.errors.InputError` when no key can be found.
    """
    if settings.api_key_secret:
        from prefect.blocks.system import Secret

        try:
            return str(Secret.load(settings.api_key_secret).get())
        except ValueError:
            raise InputError(
                f"The 'api_key_secret' parameter names the Prefect Secret block "
                f"{settings.api_key_secret!r}, which does not exist; create it with "
                f"Secret(value=...).save({settings.api_key_secret!r}) or leave the parameter unset."
            ) from None
    for variable in KEY_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    raise InputError(
        "The gemini embedder needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), or name "
        "a Prefect Secret block holding it with --api-key-secret."
    )


def retry_delay_s(details: Any) -> float | None:
    """Seconds asked for by the RetryInfo in a Google API error payload, if there is one.

    >>> retry_delay_s({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
    ...                                       "retryDelay": "26s"}]}})
    26.0
    """
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details") or []:
        if str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            try:
                return float(str(item.get("retryDelay", "")).removesuffix("s"))
            except ValueError:
                return None
    return None


@EMBEDDERS.register
class GeminiEmbedder(Embedder):
    """Gemini embeddings through google-genai, L2-normalised.

    Parameters
    ----------
    api_key : str
        The key; it is sent in a header and never logged or stored elsewhere.
    model : str, default="gemini-embedding-001"
        Embedding model (``gemini-embedding-2`` works too: each text is sent as its own Content).
    dimensions : int, default=768
        ``outputDimensionality``, 128 to 3072.
    task_type : str, default="CLUSTERING"
        Gemini task type (CLUSTERING, CLASSIFICATION, SEMANTIC_SIMILARITY, ...).
    max_concurrency : int, default=8
        Requests in flight at once, at most.
    requests_per_minute, tokens_per_minute : int, default=100, 30000
        Client-side pacing; tokens are estimated as characters / 4.
    request_timeout_s : float, default=60
        Time allowed for one request before it counts as failed (and is retried).
    max_attempts : int, default=6
        Attempts per batch, the first included.
    retry_backoff_s : float, default=1.0
        Delay before the first retry; doubles with each attempt (at most 60 s), with jitter.
    seed : int, default=0
        Seed of the jitter.
    """

    name: ClassVar[str] = "gemini"
    default_batch_size: ClassVar[int | None] = MAX_BATCH
    max_input_chars: ClassVar[int | None] = MAX_INPUT_CHARS

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "gemini-embedding-001",
        dimensions: int = 768,
        task_type: str = "CLUSTERING",
        max_concurrency: int = 8,
        requests_per_minute: int = 100,
        tokens_per_minute: int = 30_000,
        request_timeout_s: float = 60.0,
        max_attempts: int = 6,
        retry_backoff_s: float = 1.0,
        price_per_million_tokens: float = 0.15,
        seed: int = 0,
    ) -> None:
        genai, types, errors = _genai()
        self.price_per_million_tokens = price_per_million_tokens
        self._api_error = errors.APIError
        self._transient = _transient_errors()
        self._content = types.Content
        self._part = types.Part
        # Keep the client referenced: it closes its connections when collected.
        self._client = genai.Client(
            api_key=api_key, http_options=types.HttpOptions(timeout=int(request_timeout_s * 1000))
        )
        self._config = types.EmbedContentConfig(task_type=task_type, output_dimensionality=dimensions)
        self._key = api_key
        self.model, self.dimensions, self.task_type = model, dimensions, task_type
        self.max_concurrency, self.max_attempts, self.retry_backoff_s = (
            max_concurrency,
            max_attempts,
            retry_backoff_s,
        )
        self.requests_per_minute, self.tokens_per_minute = requests_per_minute, tokens_per_minute
        # In-process limits until share_limits() says the run spans several processes.
        self.pacing: LocalPacing | SharedPacing = LocalPacing(
            max_concurrency, requests_per_minute, tokens_per_minute
        )
        self._jitter = random.Random(seed)
        self._lock = threading.Lock()  # guards the jitter generator, shared by the chunk threads
        # The first request goes out alone: a bad key must cost one request, not one per batch.
        self._gate = threading.Condition()
        self._verified = self._probing = False
        self._failure: str | None = None

    def __repr__(self) -> str:
        return f"GeminiEmbedder(model={self.model!r}, dimensions={self.dimensions})"

    @classmethod
    def check_ready(cls, settings: Settings) -> dict[str, str]:
        """google-genai must be installed and an API key available (env variables or Secret block)."""
        _genai()
        return {"api_key": resolve_api_key(settings)}

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int, api_key: str | None = None) -> GeminiEmbedder:
        """Read the ``gemini_*`` and rate-limit settings, and the API key unless ``check_ready`` gave it."""
        return cls(
            api_key or resolve_api_key(settings),
            model=settings.gemini_model,
            dimensions=settings.gemini_dimensions,
            task_type=settings.task_type,
            max_concurrency=settings.max_concurrency,
            requests_per_minute=settings.requests_per_minute,
            tokens_per_minute=settings.tokens_per_minute,
            request_timeout_s=settings.request_timeout_s,
            max_attempts=settings.max_attempts,
            retry_backoff_s=settings.retry_backoff_s,
            price_per_million_tokens=settings.price_per_million_tokens,
            seed=seed,
        )

    def estimate(
        self, n_texts: int, tokens: int, requests: int, *, texts_per_second: float | None
    ) -> Estimate:
        """Minutes from the quotas (whichever of requests and tokens per minute binds) and the token price."""
        minutes = max(requests / self.requests_per_minute, tokens / self.tokens_per_minute)
        return Estimate(seconds=60 * minutes, cost_usd=round(tokens / 1e6 * self.price_per_million_tokens, 6))

    def share_limits(self, name: str) -> None:
        """Hold requests in flight and per minute (and tokens) to the limits for the whole run.

        The limits live in the Dask scheduler under ``name``, so every worker
        embedding for the run draws on the same budget.
        """
        self.pacing = SharedPacing(
            name, self.max_concurrency, self.requests_per_minute, self.tokens_per_minute
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dimensions) float32, unit-length rows.

        Texts over :data:`MAX_INPUT_CHARS` characters are truncated and counted.
        More than 100 texts are split into requests sent concurrently.
        """
        clipped = [text[:MAX_INPUT_CHARS] for text in texts]
        truncated = sum(len(text) > MAX_INPUT_CHARS for text in texts)
        if truncated:
            log.warning(
                "embed: truncated %d of %d texts to %d characters (Gemini reads at most %d tokens)",
                truncated,
                len(texts),
                MAX_INPUT_CHARS,
                MAX_INPUT_TOKENS,
            )
            count(truncated=truncated)
        chunks = [clipped[start : start + MAX_BATCH] for start in range(0, len(clipped), MAX_BATCH)]
        if len(chunks) > 1:
            with ThreadPoolExecutor(self.max_concurrency) as pool:
                # Each chunk in a copy of this context, so its requests count towards this batch.
                futures = [pool.submit(contextvars.copy_context().run, self._embed_chunk, c) for c in chunks]
                parts = [future.result() for future in futures]
        else:
            parts = [self._embed_chunk(chunk) for chunk in chunks]
        if not parts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        # gemini-embedding-001 normalises only its 3072-dimension output.
        return l2_normalise(np.concatenate(parts))

    def describe(self) -> dict[str, Any]:
        """Model, dimensions and task type: what identifies these vectors."""
        return {
            "embedder": self.name,
            "model": self.model,
            "dimensions": self.dimensions,
            "task_type": self.task_type,
        }

    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        probe = self._pass_gate()
        vectors = None
        try:
            vectors = self._request(texts)
        finally:
            with self._gate:
                self._verified = self._verified or vectors is not None
                if probe:
                    self._probing = False
                    self._gate.notify_all()
        return vectors

    def _pass_gate(self) -> bool:
        """Wait while the first request is out; True when this call must send it."""
        with self._gate:
            while self._probing:
                self._gate.wait()
            self._raise_if_failed()
            if self._verified:
                return False
            self._probing = True
            return True

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise EmbeddingServiceError(self._failure)

    def _fail(self, message: str) -> EmbeddingServiceError:
        """Record a permanent failure, so no batch sends anything more, and return its error."""
        if self._key:
            message = message.replace(self._key, "***")
        with self._gate:
            self._failure = self._failure or message
            self._gate.notify_all()
        return EmbeddingServiceError(message)

    def _request(self, texts: list[str]) -> np.ndarray:
        """One batch, with retries; returns its (len(texts), dimensions) vectors."""
        tokens = sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts)
        contents = [self._content(parts=[self._part(text=text)]) for text in texts]
        for attempt in itertools.count(1):
            with self._gate:
                self._raise_if_failed()
            with self.pacing.slot():
                waited = self.pacing.acquire(tokens)
                count(requests=1, throttled_s=waited, estimated_tokens=tokens)
                try:
                    response = self._client.models.embed_content(
                        model=self.model, contents=contents, config=self._config
                    )
                except self._api_error as error:
                    if error.code not in RETRY_STATUSES:
                        raise self._fail(self._explain(error)) from None
                    reason, hint = f"{error.code} {error.status}", retry_delay_s(error.details)
                except self._transient as error:
                    reason, hint = f"{type(error).__name__} ({error})", None
                else:
                    return self._vectors(response, len(texts))
            if attempt == self.max_attempts:
                raise self._fail(
                    f"Gemini failed {attempt} times in a row on one batch (last: {reason}); try "
                    "again later, or raise --max-attempts or --request-timeout-s."
                )
            if hint is not None and hint > MAX_RETRY_DELAY_S:
                raise self._fail(
                    f"Gemini's quota is exhausted and it asks to wait {hint:.0f} s (longer than "
                    f"{MAX_RETRY_DELAY_S:.0f} s); run again later, or lower --requests-per-minute "
                    "and --tokens-per-minute to your project's quota."
                )
            if hint is not None:
                self.pacing.pause(hint)
            delay = self._backoff(attempt)
            # The retry sleeps its backoff, then queues behind the pacing, which a 429 may hold back longer.
            held = self.pacing.wait_s()
            log.warning(
                "embed: gemini %s on attempt %d of %d; retrying in %.1f s (backoff %.1f s%s%s)",
                reason,
                attempt,
                self.max_attempts,
                max(delay, held),
                delay,
                f", pacing holds requests {held:.1f} s" if held > delay else "",
                f", the service asks for {hint:.1f} s" if hint is not None else "",
            )
            count(retries=1, backoff_s=delay)
            time.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(MAX_BACKOFF_S, self.retry_backoff_s * 2 ** (attempt - 1))
        with self._lock:
            return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    def _vectors(self, response: Any, count: int) -> np.ndarray:
        values = [embedding.values or [] for embedding in response.embeddings or []]
        sizes = sorted({len(vector) for vector in values})
        if len(values) != count or sizes != [self.dimensions]:
            raise self._fail(
                f"Gemini returned {len(values)} vectors of {sizes} dimensions for {count} texts at "
                f"{self.dimensions} dimensions; check --gemini-model and --gemini-dimensions."
            )
        return np.asarray(values, dtype=np.float32)

    def _explain(self, error: Any) -> str:
        """One sentence for an answer that retrying cannot fix."""
        what = f"{error.code} {error.status}: {error.message}"
        if error.code == 400 and ("API_KEY_INVALID" in str(error.details) or "API key" in str(error.message)):
            return (
                f"Gemini rejected the API key ({what}); set GEMINI_API_KEY or GOOGLE_API_KEY (or the "
                "Secret block named by --api-key-secret) to a valid key."
            )
        if error.code in (401, 403):
            return (
                f"Gemini refused access ({what}); check that the key's project may use the "
                f"Gemini API and the model {self.model!r}."
            )
        if error.code == 404:
            return f"Gemini does not know the model {self.model!r} ({what}); choose another --gemini-model."
        return f"Gemini refused the request ({what}); retrying cannot fix this."
