"""Bad input fails with one clear sentence, before the expensive work, and leaves no run folder.

Each case runs the real flow under the Prefect test harness and reads the failed
state's message; a few run through the real command line in a subprocess.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from flows.newsgroups import newsgroups
from tasks.config import (
    ClusterSettings,
    EmbeddingSettings,
    MapSettings,
    OutputSettings,
    RunSettings,
    SamplingSettings,
    SourceSettings,
)
from tasks.embed import EMBEDDERS
from tasks.errors import InputError
from tests.servers import recorded_task_runs

ROOT = Path(__file__).resolve().parents[1]
FAST = {"embedding": EmbeddingSettings(embedder="tfidf"), "mapping": MapSettings(reducer="pca")}


def task_names(state) -> list[str]:
    """Names of the task runs the failed flow run got to, as the Prefect API recorded them."""
    return sorted(run.name for run in recorded_task_runs(state.state_details.flow_run_id))


def assert_failed_before_embedding(state, match: str, output_dir: Path) -> None:
    assert state.is_failed()
    assert match in state.message, state.message
    assert not [name for name in task_names(state) if name.startswith("embed")]
    assert not list(output_dir.rglob("manifest.json"))
    # A run that cannot finish leaves no run folder behind (only the lock file and the shared stores).
    assert (
        not [p for p in output_dir.iterdir() if not p.name.startswith(".")] if output_dir.exists() else True
    )


def corpus_file(tmp_path: Path, frame: pd.DataFrame, name: str = "corpus.csv") -> Path:
    path = tmp_path / name
    {".csv": lambda: frame.to_csv(path, index=False), ".parquet": lambda: frame.to_parquet(path)}.get(
        path.suffix, lambda: frame.to_json(path, orient="records", lines=True)
    )()
    return path


def jsonl_with(tmp_path: Path, frame: pd.DataFrame, row: int, line: str) -> Path:
    """The corpus as JSONL with its line ``row`` (from 0) replaced by ``line``."""
    path = corpus_file(tmp_path, frame, "corpus.jsonl")
    lines = path.read_text().splitlines()
    lines[row] = line
    path.write_text("\n".join(lines) + "\n")
    return path


def truncated_archive(tmp_path: Path, archive: Path) -> Path:
    path = tmp_path / "truncated.tar.gz"
    with archive.open("rb") as source:
        path.write_bytes(source.read(300_000))
    return path


def no_bydate_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my-posts"
    (folder / "sci.space").mkdir(parents=True)
    (folder / "sci.space" / "1").write_text("Orbits")
    return folder


def gzip_of_a_text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(gzip.compress(b"these are notes, not a tar archive\n" * 100))
    return path


def tar_without_bydate(tmp_path: Path) -> Path:
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("misc/readme.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


# (case id, settings builder(tmp_path, archive, tiny_corpus) -> flow kwargs, expected words of the sentence)
CASES = [
    (
        "archive-missing",
        lambda t, a, c: {"source": SourceSettings(archive=t / "missing.tar.gz", data_home=t)},
        "missing.tar.gz does not exist; pass the path of 20news-bydate.tar.gz",
    ),
    (
        "archive-corrupt",
        lambda t, a, c: {"source": SourceSettings(archive=gzip_of_a_text(t), data_home=t)},
        "is not a readable .tar.gz",
    ),
    (
        "archive-truncated",
        lambda t, a, c: {"source": SourceSettings(archive=truncated_archive(t, a), data_home=t)},
        "truncated.tar.gz is not a readable .tar.gz",
    ),
    (
        "archive-without-bydate-layout",
        lambda t, a, c: {"source": SourceSettings(archive=tar_without_bydate(t), data_home=t)},
        "does not have the 20 Newsgroups bydate layout (expected 20news-bydate-train/",
    ),
    (
        "folder-without-bydate-layout",
        lambda t, a, c: {"source": SourceSettings(archive=no_bydate_folder(t), data_home=t)},
        "my-posts does not have the 20 Newsgroups bydate layout",
    ),
    (
        "corpus-missing",
        lambda t, a, c: {"source": SourceSettings(corpus=t / "nothing.csv")},
        "nothing.csv does not exist; check the --corpus path",
    ),
    (
        "corpus-wrong-format",
        lambda t, a, c: {"source": SourceSettings(corpus=corpus_file(t, c, "corpus.xlsx"))},
        "must be a .csv, .parquet or .jsonl file; got '.xlsx'",
    ),
    (
        "corpus-empty-csv",
        lambda t, a, c: {
            "source": SourceSettings(corpus=(t / "empty.csv", (t / "empty.csv").write_text(""))[0])
        },
        "empty.csv is empty",
    ),
    (
        "corpus-header-only-csv",
        lambda t, a, c: {"source": SourceSettings(corpus=corpus_file(t, c.iloc[:0]))},
        "has no rows; pass a file with at least one text",
    ),
    (
        "corpus-empty-jsonl",
        lambda t, a, c: {
            "source": SourceSettings(corpus=(t / "empty.jsonl", (t / "empty.jsonl").write_text(""))[0])
        },
        "empty.jsonl is empty",
    ),
    (
        "corpus-empty-parquet",
        lambda t, a, c: {"source": SourceSettings(corpus=corpus_file(t, c.iloc[:0], "empty.parquet"))},
        "has no rows",
    ),
    (
        "corpus-not-really-parquet",
        lambda t, a, c: {
            "source": SourceSettings(corpus=(t / "x.parquet", (t / "x.parquet").write_text("a,b\n1,2\n"))[0])
        },
        "x.parquet could not be read as .parquet",
    ),
    (
        "corpus-no-text-column",
        lambda t, a, c: {"source": SourceSettings(corpus=corpus_file(t, c.rename(columns={"text": "body"})))},
        "has no column 'text' (--text-column); its columns are 'id', 'body', 'label'",
    ),
    (
        "corpus-no-label-column",
        lambda t, a, c: {"source": SourceSettings(corpus=corpus_file(t, c), label_column="topic")},
        "has no column 'topic' (--label-column); its columns are 'id', 'text', 'label'",
    ),
    (
        "corpus-repeated-ids",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c.assign(id="same")), id_column="id")
        },
        "repeats the id 'same'; ids must be unique",
    ),
    (
        "corpus-only-blank-texts",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c.assign(text=["", " ", "\n\t", None] * 3)))
        },
        "No posts are left after cleaning",
    ),
    (
        "corpus-is-a-folder",
        lambda t, a, c: {"source": SourceSettings(corpus=(t / "posts.csv", (t / "posts.csv").mkdir())[0])},
        "posts.csv is a folder; pass the corpus file itself with --corpus.",
    ),
    (
        "corpus-texts-are-lists",
        lambda t, a, c: {
            "source": SourceSettings(
                corpus=corpus_file(t, c.assign(text=[[w] for w in c["text"]]), "lists.parquet")
            )
        },
        "lists.parquet holds a list in row 1, not a text",
    ),
    (
        "corpus-text-is-a-json-object",
        lambda t, a, c: {"source": SourceSettings(corpus=jsonl_with(t, c, 2, '{"text": {"body": "x"}}'))},
        "holds an object in row 3, not a text; store each text as a string",
    ),
    (
        "corpus-broken-jsonl-line",
        lambda t, a, c: {"source": SourceSettings(corpus=jsonl_with(t, c, 4, '{"text": "unterminated}'))},
        "Line 5 of the corpus ",
    ),
    (
        "corpus-blank-id",
        lambda t, a, c: {
            "source": SourceSettings(
                corpus=corpus_file(t, c.assign(id=["a", "b", " ", *c["id"][3:]])), id_column="id"
            )
        },
        "corpus.csv is blank in row 3; give every row an id, or leave --id-column out",
    ),
    (
        "corpus-csv-with-an-unquoted-separator",
        lambda t, a, c: {
            "source": SourceSettings(
                corpus=(t / "ragged.csv", (t / "ragged.csv").write_text("id,text,label\nd1,one, two,x\n"))[0]
            )
        },
        "could not be read as CSV with the separator ',' (line 2 has 4 fields, the header 3); quote texts",
    ),
    (
        "group-filter-is-a-broken-regex",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c)),
            "sampling": SamplingSettings(groups=["space", "med[icine"]),
        },
        "The group filter 'med[icine' is not a valid regular expression (unterminated character set",
    ),
    (
        "group-filter-matches-nothing",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c)),
            "sampling": SamplingSettings(groups=["politics"]),
        },
        "The group filter ['politics'] matches none of the 3 classes; the classes are: crypto, medicine, space; pass --groups with no value to take every class.",
    ),
    (
        "per-class-larger-than-a-class",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c)),
            "sampling": SamplingSettings(groups=[], per_class=5),
        },
        "The class 'crypto' has only 4 posts after cleaning, fewer than the 5 per class asked for; pass --per-class 4",
    ),
    (
        "k-larger-than-the-sample",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c)),
            "sampling": SamplingSettings(groups=[], per_class=0),
            "mapping": MapSettings(perplexity=3),
            "clustering": ClusterSettings(n_clusters=13),
        },
        "The number of clusters (13) must not exceed the number of posts (12)",
    ),
    (
        "more-classes-than-a-map-can-show",
        lambda t, a, c: {
            "source": SourceSettings(
                corpus=corpus_file(
                    t,
                    pd.DataFrame(
                        {
                            "text": [f"post {i}" for i in range(402)],
                            "label": [f"c{i // 2}" for i in range(402)],
                        }
                    ),
                )
            ),
            "sampling": SamplingSettings(groups=[], per_class=0),
        },
        "The sample has 201 classes, more than the 200 a map can tell apart (--label-column); keep at most 200 with --groups",
    ),
    (
        "perplexity-too-large",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c)),
            "sampling": SamplingSettings(groups=[], per_class=0),
        },
        "The t-SNE perplexity (30) must be less than the number of posts (12)",
    ),
    (
        "one-class-and-no-k",
        lambda t, a, c: {
            "source": SourceSettings(corpus=corpus_file(t, c.assign(label="all"))),
            "sampling": SamplingSettings(groups=[], per_class=0),
            "mapping": MapSettings(perplexity=3),
        },
        "pass --n-clusters",
    ),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_the_run_with_one_sentence_before_embedding(
    make, expected, archive, tiny_corpus, tmp_path
):
    output_dir = tmp_path / "runs"
    kwargs = {**FAST, **make(tmp_path, archive, tiny_corpus)}
    # The cases that need t-SNE to check the perplexity keep it.
    if "perplexity" in expected:
        kwargs["mapping"] = MapSettings(reducer="tsne")
    state = newsgroups(**kwargs, output=OutputSettings(output_dir=output_dir), return_state=True)
    assert_failed_before_embedding(state, expected, output_dir)
    with pytest.raises(InputError, match="."):
        state.result()


def test_unknown_embedder_is_refused_with_the_valid_names(tmp_path):
    names = [repr(name) for name in EMBEDDERS.names()]
    assert {"'local'", "'tfidf'"} <= set(names)
    state = newsgroups(
        embedding={"embedder": "word2vec"}, output=OutputSettings(output_dir=tmp_path), return_state=True
    )
    assert state.is_failed()
    listed = ", ".join(names[:-1]) + " or " + names[-1]
    assert f"embedding.embedder: Input should be {listed}" in state.message
    assert not list(tmp_path.iterdir())
    with pytest.raises(
        InputError, match=rf"The embedder must be one of {', '.join(names)}. Got 'word2vec' instead"
    ):
        EMBEDDERS.get("word2vec")


def test_a_finished_run_folder_is_never_reused(tiny_corpus, tmp_path):
    kwargs = {
        **FAST,
        "source": SourceSettings(corpus=corpus_file(tmp_path, tiny_corpus)),
        "sampling": SamplingSettings(groups=[], per_class=0),
        "output": OutputSettings(output_dir=tmp_path / "runs", run_name="mine"),
    }
    newsgroups(**kwargs)
    before = (tmp_path / "runs" / "mine" / "manifest.json").read_bytes()
    assert not (tmp_path / "runs" / "mine" / ".lock").exists()  # a finished folder holds only the run's files
    state = newsgroups(**kwargs, return_state=True)
    assert state.is_failed()
    assert "runs/mine already holds a finished run; choose another --run-name" in state.message
    assert (tmp_path / "runs" / "mine" / "manifest.json").read_bytes() == before


def test_a_folder_the_tool_did_not_make_is_never_removed(tiny_corpus, tmp_path):
    mine = tmp_path / "runs" / "notes"
    mine.mkdir(parents=True)
    (mine / "todo.txt").write_text("keep me")
    state = newsgroups(
        **FAST,
        source=SourceSettings(corpus=corpus_file(tmp_path, tiny_corpus)),
        output=OutputSettings(output_dir=tmp_path / "runs", run_name="notes"),
        return_state=True,
    )
    assert "notes already exists and is not an unfinished run folder" in state.message
    assert (mine / "todo.txt").read_text() == "keep me"


@pytest.mark.skipif("gemini" not in EMBEDDERS.names(), reason="the gemini embedder is not on this branch yet")
def test_gemini_without_a_key_fails_before_reading_any_data(monkeypatch, tmp_path):
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    state = newsgroups(
        source=SourceSettings(archive=tmp_path / "never-read.tar.gz"),
        embedding=EmbeddingSettings(embedder="gemini"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert "GEMINI_API_KEY" in state.message
    assert task_names(state) == []
    assert not (tmp_path / "runs").exists()


# Texts that are dirty but usable are counted and dropped (or decoded), and the run goes on.
DIRTY = [
    ("space", b"The rocket reached orbit."),
    ("space", b"The rocket reached orbit."),  # duplicate
    ("space", b"Shuttle docked \xff\xfe with the station."),  # not UTF-8
    ("space", b"   "),  # white space
    ("space", b""),  # empty: a missing value in CSV
    ("medicine", b"The doctor prescribed antibiotics."),
    ("medicine", b"Insulin for diabetes every day."),
    ("medicine", b"Vaccine trial and immune response."),
    ("crypto", b"The cipher uses a public key exchange."),
    ("crypto", b"Encryption protects the message."),
    ("crypto", b"RSA relies on factoring."),
]


def dirty_corpus(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"dirty{suffix}"
    if suffix == ".csv":
        lines = [b"label,text"] + [label.encode() + b',"' + text + b'"' for label, text in DIRTY]
        path.write_bytes(b"\n".join(lines) + b"\n")
    elif suffix == ".jsonl":
        lines = [b'{"label": "' + label.encode() + b'", "text": "' + text + b'"}' for label, text in DIRTY]
        path.write_bytes(b"\n".join(lines).replace(b'"text": ""', b'"text": null') + b"\n")
    else:
        texts = [text or None for _, text in DIRTY]
        table = pa.table({"label": [label for label, _ in DIRTY], "text": pa.array(texts, pa.binary())})
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_dirty_texts_are_counted_dropped_or_decoded_and_the_run_finishes(suffix, tmp_path):
    manifest = newsgroups(
        **FAST,
        source=SourceSettings(corpus=dirty_corpus(tmp_path, suffix)),
        sampling=SamplingSettings(groups=[], per_class=0),
        output=OutputSettings(output_dir=tmp_path / "runs", run_name="dirty"),
    )
    assert manifest["counts"]["cleaned"] == {
        "input": 11,
        "missing": 1,
        "empty": 1,
        "too_long": 0,
        "duplicate": 1,
        "unlabelled": 0,
        "undecodable": 1,
        "kept": 8,
    }
    texts = pq.read_table(tmp_path / "runs" / "dirty" / "sample.parquet").column("text").to_pylist()
    assert "Shuttle docked \ufffd\ufffd with the station." in texts


# The command line: the same sentences on stderr, no traceback, a non-zero exit status.


def cli(
    *args: str, env_extra: dict[str, str] | None = None, api_url: str | None = None
) -> subprocess.CompletedProcess:
    """The command line in a subprocess; a run reaching Prefect uses the server at ``api_url`` (or starts its own)."""
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        # The temporary server starts slowly on a busy 2-core machine; 20 s is not always enough.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        **(env_extra or {}),
    }
    env.pop("PREFECT_API_URL", None)  # the harness's server, in-process only
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "flows.newsgroups", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_cli_prints_the_sentence_without_a_traceback_and_exits_non_zero(
    tmp_path, tiny_corpus, prefect_server
):
    home = {"PREFECT_HOME": str(tmp_path / "prefect")}
    result = cli(
        "--archive", str(tmp_path / "missing.tar.gz"), "--output-dir", str(tmp_path / "runs"), env_extra=home
    )
    assert result.returncode == 2
    assert "error: The archive " in result.stderr
    assert "missing.tar.gz does not exist; pass the path of 20news-bydate.tar.gz" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs" / "manifest.json").exists()

    # A failure after the first files were written: still one sentence, and no folder left.
    corpus = corpus_file(tmp_path, tiny_corpus)
    result = cli(
        "--corpus",
        str(corpus),
        "--groups",
        "--per-class",
        "9",
        "--embedder",
        "tfidf",
        "--output-dir",
        str(tmp_path / "runs"),
        env_extra=home,
        api_url=prefect_server,
    )
    assert result.returncode == 2
    assert "error: The class 'crypto' has only 4 posts after cleaning" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # Printed once: Prefect's own log lines repeating the failure are silenced in the command line.
    assert (result.stderr + result.stdout).count("has only 4 posts after cleaning") == 1, result.stderr
    # No run folder is left; the corpus store beside run folders keeps the corpus for the next try.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".corpus-store", ".runs.lock"]


@pytest.mark.slow
def test_cli_debug_flag_shows_the_traceback(tmp_path):
    result = cli(
        "--archive",
        str(tmp_path / "missing.tar.gz"),
        "--output-dir",
        str(tmp_path / "runs"),
        "--debug",
        env_extra={"PREFECT_HOME": str(tmp_path / "prefect")},
    )
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "InputError: The archive " in result.stderr


def test_cli_refuses_an_unknown_embedder_and_lists_the_valid_ones(tmp_path):
    result = cli("--embedder", "word2vec", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    names = ", ".join(repr(name) for name in EMBEDDERS.names())
    assert f"argument --embedder: invalid choice: 'word2vec' (choose from {names})" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_cli_refuses_an_out_of_range_value_with_the_flag_name(tmp_path):
    result = cli("--per-class", "-3", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert (
        "error: Invalid parameter --per-class: Input should be greater than or equal to 0 (got '-3'). See --help."
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_cli_refuses_n_clusters_auto_with_gmm_before_ingest_even_with_plan(tmp_path, tiny_corpus):
    corpus = corpus_file(tmp_path, tiny_corpus)
    runs = tmp_path / "runs"
    result = cli(
        "--corpus",
        str(corpus),
        "--clusterer",
        "gmm",
        "--n-clusters",
        "auto",
        "--plan",
        "--output-dir",
        str(runs),
    )
    assert result.returncode == 2
    assert "n_clusters 'auto' is supported by the kmeans clusterer only; got clusterer 'gmm'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not runs.exists()  # no corpus store, no run folder


def test_cli_refuses_more_tokens_than_the_model_reads_before_ingest(tmp_path):
    # Past its position embeddings the model would fail on the first long text, after ingest and cleaning.
    result = cli("--max-tokens", "1024", "--output-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert (
        "--max-tokens 1024 is more than all-MiniLM-L6-v2 can read (512 tokens): pass --max-tokens 512 or less"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
    assert EmbeddingSettings(local_model="embeddinggemma-300m", max_tokens=1024).max_tokens == 1024


def test_a_preset_is_checked_together_with_the_flags_given_beside_it():
    # --preset best is EmbeddingGemma: 1024 tokens are within the model, but past its OpenVINO conversion.
    with pytest.raises(
        ValidationError, match=r"reads on --runtime openvino \(512 tokens: its OpenVINO conversion"
    ):
        RunSettings(preset="best", embedding=EmbeddingSettings(max_tokens=1024))
    best = RunSettings(preset="best", embedding=EmbeddingSettings(max_tokens=1024, runtime="torch")).embedding
    assert (best.local_model, best.max_tokens, best.runtime) == ("embeddinggemma-300m", 1024, "torch")


def test_cli_refuses_a_runtime_the_model_cannot_run_on_before_ingest(tmp_path):
    result = cli("--preset", "best", "--runtime", "onnx", "--output-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert (
        "embeddinggemma-300m cannot run on --runtime onnx (its ONNX export fails in torch.onnx.export's tracer): "
        "pass --runtime openvino or torch" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
