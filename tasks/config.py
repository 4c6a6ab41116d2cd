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
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tasks.base import Settings
from tasks.cluster import CLUSTERERS
from tasks.embed import EMBEDDERS
from tasks.embed.models import MODELS, check_model_settings
from tasks.errors import InputError
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


MAX_SEED = 2**32 - 1
# Classes (and clusters) a run can show: a map cannot tell more apart by colour, and the figures and
# map.html grow with them. A larger sample is refused before any work.
MAX_CLASSES = 200
Seed = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_SEED,
        description="Seed of every random step: sampling, SVD, t-SNE, KMeans (0 to 2**32-1).",
    ),
]


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
        "it, else the corpus is unlabelled and label-based evaluation is skipped. A sample of more "
        f"than {MAX_CLASSES} classes is refused before any work (a map cannot tell more apart); keep "
        "fewer with --groups.",
    )
    labels_as_text: bool = Field(
        False,
        description="Read every label as text, so JSONL or Parquet 1, 1.0 and '1' are one class; without "
        "it a label column mixing text, numbers and booleans is refused (docs/corpus.md).",
    )
    id_column: str | None = Field(
        None, description="Corpus column holding unique document ids (default: the row number)."
    )
    csv_separator: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="Column separator of a CSV corpus (default: guessed from its first lines; ',' if unsure).",
    )


class CleaningSettings(Settings):
    """The tutorial's cleaning, plus what a real corpus needs."""

    max_chars: int = Field(10_000, gt=0, description="Drop cleaned texts of this many characters or more.")
    drop_duplicates: bool = Field(
        True, description="Drop repeated texts (after cleaning), keeping the first."
    )


# The tutorial's sample of 20 Newsgroups; a user's own corpus is taken whole unless asked otherwise.
SAMPLING_DEFAULTS = {
    "newsgroups": {"groups": ["sci"], "per_class": 150},
    "corpus": {"groups": [], "per_class": 0},
}


class SamplingSettings(Settings):
    """Which classes, and how many posts of each."""

    groups: list[str] | None = Field(
        None,
        description="Keep classes whose name contains one of these substrings or matches one "
        "of these regular expressions. Empty: every class. Default: the tutorial's 'sci' for "
        "20 Newsgroups, every class with --corpus.",
    )
    per_class: int | None = Field(
        None,
        ge=0,
        description="Posts sampled per class (0: all of them). Default: the tutorial's 150 for "
        "20 Newsgroups, all of them with --corpus.",
    )

    def resolved(self, source: SourceSettings) -> SamplingSettings:
        """These settings with each unset field taken from :data:`SAMPLING_DEFAULTS` for ``source``."""
        defaults = SAMPLING_DEFAULTS["newsgroups" if source.corpus is None else "corpus"]
        given = self.model_dump(exclude_none=True)
        return SamplingSettings(**{**defaults, **given})


class EmbeddingSettings(Settings):
    """How texts become vectors."""

    embedder: EmbedderName = Field("local", description="Embedder: " + ", ".join(EMBEDDERS.names()) + ".")
    batch_size: int | None = Field(
        None, ge=1, description="Texts per embedding task (default: the embedder's own choice)."
    )
    tfidf_dimensions: int = Field(
        256,
        ge=2,
        le=4096,
        description="SVD dimensions of the tfidf embedder and of --tfidf-weight's vectors.",
    )
    tfidf_weight: float = Field(
        0.0,
        ge=0,
        le=4,
        description="Append the sample's own TF-IDF-SVD vectors, times this weight, to the embeddings "
        "before mapping and clustering (0: off; the best preset uses 0.6).",
    )
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
    plan: bool = Field(
        False,
        description="Print what the run would embed (texts, cache hits, tokens, requests, minutes, "
        "cost) and stop before embedding anything.",
    )
    price_per_million_tokens: float = Field(
        0.15, ge=0, description="Gemini price in USD per million input tokens, for the plan's cost."
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
        description="Local model precision: fp32 (bfloat16 where the CPU has it natively and the model "
        "prefers it), or int8 (int8 weights, activations quantised on the fly: faster, slightly "
        "different vectors).",
    )
    runtime: Literal["openvino", "torch", "onnx"] = Field(
        "openvino",
        description="What runs the local model: openvino (the fastest here), torch (PyTorch, the "
        "reference) or onnx (ONNX Runtime); openvino and onnx run a conversion of the verified "
        "weights made once beside the model and checked against PyTorch.",
    )
    max_tokens: int | None = Field(
        None,
        ge=8,
        description="Tokens kept per text by the local model (default: the model's own maximum: "
        "256 for all-MiniLM-L6-v2, 512 for embeddinggemma-300m); fewer is faster.",
    )
    models_dir: Path | None = Field(
        None,
        description="Folder of fetched local models (default: $NEWSGROUPS_MODELS_DIR or "
        "~/.cache/newsgroups-map/models).",
    )

    @model_validator(mode="after")
    def _tfidf_beside_a_model(self) -> EmbeddingSettings:
        if self.tfidf_weight and self.embedder == "tfidf":
            raise InputError(
                "--tfidf-weight appends TF-IDF vectors to a model's, and the tfidf embedder is TF-IDF "
                "already: choose --embedder local or gemini, or leave --tfidf-weight at 0"
            )
        return self


class MapSettings(Settings):
    """The 2-D map."""

    reducer: ReducerName = Field("tsne", description="Reducer: " + ", ".join(REDUCERS.names()) + ".")
    perplexity: float = Field(30.0, gt=0, description="t-SNE perplexity (must be below the sample size).")
    tsne_iterations: int = Field(
        750, ge=50, description="t-SNE iterations after the 250 of early exaggeration."
    )
    umap_neighbors: int = Field(
        15, ge=2, le=1000, description="UMAP neighbourhood size: larger keeps more of the global layout."
    )
    umap_min_dist: float = Field(
        0.1,
        ge=0,
        le=1,
        description="UMAP minimum distance between points on the map (0 packs clusters tightly).",
    )
    reuse_map: bool = Field(
        True,
        description="Reuse the map of an earlier run made from the same vectors with the same map "
        "settings and seed (stored in <output_dir>/.map-cache), instead of computing it again.",
    )


class ClusterSettings(Settings):
    """The clustering that is scored against the labels."""

    clusterer: ClustererName = Field(
        "kmeans", description="Clusterer: " + ", ".join(CLUSTERERS.names()) + "."
    )
    n_clusters: Annotated[int, Field(ge=1, le=MAX_CLASSES)] | Literal["auto"] | None = Field(
        None,
        description="Number of clusters for clusterers that need one (kmeans): a number up to "
        f"{MAX_CLASSES}, 'auto' (the best silhouette from 2 to --max-auto-clusters), or none for the "
        "number of classes.",
    )
    max_auto_clusters: int = Field(
        12, ge=2, le=MAX_CLASSES, description="Largest number of clusters --n-clusters auto tries."
    )
    n_init: int = Field(10, ge=1, description="KMeans restarts; the best is kept.")
    gmm_pca_dimensions: int = Field(
        15, ge=1, le=1024, description="gmm: principal components the mixture is fitted on."
    )
    gmm_n_init: int = Field(3, ge=1, description="gmm: restarts of the mixture; the best is kept.")
    min_cluster_size: int = Field(
        15, ge=2, description="HDBSCAN: the smallest group of posts that counts as a cluster."
    )
    hdbscan_umap_dimensions: int = Field(
        5,
        ge=0,
        le=100,
        description="HDBSCAN: cluster a UMAP projection of this many dimensions, as BERTopic does "
        "(0: the embeddings themselves).",
    )

    @model_validator(mode="after")
    def _auto_needs_a_clusterer_that_chooses_k(self) -> ClusterSettings:
        if self.n_clusters == "auto" and not CLUSTERERS.get(self.clusterer).chooses_k:
            choosers = ", ".join(n for n in CLUSTERERS.names() if CLUSTERERS.get(n).chooses_k)
            raise InputError(
                f"n_clusters 'auto' is supported by the {choosers} clusterer only; got clusterer "
                f"{self.clusterer!r}. Pass a number with --n-clusters, or --clusterer {choosers}."
            )
        return self


class OutputSettings(Settings):
    """Where the run's files go."""

    output_dir: Path = Field(Path("artifacts"), description="Folder holding one folder per run.")
    run_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=255,  # the longest file name most file systems allow
        description="Name of this run's folder (default: UTC time, embedder and a random suffix).",
    )
    corpus_store: Path | None = Field(
        None,
        description="Folder keeping ingested and cleaned posts for every run of the same source "
        "(default: <output_dir>/.corpus-store).",
    )


class ExecutionSettings(Settings):
    """Where the embed batches run: threads of the flow's process, or Dask workers."""

    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description="Run the embed batches on threads of this process, or on Dask workers "
        "(a local cluster, or the scheduler at --dask-address).",
    )
    dask_address: str | None = Field(
        None,
        pattern=r"^(tcp|tls)://[^\s/]+:[0-9]{1,5}$",
        description="Address of a running Dask scheduler, e.g. tcp://127.0.0.1:8786 "
        "(default: start a local cluster for the run).",
    )
    dask_workers: int = Field(
        2, ge=1, le=256, description="Worker processes of the local Dask cluster (one thread each)."
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> ExecutionSettings:
        if self.dask_address is not None and self.task_runner != "dask":
            raise InputError(
                f"dask_address is only used with --task-runner dask; got task_runner {self.task_runner!r}. "
                "Add --task-runner dask or drop --dask-address."
            )
        return self


class UpdateSettings(Settings):
    """A living map's update: the run it builds on, and how many new posts it takes."""

    base: str = Field(
        "latest",
        min_length=1,
        description="The run to add the new posts to: its folder, its name under --output-dir, or "
        "'latest' (the newest finished run there).",
    )
    max_new: int | None = Field(
        None, ge=1, description="Take at most this many new posts, oldest first (default: all of them)."
    )
    min_emerging: int = Field(
        15,
        ge=2,
        description="New posts that fit no cluster and lie together become an emerging cluster "
        "when at least this many gather.",
    )


PresetName = Literal["fast", "best"]
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The defaults: all-MiniLM-L6-v2 and KMeans, about a minute for the tutorial's sample.
    "fast": {},
    # The best offline accuracy measured on the tutorial's protocol (docs/models.md, "Quality"): the
    # highest train-split mean over seeds 0-29 among the settings with no seed below .945, chosen from a
    # grid of TF-IDF weights and clusterers. It reads 256 tokens of a post, not EmbeddingGemma's 512: 3.1x
    # faster and .003 less accurate on both splits over seeds 0-29, within the seeds' spread. Minutes, not
    # seconds: EmbeddingGemma embeds a few posts/s on 2 CPU cores.
    "best": {
        "embedding": {
            "embedder": "local",
            "local_model": "embeddinggemma-300m",
            "max_tokens": 256,
            "tfidf_weight": 0.6,
        },
        "clustering": {"clusterer": "gmm", "gmm_pca_dimensions": 25},
    },
}


def apply_preset(preset: str | None, groups: dict[str, Any]) -> dict[str, Any]:
    """Fill in the settings a preset names, leaving every setting the user gave as given.

    ``groups`` maps a group name to its model (only the fields it was given
    explicitly count as the user's) or to a dict; returns the same keys with
    plain dicts where the preset added values.
    """
    if not preset:
        return groups
    resolved = dict(groups)
    for group, values in PRESETS[preset].items():
        given = groups.get(group)
        if isinstance(given, Settings):
            given = given.model_dump(include=given.model_fields_set)
        resolved[group] = {**values, **(given or {})}
    return resolved


class RunSettings(Settings):
    """Every setting of one run: the stage models and the seed.

    The flow takes the stage models as separate arguments (so the Prefect UI
    shows one form section per stage) and gathers them here, so the run folder,
    the manifest, the run name and a comparison's variants all read one object.
    """

    source: SourceSettings = SourceSettings()
    cleaning: CleaningSettings = CleaningSettings()
    sampling: SamplingSettings = Field(SamplingSettings(), validate_default=True)
    embedding: EmbeddingSettings = EmbeddingSettings()
    mapping: MapSettings = MapSettings()
    clustering: ClusterSettings = ClusterSettings()
    output: OutputSettings = OutputSettings()
    execution: ExecutionSettings = ExecutionSettings()
    seed: Seed = 0
    preset: PresetName | None = Field(
        None,
        description="A named configuration: fast (the defaults) or best (the most accurate offline "
        "one); settings given explicitly win over it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve_preset(cls, data: Any) -> Any:
        """Turn a preset into the explicit settings it stands for (kept in the manifest)."""
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            return {**data, **apply_preset(data["preset"], {g: data.get(g) for g in PRESETS[data["preset"]]})}
        return data

    @model_validator(mode="after")
    def _local_model_runs_so(self) -> RunSettings:
        """Checked here, after the preset: `--preset best --runtime onnx` names EmbeddingGemma only through it."""
        if self.uses_local_model():
            embedding = self.embedding
            check_model_settings(
                MODELS[embedding.local_model], runtime=embedding.runtime, max_tokens=embedding.max_tokens
            )
        return self

    def uses_local_model(self) -> bool:
        """Whether the run embeds with the local model."""
        return self.embedding.embedder == "local"

    @field_validator("sampling")
    @classmethod
    def _sample_of_the_source(cls, sampling: SamplingSettings, info: ValidationInfo) -> SamplingSettings:
        """Fill in what the sampling leaves unset from the source (:meth:`SamplingSettings.resolved`)."""
        return sampling.resolved(info.data["source"]) if "source" in info.data else sampling

    def run_label(self) -> str:
        """What distinguishes this run in a list: embedder, sample size, reducer and seed.

        >>> RunSettings().run_label()
        'local-150-per-class-tsne-seed-0'
        """
        per_class = self.sampling.per_class or "all"
        return f"{self.embedding.embedder}-{per_class}-per-class-{self.mapping.reducer}-seed-{self.seed}"

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> RunSettings:
        """Settings from flow parameters as Prefect holds them (models or plain dicts; missing: defaults)."""
        return cls.model_validate(
            {name: value for name, value in parameters.items() if name in cls.model_fields}
        )


class CompareSettings(RunSettings):
    """A comparison's parameters: one run's settings, and the embedders and clusterers it compares."""

    embedders: list[EmbedderName] | None = Field(
        None,
        description="The embedders to compare (default: local and tfidf, and gemini when an API key is set).",
    )
    clusterers: list[ClustererName] | None = Field(
        None,
        description="The clusterers to compare, each on every embedder's vectors (default: kmeans hdbscan).",
    )

    def uses_local_model(self) -> bool:
        """Whether one of the compared embedders is the local model (it is one by default)."""
        return "local" in (self.embedders or ["local"])


class UpdateFlowSettings(Settings):
    """The update flow's parameters: which run to grow, and the settings given for its new posts."""

    updating: UpdateSettings = UpdateSettings()
    source: SourceSettings = SourceSettings()
    sampling: SamplingSettings = SamplingSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    mapping: MapSettings = MapSettings()
    output: OutputSettings = OutputSettings()
    execution: ExecutionSettings = ExecutionSettings()
