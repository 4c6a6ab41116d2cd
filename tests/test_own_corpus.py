"""A user's own corpus is taken on its own terms: every class and row by default, the README's commands work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.newsgroups import newsgroups
from tasks.config import EmbeddingSettings, MapSettings, OutputSettings, SamplingSettings, SourceSettings
from tests.test_explorer_data import page_parts

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {
    "space": "The rocket {i} reached orbit and the shuttle docked with the station",
    "med": "The patient {i} needed insulin and the doctor prescribed a vaccine",
    "crypto": "The cipher {i} uses a public key and the encryption resists attack",
    "autos": "The engine {i} of the car needs new brakes and a tyre change",
}


def readme_commands(section: str) -> list[str]:
    """The ``python -m flows.newsgroups`` lines of the bash blocks in the README section ``section``."""
    text = (ROOT / "README.md").read_text()
    body = re.split(rf"^##+ {re.escape(section)}\n", text, maxsplit=1, flags=re.M)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", body, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if re.match(r"(\.venv/bin/)?python -m ", line)]


def posts(n_per_topic: int) -> pd.DataFrame:
    rows = [(topic, text.format(i=i)) for topic, text in TOPICS.items() for i in range(n_per_topic)]
    return pd.DataFrame({"topic": [t for t, _ in rows], "body": [b for _, b in rows]})


def test_a_corpus_is_taken_whole_by_default(tmp_path):
    path = tmp_path / "posts.csv"
    posts(5).to_csv(path, index=False)
    manifest = newsgroups(
        source=SourceSettings(corpus=path, text_column="body", label_column="topic"),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
    )
    assert manifest["counts"]["sampled"] == 20 and manifest["counts"]["classes"] == 4
    assert manifest["parameters"]["sampling"] == {"groups": [], "per_class": 0}


def test_a_corpus_can_still_be_narrowed_as_20_newsgroups_is(tmp_path):
    path = tmp_path / "posts.csv"
    posts(5).to_csv(path, index=False)
    manifest = newsgroups(
        source=SourceSettings(corpus=path, text_column="body", label_column="topic"),
        sampling=SamplingSettings(groups=["space", "med"], per_class=3),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
    )
    assert manifest["counts"]["sampled"] == 6 and manifest["counts"]["classes"] == 2


def test_a_corpus_s_own_columns_reach_the_sample_and_colour_the_map(tmp_path):
    path = tmp_path / "posts.csv"
    frame = posts(10)
    frame["source"] = ["web", "print"] * 20
    frame["year"] = ["2001", "2002", "2003", "2001.0"] * 10
    frame["serial"] = [f"s{i}" for i in range(40)]  # 40 values: kept, but too many to colour by
    frame.to_csv(path, index=False)
    newsgroups(
        source=SourceSettings(corpus=path, text_column="body", label_column="topic"),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs"),
    )
    (run,) = [p.parent for p in (tmp_path / "runs").glob("*/manifest.json")]
    sample = pq.read_table(run / "sample.parquet")
    assert sample.schema.names == ["doc_id", "text", "label", "class_name", "source", "year", "serial"]
    assert sample.schema.field("year").type == pa.string()
    rows = sample.to_pandas().set_index("doc_id")
    assert rows.loc["1", "source"] == "print" and rows.loc["3", "year"] == "2001.0"  # a CSV cell is text
    settings_, points = page_parts((run / "map.html").read_text())
    columns = {column["name"]: column for column in settings_["columns"]}
    assert sorted(columns) == ["source", "year"]
    assert columns["source"]["values"] == ["print", "web"]
    # The page's posts are the sample's, in its order.
    shown = [columns["source"]["values"][code] for code in points["columns"]["source"]]
    assert points["doc_id"] == rows.index.tolist() and shown == rows["source"].tolist()


@pytest.mark.slow
def test_the_readme_own_corpus_commands_run_verbatim(tmp_path, prefect_server):
    commands = readme_commands("Your own corpus")
    assert commands, "the README's own-corpus section has no command"
    posts(15).to_csv(tmp_path / "posts.csv", index=False)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # as if installed: the command runs in the user's folder
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": prefect_server,
        "HF_HUB_OFFLINE": "1",
    }
    for command in commands:
        argv = command.split()
        result = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    (manifest,) = [json.loads(p.read_text()) for p in (tmp_path / "artifacts").glob("*/manifest.json")]
    assert manifest["counts"]["sampled"] == 60 and manifest["counts"]["classes"] == 4
