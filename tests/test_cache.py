"""The embedding cache: the store itself, its maintenance command, and the embed stage using it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tasks.embed.__main__ import main as cache_main
from tasks.embed.cache import CacheWarning, EmbeddingCache, checksum, prune, summarise, text_keys

IDENTITY = {"embedder": "toy", "model": "toy-model", "dimensions": 4}


def toy_vectors(keys: np.ndarray) -> np.ndarray:
    """A deterministic vector per key, so any mix-up of rows shows."""
    raw = np.frombuffer(np.ascontiguousarray(keys).tobytes(), dtype=np.uint8).reshape(len(keys), 32)
    return raw[:, :4].astype(np.float32)


@pytest.fixture
def store(tmp_path) -> EmbeddingCache:
    return EmbeddingCache.open(tmp_path / "cache", IDENTITY)


def test_stored_vectors_come_back_for_their_exact_texts_only(store):
    texts = ["alpha", "beta", "gamma"]
    keys = text_keys(texts)
    store.add(keys, toy_vectors(keys))
    query = text_keys(["beta", "delta", "alpha", "alpha ", "Alpha"])
    found, vectors = store.lookup(query)
    assert found.tolist() == [True, False, True, False, False]
    np.testing.assert_array_equal(vectors, toy_vectors(query[found]))
    assert vectors.dtype == np.float32


def test_keys_ending_in_zero_bytes_survive_the_round_trip(store):
    # numpy drops trailing NUL bytes when an S32 item becomes Python bytes.
    keys = np.array([b"\x07" * 31 + b"\x00", b"\x07" * 30 + b"\x00\x00", b"\x07" * 32], dtype="S32")
    store.add(keys, toy_vectors(keys) + np.arange(3, dtype=np.float32)[:, None])
    found, vectors = store.lookup(keys[::-1])
    assert found.all()
    np.testing.assert_array_equal(vectors[:, 0] - 7, [2, 1, 0])


def test_an_empty_store_finds_nothing(store):
    found, vectors = store.lookup(text_keys(["a", "b"]))
    assert not found.any()
    assert vectors.shape == (0, 4)


def test_each_add_is_one_new_part_file_and_duplicates_resolve_to_one_vector(store):
    keys = text_keys(["a", "b"])
    store.add(keys, toy_vectors(keys))
    store.add(keys[:1], toy_vectors(keys[:1]))
    assert len(list(store.folder.glob("part-*.parquet"))) == 2
    found, vectors = store.lookup(keys)
    assert found.all() and vectors.shape == (2, 4)


def test_a_torn_part_is_reported_and_skipped_while_whole_parts_are_used(store):
    good, torn = text_keys(["good"]), text_keys(["torn"])
    store.add(good, toy_vectors(good))
    path = store.add(torn, toy_vectors(torn))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(CacheWarning, match=r"skipping unreadable or foreign part part-.*\.parquet"):
        found, vectors = store.lookup(np.concatenate([good, torn]))
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(vectors, toy_vectors(good))


def test_a_part_of_another_identity_or_a_stray_file_is_reported_and_never_trusted(store, tmp_path):
    keys = text_keys(["shared text"])
    other = EmbeddingCache.open(tmp_path / "cache", {**IDENTITY, "model": "other-model"})
    shutil.copy(other.add(keys, toy_vectors(keys) + 100), store.folder / "part-copied.parquet")
    (store.folder / "notes.txt").write_text("not a part")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found, _ = store.lookup(keys)
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert not found.any()
    assert any("part-copied.parquet" in m and "foreign" in m for m in messages)
    assert any("foreign file notes.txt" in m for m in messages)


def test_leftover_temporary_files_of_a_killed_run_are_ignored_silently(store):
    (store.folder / ".tmp-part-dead.parquet.1234abcd").write_bytes(b"PAR1 half written")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found, _ = store.lookup(text_keys(["x"]))
    assert not found.any()


def test_an_identity_file_that_does_not_match_its_folder_disables_the_cache(tmp_path):
    store = EmbeddingCache.open(tmp_path, IDENTITY)
    (store.folder / "identity.json").write_text(json.dumps({**IDENTITY, "model": "tampered"}))
    with pytest.warns(CacheWarning, match="describes other vectors"):
        assert EmbeddingCache.open(tmp_path, IDENTITY) is None


def test_an_unwritable_cache_folder_warns_and_runs_without_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(CacheWarning, match="embedding without the cache"):
        assert EmbeddingCache.open(blocker, IDENTITY) is None


def test_identities_that_differ_in_any_field_get_separate_folders(tmp_path):
    folders = {
        EmbeddingCache.open(tmp_path, {**IDENTITY, **change}).folder
        for change in ({}, {"dimensions": 8}, {"task_type": "CLUSTERING"}, {"model": "m2"})
    }
    assert len(folders) == 4


def test_maintenance_command_prints_size_per_model_and_prunes(tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    for model, count in (("model-a", 3), ("model-b", 5)):
        store = EmbeddingCache.open(cache_dir, {**IDENTITY, "model": model})
        keys = text_keys([f"{model} {i}" for i in range(count)])
        store.add(keys, toy_vectors(keys))
    torn = store.add(keys[:1], toy_vectors(keys[:1]))
    torn.write_bytes(b"PAR1 torn")
    assert cache_main(["--cache-dir", str(cache_dir)]) == 0
    table = capsys.readouterr().out
    assert "model-a" in table and "model-b" in table
    assert "2 identities, 8 entries" in table
    rows = {row["model"]: row for row in summarise(cache_dir)}
    assert (rows["model-a"]["entries"], rows["model-b"]["entries"], rows["model-b"]["unreadable"]) == (
        3,
        5,
        1,
    )

    assert cache_main(["--cache-dir", str(cache_dir), "--prune-unreadable"]) == 0
    assert not torn.exists()
    assert cache_main(["--cache-dir", str(cache_dir), "--prune", "model-a"]) == 0
    assert [row["model"] for row in summarise(cache_dir)] == ["model-b"]
    assert prune(cache_dir, model="*") and summarise(cache_dir) == []


def test_maintenance_command_refuses_a_missing_folder(tmp_path, capsys):
    assert cache_main(["--cache-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


# The writers embed with Gemini against the fake server, not the local model: what is tested is the cache
# under two writers, and a process that loads the model spends 8 s of CPU before its first batch.
CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    from tasks.config import EmbeddingSettings
    from tasks.embed import embed_batch, new_job
    from tasks.embed.cache import CacheWarning, EmbeddingCache, text_keys

    warnings.simplefilter("error", CacheWarning)
    cache_dir, offset = sys.argv[1], int(sys.argv[2])
    job = new_job(EmbeddingSettings(embedder="gemini", requests_per_minute=100000), seed=0)
    store = EmbeddingCache.open(cache_dir, job.embedder()[0].describe())
    texts = [f"post number {i} about orbits and ciphers" for i in range(offset, offset + 120)]
    for start in range(0, len(texts), 6):
        embed_batch(texts[start : start + 6], job, cache=store)
        store.lookup(text_keys(texts))  # read while the other process writes
    """
)


@pytest.mark.slow
def test_two_processes_sharing_a_cache_leave_it_consistent(tmp_path, monkeypatch):
    from tasks.config import EmbeddingSettings
    from tasks.embed import new_job
    from tests.gemini_server import FakeGemini

    cache_dir, settings = tmp_path / "cache", EmbeddingSettings(embedder="gemini", requests_per_minute=100000)
    with FakeGemini(api_key="cache-test-key") as gemini:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.url)
        monkeypatch.setenv("GEMINI_API_KEY", "cache-test-key")
        # Overlapping ranges: both processes store texts 60..119.
        writers = [
            subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(cache_dir), str(offset)])
            for offset in (0, 60)
        ]
        assert [writer.wait(timeout=300) for writer in writers] == [0, 0]
        assert gemini.requests == 40

        embedder, _ = new_job(settings, seed=0).embedder()
        store = EmbeddingCache.open(cache_dir, embedder.describe())
        texts = [f"post number {i} about orbits and ciphers" for i in range(180)]
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            found, vectors = store.lookup(text_keys(texts))
        assert found.all()
        assert not list(store.folder.glob(".tmp-*"))
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in store.folder.glob("part-*.parquet")) == 240
        np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-5)


def tampered(path, change) -> None:
    """Rewrite a part with ``change`` applied to its vectors, keeping its metadata: it still parses."""
    table = pq.read_table(path)
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    changed = change(vectors.astype(np.float32))
    column = pa.FixedSizeListArray.from_arrays(pa.array(changed.ravel()), changed.shape[1])
    pq.write_table(pa.Table.from_arrays([table.column("text_sha256"), column], schema=table.schema), path)


def test_a_part_whose_vectors_were_changed_is_reported_by_name_and_its_texts_are_missed(store):
    good, changed = text_keys(["good"]), text_keys(["changed", "also changed"])
    store.add(good, toy_vectors(good))
    path = store.add(changed, toy_vectors(changed))
    tampered(path, lambda v: v + np.float32(1e-3))
    with pytest.warns(CacheWarning, match=rf"skipping unreadable part {path.name} .*checksum") as caught:
        found, vectors = store.lookup(np.concatenate([good, changed]))
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert found.tolist() == [True, False, False]
    np.testing.assert_array_equal(vectors, toy_vectors(good))
    assert prune(store.folder.parent, unreadable=True) == [path]


def test_an_untouched_part_passes_its_checksum_silently(store):
    keys = text_keys([f"text {i}" for i in range(50)])
    store.add(keys, toy_vectors(keys))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found, vectors = store.lookup(keys)
    assert found.all()
    np.testing.assert_array_equal(vectors, toy_vectors(keys))


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 20),
    row=st.integers(0, 19),
    column=st.integers(0, 3),
    delta=st.floats(1e-6, 1e6, allow_nan=False) | st.floats(-1e6, -1e-6, allow_nan=False),
)
def test_any_changed_value_fails_the_checksum(rows, row, column, delta):
    keys = text_keys([f"t{i}" for i in range(rows)])
    vectors = toy_vectors(keys)
    changed = vectors.copy()
    changed[row % rows, column] += np.float32(delta)
    assume(not np.array_equal(changed, vectors))
    assert checksum(keys, changed) != checksum(keys, vectors)
    assert checksum(keys, vectors) == checksum(keys.copy(), vectors.copy())


def test_a_read_only_cache_folder_is_read_and_warns_once_that_nothing_is_stored(small_mount):
    disk = small_mount()
    keys = text_keys(["stored before", "new"])
    EmbeddingCache.open(disk, IDENTITY).add(keys[:1], toy_vectors(keys[:1]))
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = EmbeddingCache.open(disk, IDENTITY)
        found, vectors = store.lookup(keys)
        assert store.add(keys[1:], toy_vectors(keys[1:])) is None
        assert store.add(keys[1:], toy_vectors(keys[1:])) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1, messages
    assert "cannot write to" in messages[0] and "(Read-only file system)" in messages[0]
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(vectors, toy_vectors(keys[:1]))


def test_a_full_cache_folder_warns_once_and_stores_nothing_more(small_mount):
    disk = small_mount()
    store = EmbeddingCache.open(disk, IDENTITY)
    (disk / "filler").write_bytes(b"\0" * (2**20 - 64 * 1024))  # leaves room for a name, not for a part
    keys = text_keys([f"text {i}" for i in range(5000)])
    vectors = np.random.default_rng(0).random((5000, 4), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.add(keys, vectors) is None
        assert store.add(keys, vectors) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1, messages
    assert "No space left on device" in messages[0] and "not stored for the rest of this run" in messages[0]
    assert not list(store.folder.glob("part-*")) and not list(store.folder.glob(".tmp-*"))
