"""A living map: placing new posts against a fixed base run, on real posts (TF-IDF vectors: fast).

The flow-level tests run three to five flows each (a base, its updates): marked slow.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.newsgroups import newsgroups
from flows.update import update
from tasks.cluster import GaussianMixtureClusterer, KMeansClusterer, predict
from tasks.config import (
    ClusterSettings,
    EmbeddingSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
    UpdateSettings,
)
from tasks.embed._tfidf import TfidfEmbedder
from tasks.errors import InputError
from tasks.placement import PlacementState, assign, emerging, read_state
from tasks.update import load_base, new_posts, resolve_base, stable_names

SCI = ["sci.crypt", "sci.electronics", "sci.med", "sci.space"]


@pytest.fixture(scope="module")
def sci_posts(train_posts) -> pd.DataFrame:
    """The four sci groups of the real train split."""
    return train_posts[train_posts["class_name"].isin(SCI)].reset_index(drop=True)


def test_the_fitted_tfidf_embeds_later_texts_as_the_fit_embedded_its_own(sci_posts):
    texts = sci_posts["text"].tolist()[:300]
    state, vectors = TfidfEmbedder(dimensions=32, seed=0).fit(texts)
    assert np.allclose(state.transform(texts), vectors, atol=1e-4)


@pytest.mark.parametrize("clusterer", [KMeansClusterer(n_clusters=4), GaussianMixtureClusterer(n_clusters=4)])
def test_predict_from_the_stored_model_gives_the_fit_its_own_labels(sci_posts, clusterer):
    _, vectors = TfidfEmbedder(dimensions=32, seed=0).fit(sci_posts["text"].tolist()[:400])
    labels = clusterer.fit_predict(vectors)
    stored = {k: np.asarray(v).copy() for k, v in clusterer.fitted().items()}
    assert (predict(clusterer.name, stored, vectors) == labels).mean() > 0.99


def test_a_post_far_from_every_cluster_is_unassigned_and_a_group_of_them_emerges():
    rng = np.random.default_rng(0)
    base = np.r_[rng.normal(0, 0.1, (60, 5)), rng.normal(3, 0.1, (60, 5))]
    labels = np.r_[np.zeros(60, int), np.ones(60, int)]
    from tasks.placement import fit_state

    state = fit_state(
        base, labels, reducer="pca", clusterer="kmeans", mapping={}, seed=0,
        model={"centres": np.array([base[:60].mean(0), base[60:].mean(0)])}, tfidf=None,
    )  # fmt: skip
    new = np.r_[rng.normal(0, 0.05, (5, 5)), rng.normal(-3, 0.1, (30, 5))]
    assigned = assign(state, base, labels, new)
    assert assigned[:5].tolist() == [0] * 5 and (assigned[5:] == -1).all()
    radius = float(np.median(state.arrays["radii"]))
    grown, ids = emerging(new, assigned, first=state.next_cluster, min_size=10, radius=radius)
    assert ids == [2] and (grown[5:] == 2).mean() >= 0.9


def test_new_posts_are_matched_by_id_and_capped_oldest_first(sci_posts):
    base = sci_posts.iloc[:100]
    fresh, total = new_posts(sci_posts, base, ["sci.med"], by_id=True, max_new=5)
    assert total == (sci_posts["class_name"] == "sci.med").sum() - (base["class_name"] == "sci.med").sum()
    med = sci_posts[sci_posts["class_name"] == "sci.med"]
    assert fresh["doc_id"].tolist() == med[~med["doc_id"].isin(base["doc_id"])]["doc_id"].tolist()[:5]


def test_an_old_cluster_keeps_its_name_unless_its_terms_changed():
    base = pd.DataFrame({"cluster": [0, 1], "name": ["orbit, launch, nasa, moon", "key, chip, clipper, nsa"]})
    names = pd.DataFrame(
        {
            "cluster": [0, 1, 2],
            "name": ["launch, orbit, shuttle, mars", "doctor, patient, pain, drug", "gun, law, police, fbi"],
            "terms": [["launch", "orbit", "shuttle"], ["doctor", "patient"], ["gun", "law"]],
        }
    )
    kept = stable_names(base, names)
    assert kept["name"].tolist() == [
        "orbit, launch, nasa, moon",
        "doctor, patient, pain, drug",
        "gun, law, police, fbi",
    ]
    assert kept["renamed"].tolist() == [False, True, False]


def _base(
    archive, data_home, output_dir, name, *, reducer="tsne", clusterer="kmeans", per_class=20, subset="train"
):
    return newsgroups(
        source=SourceSettings(archive=archive, data_home=data_home, subset=subset),
        sampling=SamplingSettings(per_class=per_class),
        embedding=EmbeddingSettings(embedder="tfidf", tfidf_dimensions=32),
        mapping=MapSettings(reducer=reducer, perplexity=10, tsne_iterations=100, umap_neighbors=10),
        clustering=ClusterSettings(clusterer=clusterer, min_cluster_size=5, hdbscan_umap_dimensions=0),
        output=OutputSettings(output_dir=output_dir, run_name=name),
    )


@pytest.fixture(scope="module")
def chain(archive, data_home, tmp_path_factory):
    """A t-SNE + KMeans base of 80 train posts, an update with 40 more, and a second update on the first."""
    output_dir = tmp_path_factory.mktemp("living")
    _base(archive, data_home, output_dir, "base")
    first = update(
        updating=UpdateSettings(base="base", max_new=40),
        source=SourceSettings(subset="all"),
        output=OutputSettings(output_dir=output_dir, run_name="first"),
    )
    second = update(
        updating=UpdateSettings(base="latest", max_new=20),
        source=SourceSettings(subset="all"),
        output=OutputSettings(output_dir=output_dir, run_name="second"),
    )
    return output_dir, first, second


def _same_base_points(base_root, root) -> None:
    for name, columns in (
        ("map.parquet", ["doc_id", "x", "y"]),
        ("assignments.parquet", ["doc_id", "cluster"]),
    ):
        before = pq.read_table(base_root / name).to_pandas()
        after = pq.read_table(root / name).to_pandas()
        kept = after[~after["added"]].reset_index(drop=True)
        assert len(kept) == len(before)
        for column in columns:
            assert (kept[column].to_numpy() == before[column].to_numpy()).all(), (name, column)


@pytest.mark.slow
def test_an_update_keeps_every_base_point_exactly_and_adds_the_new_ones(chain):
    output_dir, first, _ = chain
    root = output_dir / "first"
    _same_base_points(output_dir / "base", root)
    assert first["counts"]["base"] == 80 and first["counts"]["added"] == 40
    added = pd.read_parquet(root / "map.parquet")
    assert added["added"].sum() == 40 and np.isfinite(added[["x", "y"]].to_numpy()).all()
    manifest = json.loads((output_dir / "base" / "manifest.json").read_text())
    assert first["base_run"]["name"] == "base"
    from tasks.layout import file_sha256

    assert first["base_run"]["manifest_sha256"] == file_sha256(output_dir / "base" / "manifest.json")
    assert "placement.json" in manifest["checksums"]


@pytest.mark.slow
def test_the_changes_table_counts_every_cluster_before_and_after(chain):
    output_dir, first, _ = chain
    changes = pd.read_parquet(output_dir / "first" / "changes.parquet")
    assert changes["before"].sum() == 80 and changes["added"].sum() == 40
    assert (changes["after"] == changes["before"] + changes["added"]).all()
    assert set(changes.columns) >= {
        "cluster",
        "name",
        "share_before",
        "share_after",
        "rising_terms",
        "emerging",
    }
    assert "added" in first["metrics"] and first["metrics"]["added"]["posts"] == 40


@pytest.mark.slow
def test_an_update_is_the_base_of_the_next(chain):
    output_dir, _, second = chain
    assert second["base_run"]["name"] == "first"
    _same_base_points(output_dir / "first", output_dir / "second")
    # Emerging numbers are never reused: the state remembers the next free one.
    state, _ = read_state(output_dir / "second")
    assert isinstance(state, PlacementState) and state.next_cluster >= 4


@pytest.mark.slow
@pytest.mark.parametrize(("reducer", "clusterer"), [("pca", "gmm"), ("umap", "hdbscan")])
def test_base_points_stay_exactly_on_every_reducer_and_clusterer(
    archive, data_home, tmp_path, reducer, clusterer, request
):
    if reducer == "umap":
        request.getfixturevalue("compiled_umap")
    _base(archive, data_home, tmp_path, "base", reducer=reducer, clusterer=clusterer)
    update(
        updating=UpdateSettings(base="base", max_new=15),
        source=SourceSettings(subset="all"),
        output=OutputSettings(output_dir=tmp_path, run_name="next"),
    )
    _same_base_points(tmp_path / "base", tmp_path / "next")


@pytest.mark.slow
def test_refusals_leave_the_base_untouched(chain, tmp_path):
    output_dir, _, _ = chain
    with pytest.raises(InputError, match="no finished run"):
        resolve_base("latest", tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(output_dir / "base", copy)
    (copy / "manifest.json").rename(copy / "manifest.later")
    with pytest.raises(InputError, match="did not finish"):
        load_base(copy)
    (copy / "manifest.later").rename(copy / "manifest.json")
    with (copy / "features.npy").open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01")
    with pytest.raises(InputError, match="features.npy .* does not match its checksum"):
        load_base(copy)
    with pytest.raises(InputError, match="embedder 'tfidf' and the update asks for 'local'"):
        update(
            updating=UpdateSettings(base=str(output_dir / "base")),
            embedding=EmbeddingSettings(embedder="local"),
            output=OutputSettings(output_dir=tmp_path),
        )
    with pytest.raises(InputError, match="reducer 'tsne' and the update asks for 'pca'"):
        update(
            updating=UpdateSettings(base=str(output_dir / "base")),
            mapping=MapSettings(reducer="pca"),
            output=OutputSettings(output_dir=tmp_path),
        )


def test_nothing_new_writes_no_folder(tmp_path, tiny_corpus):
    corpus = tmp_path / "posts.csv"
    tiny_corpus.to_csv(corpus, index=False)
    newsgroups(
        source=SourceSettings(corpus=corpus, label_column="label"),
        embedding=EmbeddingSettings(embedder="tfidf"),
        mapping=MapSettings(reducer="pca"),
        output=OutputSettings(output_dir=tmp_path / "runs", run_name="base"),
    )
    result = update(output=OutputSettings(output_dir=tmp_path / "runs"))
    assert result == {"nothing_new": "nothing new since base"}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")) == ["base"]
    # Matched by text (no id column): rows that moved are not new, an edited file's new rows are.
    grown = pd.concat([tiny_corpus.iloc[::-1], tiny_corpus.assign(text=tiny_corpus["text"] + " Indeed.")])
    grown.to_csv(corpus, index=False)
    manifest = update(output=OutputSettings(output_dir=tmp_path / "runs", run_name="grown"))
    assert manifest["counts"]["added"] == len(tiny_corpus)
    # The corpus's other columns (its unused "id") stay with the base's posts and the new ones.
    ids = pq.read_table(tmp_path / "runs" / "grown" / "sample.parquet").column("id").to_pylist()
    assert sorted(ids) == sorted(tiny_corpus["id"].astype(str).tolist() * 2)
