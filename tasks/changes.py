"""What an update changed: one row per cluster (``changes.parquet``), the same in words, and as artifacts.

``flows/update.py`` makes the table once the new posts are placed and the
clusters named (:func:`tasks.update.stable_names`), then publishes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from tasks.layout import NOISE, RunLayout
from tasks.names import TOKEN_PATTERN

CHANGES_KEY = "newsgroups-changes"
UPDATE_SUMMARY_KEY = "newsgroups-update"


def common_terms(texts: list[str], *, max_df: float = 0.5) -> frozenset[str]:
    """Terms found in more than ``max_df`` of ``texts``: boilerplate (headers), as for the names."""
    vectorizer = CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN, binary=True)
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no counted term at all
        return frozenset()
    share = np.asarray(counts.mean(axis=0)).ravel()
    return frozenset(vectorizer.get_feature_names_out()[share > max_df].tolist())


def rising_terms(
    added_texts: list[str], base_texts: list[str], *, common: frozenset[str] = frozenset(), top_n: int = 5
) -> list[str]:
    """The terms whose share of posts rose most from a cluster's base posts to its added ones.

    Terms in ``common`` (:func:`common_terms` of the whole map) are left out.
    """
    if len(added_texts) < 2:
        return []
    stop_words = sorted(ENGLISH_STOP_WORDS | common)
    vectorizer = CountVectorizer(stop_words=stop_words, token_pattern=TOKEN_PATTERN, binary=True, min_df=2)
    try:
        counts = vectorizer.fit_transform([*added_texts, *base_texts])
    except ValueError:  # no term in two posts
        return []
    added = np.asarray(counts[: len(added_texts)].mean(axis=0)).ravel()
    base = np.asarray(counts[len(added_texts) :].mean(axis=0)).ravel() if base_texts else np.zeros_like(added)
    rise = added - base
    terms = vectorizer.get_feature_names_out()
    order = np.lexsort((terms, -rise))
    return [str(terms[i]) for i in order[:top_n] if rise[i] > 0]


def changes_table(
    posts: pd.DataFrame, names: pd.DataFrame, emerging_ids: list[int], gone: pd.Series
) -> pd.DataFrame:
    """One row per cluster (``changes.parquet``): sizes before and after, shares, rising terms, emerging.

    ``posts`` has ``text``, ``cluster`` and ``added`` for every post on the new
    map; ``names`` is the :func:`stable_names` table; ``gone`` counts, per
    cluster, the base posts no longer in the source (they stay on the map).
    """
    n_before, n_after = int((~posts["added"]).sum()), len(posts)
    common = common_terms(posts["text"].tolist())
    rows = []
    for row in names.itertuples():
        members = posts[posts["cluster"] == row.cluster]
        base_part, added_part = members[~members["added"]], members[members["added"]]
        rows.append(
            {
                "cluster": int(row.cluster),
                "name": row.name,
                "previous_name": row.previous_name,
                "renamed": bool(row.renamed),
                "before": len(base_part),
                "added": len(added_part),
                "after": len(members),
                "gone_from_source": int(gone.get(int(row.cluster), 0)),
                "share_before": len(base_part) / max(n_before, 1),
                "share_after": len(members) / max(n_after, 1),
                "rising_terms": rising_terms(
                    added_part["text"].tolist(), base_part["text"].tolist(), common=common
                ),
                "emerging": int(row.cluster) in emerging_ids,
            }
        )
    return pd.DataFrame(rows)


def summary_in_words(base_name: str, changes: pd.DataFrame, metrics: dict[str, Any] | None = None) -> str:
    """The update in a few sentences of Markdown ("312 new posts; most went to ...; 2 emerging clusters: ...")."""
    added = int(changes["added"].sum())
    lines = [f"# New since `{base_name}`", ""]
    ranked = changes[(changes["added"] > 0) & (changes["cluster"] != NOISE)].sort_values(
        "added", ascending=False
    )
    parts = [f"{added} new posts"]
    if len(ranked):
        top = ranked.iloc[0]
        parts.append(f"most went to cluster {top.cluster} ({top['name']}): {top.added}")
    unplaced = changes.loc[changes["cluster"] == NOISE, "added"].sum()
    if unplaced:
        parts.append(f"{unplaced} fit no cluster")
    emerging = changes[changes["emerging"]]
    parts.append(
        f"{len(emerging)} emerging cluster{'s' if len(emerging) != 1 else ''}"
        + (
            ": " + "; ".join(f"{r.cluster} ({r.name}, {r.added} posts)" for r in emerging.itertuples())
            if len(emerging)
            else ""
        )
    )
    renamed = changes[changes["renamed"]]
    if len(renamed):
        parts.append(
            "renamed: "
            + "; ".join(f"{r.cluster} from '{r.previous_name}' to '{r.name}'" for r in renamed.itertuples())
        )
    gone = int(changes["gone_from_source"].sum())
    if gone:
        parts.append(f"{gone} earlier posts are no longer in the source and stay on the map")
    lines.append("; ".join(parts) + ".")
    if metrics:
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [
            f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
        ]
    return "\n".join(lines) + "\n"


def publish_changes(
    base_name: str, changes: pd.DataFrame, metrics: dict[str, Any] | None, layout: RunLayout
) -> None:
    """The changes as a table artifact and, in words, as a Markdown artifact."""
    create_table_artifact(
        key=CHANGES_KEY,
        table=[
            {
                **{k: row[k] for k in ("cluster", "name", "before", "added", "after", "emerging", "renamed")},
                "share before": round(float(row["share_before"]), 4),
                "share after": round(float(row["share_after"]), 4),
                "rising terms": ", ".join(row["rising_terms"]),
            }
            for row in changes.to_dict(orient="records")
        ],
        description=f"What changed in run {layout.root.name} since {base_name}",
    )
    create_markdown_artifact(
        key=UPDATE_SUMMARY_KEY,
        markdown=summary_in_words(base_name, changes, metrics),
        description=f"Run {layout.root.name}: the new posts since {base_name}, in words",
    )
