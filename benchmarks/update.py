"""The living map against its targets (docs/living-map.md), side by side in one run.

    python benchmarks/update.py [--output-dir /tmp/living-bench]

On the four sci groups of 20 Newsgroups (all posts, MiniLM, t-SNE, KMeans):

- stream: the train split as base, then ``--subset all``: every base point kept
  exactly; Hungarian accuracy of the added posts with the frozen clusters
  against a full refit (KMeans on the grown corpus) scored on the same posts;
- time: a base of the oldest 90% of the posts, the newest 10% added by an
  update (embeddings cached) against a full run on the grown corpus;
- emerging: sci.space held out of the base and added with the rest: the
  emerging clusters, the purity and name of the largest, and where the other
  groups' posts went.

The embedding cache in the output folder makes repeated runs cheap (the first
embeds 3,896 posts: minutes to an hour on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flows.newsgroups import newsgroups
from flows.update import update
from tasks.config import (
    ClusterSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
    UpdateSettings,
)
from tasks.evaluate import evaluate_clusters
from tasks.ingest import ingest

SCI = ["sci"]
ARCHIVE = Path(os.environ.get("NEWSGROUPS_ARCHIVE", "../shared/data/20news-bydate.tar.gz"))


def timed(function, **kwargs):
    start = time.perf_counter()
    result = function(**kwargs)
    return result, time.perf_counter() - start


def moved(output_dir: Path, base: str, run: str) -> int:
    """Base posts whose x, y or cluster differ in the update (0 is the target)."""
    before = pd.read_parquet(output_dir / base / "map.parquet").merge(
        pd.read_parquet(output_dir / base / "assignments.parquet"), on="doc_id"
    )
    after = pd.read_parquet(output_dir / run / "map.parquet")
    after = after[~after["added"]].reset_index(drop=True)
    clusters = pd.read_parquet(output_dir / run / "assignments.parquet")
    clusters = clusters[~clusters["added"]].reset_index(drop=True)
    same = (
        (before["doc_id"].to_numpy() == after["doc_id"].to_numpy())
        & (before["x"].to_numpy() == after["x"].to_numpy())
        & (before["y"].to_numpy() == after["y"].to_numpy())
        & (before["cluster"].to_numpy() == clusters["cluster"].to_numpy())
    )
    return int((~same).sum())


def stream(output_dir: Path) -> dict:
    """Train as base, then --subset all: frozen clusters against a full refit on the added posts."""
    source = SourceSettings(archive=ARCHIVE)
    newsgroups(
        source=source,
        sampling=SamplingSettings(groups=SCI, per_class=0),
        output=OutputSettings(output_dir=output_dir, run_name="stream-base"),
    )
    manifest, seconds = timed(
        update,
        updating=UpdateSettings(base="stream-base"),
        source=SourceSettings(archive=ARCHIVE, subset="all"),
        output=OutputSettings(output_dir=output_dir, run_name="stream-update"),
    )
    root = output_dir / "stream-update"
    posts = pd.read_parquet(root / "sample.parquet")
    added = pd.read_parquet(root / "map.parquet")["added"].to_numpy()
    features = np.load(root / "features.npy")
    from sklearn.cluster import KMeans

    refit = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(features)
    classes = posts["class_name"].to_numpy(dtype=object)
    return {
        "base posts": manifest["counts"]["base"],
        "added posts": manifest["counts"]["added"],
        "moved": moved(output_dir, "stream-base", "stream-update"),
        "frozen accuracy (added)": manifest["metrics"]["added"]["hungarian_accuracy"],
        "frozen matched accuracy (added)": manifest["metrics"]["added"]["matched_accuracy"],
        "refit accuracy (added)": evaluate_clusters(classes[added], refit[added]).metrics[
            "hungarian_accuracy"
        ],
        "unassigned added": manifest["counts"]["unassigned_added"],
        "emerging": manifest["counts"]["emerging"],
        "update seconds": round(seconds, 1),
    }


def grown_corpus(output_dir: Path) -> tuple[Path, Path]:
    """The sci posts as a corpus file (ids kept), and the same file without its newest 10%."""
    posts = ingest(SourceSettings(archive=ARCHIVE, subset="all"))
    posts = posts[posts["class_name"].str.startswith("sci.")]
    frame = pd.DataFrame({"id": posts["doc_id"], "text": posts["text"], "label": posts["class_name"]})
    grown, older = output_dir / "grown.parquet", output_dir / "older.parquet"
    frame.to_parquet(grown, index=False)
    frame.iloc[: int(len(frame) * 0.9)].to_parquet(older, index=False)
    return older, grown


def timing(output_dir: Path) -> dict:
    """A base of the oldest 90%, then the update and a full run on the grown corpus, side by side."""
    older, grown = grown_corpus(output_dir)
    columns = {"id_column": "id", "label_column": "label"}
    clustering = ClusterSettings(n_clusters=4)
    newsgroups(
        source=SourceSettings(corpus=older, **columns),
        clustering=clustering,
        output=OutputSettings(output_dir=output_dir, run_name="time-base"),
    )
    manifest, update_seconds = timed(
        update,
        updating=UpdateSettings(base="time-base"),
        source=SourceSettings(corpus=grown, **columns),
        output=OutputSettings(output_dir=output_dir, run_name="time-update"),
    )
    _, full_seconds = timed(
        newsgroups,
        source=SourceSettings(corpus=grown, **columns),
        clustering=clustering,
        # A stored map of an earlier benchmark run would make the full run look cheap.
        mapping=MapSettings(reuse_map=False),
        output=OutputSettings(output_dir=output_dir, run_name="time-full"),
    )
    return {
        "base posts": manifest["counts"]["base"],
        "added posts": manifest["counts"]["added"],
        "moved": moved(output_dir, "time-base", "time-update"),
        "update seconds": round(update_seconds, 1),
        "full run seconds": round(full_seconds, 1),
        "ratio": round(update_seconds / full_seconds, 3),
    }


def emerging(output_dir: Path) -> dict:
    """sci.space held out of the base, added by the update with the other groups' new posts."""
    newsgroups(
        source=SourceSettings(archive=ARCHIVE),
        sampling=SamplingSettings(groups=["sci.crypt", "sci.electronics", "sci.med"], per_class=0),
        output=OutputSettings(output_dir=output_dir, run_name="held-out-base"),
    )
    manifest = update(
        updating=UpdateSettings(base="held-out-base"),
        source=SourceSettings(archive=ARCHIVE, subset="all"),
        sampling=SamplingSettings(groups=SCI),
        output=OutputSettings(output_dir=output_dir, run_name="held-out-update"),
    )
    root = output_dir / "held-out-update"
    posts = pd.read_parquet(root / "sample.parquet").assign(
        cluster=pd.read_parquet(root / "assignments.parquet")["cluster"],
        added=pd.read_parquet(root / "assignments.parquet")["added"],
    )
    changes = pd.read_parquet(root / "changes.parquet")
    new = posts[posts["added"]]
    emerging_ids = changes.loc[changes["emerging"], "cluster"].tolist()
    space = new[new["class_name"] == "sci.space"]
    others = new[new["class_name"] != "sci.space"]
    names = pd.read_parquet(output_dir / "held-out-base" / "clusters.parquet")
    matched = dict(zip(names["cluster"], names["matched_class"], strict=True))
    result = {
        "added posts": len(new),
        "moved": moved(output_dir, "held-out-base", "held-out-update"),
        "emerging clusters": len(emerging_ids),
        "space posts in an emerging cluster": round(float(space["cluster"].isin(emerging_ids).mean()), 3),
        "other posts in their old cluster": round(
            float((others["cluster"].map(matched) == others["class_name"]).mean()), 3
        ),
        "other posts in an emerging cluster": round(float(others["cluster"].isin(emerging_ids).mean()), 3),
    }
    if emerging_ids:
        largest = changes[changes["emerging"]].sort_values("after").iloc[-1]
        members = new[new["cluster"] == largest["cluster"]]
        result["largest emerging: posts"] = int(largest["after"])
        result["largest emerging: sci.space purity"] = round(
            float((members["class_name"] == "sci.space").mean()), 3
        )
        result["largest emerging: name"] = largest["name"]
    result["summary"] = manifest["metrics"].get("added")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/living-bench"))
    parser.add_argument("--only", choices=["stream", "timing", "emerging"], action="append")
    args = parser.parse_args()
    results = {}
    for name, scenario in (("stream", stream), ("timing", timing), ("emerging", emerging)):
        if args.only and name not in args.only:
            continue
        results[name] = scenario(args.output_dir)
        print(f"\n## {name}")
        for key, value in results[name].items():
            print(f"  {key:<42} {value}")
    (args.output_dir / "living-map-benchmark.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
