"""The run's parameters: one pydantic model per stage, the single source of defaults.

The flow takes these models as typed arguments, so Prefect builds the UI form
and validates deployment parameters from them; the CLI (``flows/cli.py``) is
generated from the same fields. Field names are unique across the models
because each becomes one command-line flag (``per_class`` -> ``--per-class``).
Static rules (types, ranges, choices) live here; rules that depend on the data
(perplexity below the number of posts, ...) are checked by the stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.cluster import CLUSTERERS
from tasks.embed import EMBEDDERS
from tasks.embed.models import MODELS
from tasks.reduce import REDUCERS

EmbedderName = Literal[EMBEDDERS.names()]  # type: ignore[valid-type]
ReducerName = Literal[REDUCERS.names()]  # type: ignore[valid-type]
ClustererName = Literal[CLUSTERERS.names()]  # type: ignore[valid-type]
LocalModelName = Literal[tuple(MODELS)]  # type: ignore[valid-type]
GeminiTaskType = Literal[
    "CLUSTERING",
    "CLASSIFICATION",
    "SEMANTIC_SIMILARITY",
    "RETRIEVAL_DOCUMENT",
    "RETRIEVAL_QUERY",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
]


class Settings(BaseModel):
    """Base of the stage models: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSettings(Settings):
    """Where the posts come from: 20 Newsgroups, or the user's own corpus file."""

    archive: Path | None = Field(
        None,
        description="Local copy of the 20 Newsgroups bydate archive (.tar.gz or its unpacked "
        "folder), for machines without internet. Default: $NEWSGROUPS_ARCHIVE, else download.",
    )
    data_home: Path | None = Field(
        None, description="Where scikit-learn keeps downloaded data (default: ~/scikit_learn_data)."
    )
    subset: Literal["train", "test", "all"] = Field(
        "train", description="20 Newsgroups split: train, test, or all (train then test)."
    )
    corpus: Path | None = Field(
        None, description="Your own corpus instead of 20 Newsgroups: a .csv, .parquet or .jsonl file."
    )
    text_column: str = Field("text", description="Corpus column holding the texts.")
    label_column: str | None = Field(
        None,
        description="Corpus column holding the true classes. Default: 'label' if the corpus has "
        "it, else the corpus is unlabelled and label-based evaluation is skipped.",
    )
    id_column: str | None = Field(
        None, description="Corpus column holding unique document ids (default: the row number)."
    )


class CleaningSettings(Settings):
    """The tutorial's cleaning, plus what a real corpus needs."""

    max_chars: int = Field(10_000, gt=0, description="Drop cleaned texts of this many characters or more.")
    drop_duplicates: bool = Field(
        True, description="Drop repeated texts (after cleaning), keeping the first."
    )


class SamplingSettings(Settings):
    """Which classes, and how many posts of each."""

    groups: list[str] = Field(
        default_factory=lambda: ["sci"],
        description="Keep classes whose name contains one of these substrings or matches one "
        "of these regular expressions (the tutorial's 'sci'). Empty: every class.",
    )
    per_class: int = Field(150, ge=0, description="Posts sampled per class (0: all of them).")


class EmbeddingSettings(Settings):
    """How texts become vectors."""

    embedder: EmbedderName = Field("local", description="Embedder: " + ", ".join(EMBEDDERS.names()) + ".")
    batch_size: int | None = Field(
        None, ge=1, description="Texts per embedding task (default: the embedder's own choice)."
    )
    tfidf_dimensions: int = Field(256, ge=2, le=4096, description="SVD dimensions of the tfidf embedder.")
    gemini_model: str = Field(
        "gemini-embedding-001",
        pattern=r"^(models/)?[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Gemini embedding model (gemini-embedding-001, gemini-embedding-2, ...).",
    )
    gemini_dimensions: int = Field(
        768, ge=128, le=3072, description="Gemini output dimensions (768, 1536, 3072 recommended)."
    )
    task_type: GeminiTaskType = Field("CLUSTERING", description="Gemini task type the vectors are tuned for.")
    max_concurrency: int = Field(8, ge=1, le=64, description="Gemini requests in flight at once, at most.")
    requests_per_minute: int = Field(
        100, ge=1, le=1_000_000, description="Gemini requests per minute, at most (free tier: 100)."
    )
    tokens_per_minute: int = Field(
        30_000,
        ge=1_000,
        le=1_000_000_000,
        description="Gemini input tokens per minute, at most, estimated as characters / 4 (free tier: 30000).",
    )
    api_key_secret: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Name of a Prefect Secret block holding the Gemini API key "
        "(default: $GEMINI_API_KEY or $GOOGLE_API_KEY).",
    )
    request_timeout_s: float = Field(
        60.0, gt=0, le=600, description="Seconds a Gemini request may take before it is retried."
    )
    max_attempts: int = Field(
        6, ge=1, le=20, description="Attempts per Gemini batch (429, 5xx and timeouts are retried)."
    )
    retry_backoff_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Seconds before the first Gemini retry; doubles each attempt, with jitter.",
    )
    cache: bool = Field(
        True,
        description="Reuse the stored vector of any text this model embedded before (in any run), "
        "and store new ones. Embedders fitted on the corpus (tfidf) are never cached.",
    )
    cache_dir: Path | None = Field(
        None, description="Folder of the embedding cache (default: <output_dir>/.embedding-cache)."
    )
    local_model: LocalModelName = Field(
        "all-MiniLM-L6-v2",
        description="Model of the local embedder: " + ", ".join(MODELS) + " (fetch the others with "
        "'python -m tasks.embed.models fetch NAME'; '--list' shows what is here).",
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="Local model precision: fp32, or int8 (dynamic quantisation of its Linear layers).",
    )
    models_dir: Path | None = Field(
        None,
        description="Folder of fetched local models (default: $NEWSGROUPS_MODELS_DIR or "
        "~/.cache/newsgroups-map/models).",
    )


class MapSettings(Settings):
    """The 2-D map."""

    reducer: ReducerName = Field("tsne", description="Reducer: " + ", ".join(REDUCERS.names()) + ".")
    perplexity: float = Field(30.0, gt=0, description="t-SNE perplexity (must be below the sample size).")
    tsne_iterations: int = Field(
        750, ge=50, description="t-SNE iterations after the 250 of early exaggeration."
    )


class ClusterSettings(Settings):
    """The clustering that is scored against the labels."""

    clusterer: ClustererName = Field(
        "kmeans", description="Clusterer: " + ", ".join(CLUSTERERS.names()) + "."
    )
    n_clusters: int | None = Field(
        None, ge=1, description="Number of clusters (default: the number of classes)."
    )
    n_init: int = Field(10, ge=1, description="KMeans restarts; the best is kept.")


class OutputSettings(Settings):
    """Where the run's files go."""

    output_dir: Path = Field(Path("artifacts"), description="Folder holding one folder per run.")
    run_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Name of this run's folder (default: UTC time, embedder and a random suffix).",
    )
