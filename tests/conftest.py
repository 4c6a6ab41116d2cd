"""Shared fixtures: an isolated Prefect, the real 20 Newsgroups archive, tiny corpora."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Registered first, so it runs after the exit handlers registered from here on: what is still alive then is
# frozen, and the interpreter's last garbage collection skips it. Over torch's, Prefect's and pandas' objects
# that pass took 3-4 s in each xdist worker after its last test, while the run waited for the workers to exit.
atexit.register(gc.freeze)
# Before Prefect is imported: every test session gets its own Prefect home and database, removed at exit.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tasks.environment import configure_environment  # noqa: E402

configure_environment()  # as every entry point does, before Prefect is imported

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tasks.mapdata import MapData


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: pytest swaps it for each test's capture."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def __getattr__(self, name: str):
        return getattr(sys.stderr, name)


def _configure_prefect_logging() -> None:
    """Set up Prefect's logging once, now, instead of inside whichever test first imports ``prefect``.

    Prefect configures logging when its API first loads (``prefect.main``): it replaces the root
    logger's handlers (a test's ``caplog`` handler with them) and binds its
    console handler to the ``sys.stderr`` of that moment, a test's capture that
    is closed when the test ends. Done here, before any test, and with the
    console following the current ``sys.stderr``, each test file passes alone.
    """
    import prefect.main  # noqa: F401  (Prefect sets up its logging when this module loads)

    stderr = _CurrentStderr()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    for handler in {h for logger in loggers for h in getattr(logger, "handlers", ())}:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
            handler.setStream(stderr)
            if (console := getattr(handler, "console", None)) is not None:  # Prefect's rich console handler
                console.file = stderr


def pytest_configure(config: pytest.Config) -> None:
    """Prepare a process that runs tests: plots without a display, Prefect's logging set up once.

    The xdist controller only hands tests to its workers: it imports neither
    (about 1.5 s, before it starts the workers).
    """
    distributes = config.getoption("dist", "no") != "no" and not config.getoption("collectonly")
    if distributes and not hasattr(config, "workerinput"):
        return
    import matplotlib

    matplotlib.use("Agg")
    _configure_prefect_logging()


pytest_plugins = ["tests.ordering", "tests.session_server"]


ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"


@pytest.fixture(scope="session", autouse=True)
def prefect_api(prefect_server, new_prefect_home) -> Iterator[str]:
    """Points this process's Prefect at ``prefect_server``: the in-process flows' API for the whole session.

    Prefect's ``prefect_test_harness`` would start a second server per test
    worker on a database it migrates first (about 6 s of CPU); the session's
    server (tests/session_server.py) serves the command lines and the
    in-process flows of every worker. This worker's own Prefect home gets a
    migrated database too: commands run without ``PREFECT_API_URL`` start their
    temporary servers on it.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import temporary_settings

    new_prefect_home(Path(os.environ["PREFECT_HOME"]))
    # Without flow-run heartbeats: Prefect joins its heartbeat thread at the end of every flow run, and
    # that thread sleeps in whole seconds, so a flow that ends in 0.2 s (a refused input) took 1.2 s,
    # and every other one up to a second more. No test is about heartbeats (crash detection by the server).
    with temporary_settings(updates={"api.url": prefect_server, "flows.heartbeat_frequency": None}):
        yield prefect_server
        # What the flows logged and emitted last reaches the server before it stops.
        APILogWorker.drain_all()
        EventsWorker.drain_all()


def _shared_folder(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The session's temporary folder common to all xdist workers (each has its own folder under it)."""
    own = tmp_path_factory.getbasetemp()
    return own if worker_id == "master" else own.parent


@pytest.fixture(scope="session")
def new_prefect_home(started_prefect_home) -> Callable[[Path], Path]:
    """Makes ``folder`` a Prefect home holding a copy of ``started_prefect_home``'s database."""

    def make(folder: Path) -> Path:
        shutil.copytree(started_prefect_home, folder, dirs_exist_ok=True)
        return folder

    return make


@pytest.fixture
def downloads(tmp_path) -> Path:
    """The empty folder where the ``chrome`` fixture's browser saves what a page downloads."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def chrome(tmp_path, downloads):
    """Headless Chromium (a ``selenium.webdriver.Chrome``), offline, with software WebGL and the network log.

    It saves downloads in the ``downloads`` fixture's folder. Skips where Debian's chromium and chromedriver
    are missing. See tests/browser.py for the waits (``wait_for``, ``wait_for_text``), ``requests_of`` and
    ``open_chrome`` (online pages).
    """
    from tests.browser import open_chrome, require_chromium

    require_chromium()
    with open_chrome(tmp_path / "chrome-profile", log_network=True, downloads=downloads) as driver:
        yield driver


@pytest.fixture(scope="session")
def archive() -> Path:
    """The real 20 Newsgroups bydate archive ($NEWSGROUPS_ARCHIVE or ../shared/data)."""
    path = Path(os.environ.get("NEWSGROUPS_ARCHIVE", DEFAULT_ARCHIVE))
    if not path.exists():
        pytest.skip(f"the 20 Newsgroups archive is not at {path}; set NEWSGROUPS_ARCHIVE")
    return path


@pytest.fixture(scope="session")
def data_home(tmp_path_factory, worker_id, archive) -> Path:
    """A scikit-learn data home shared by all test workers, the archive unpacked into it once (4 s of CPU)."""
    from tasks.ingest import load_newsgroups

    shared = _shared_folder(tmp_path_factory, worker_id)
    home = shared / "scikit_learn_data"
    with FileLock(str(shared / "scikit_learn_data.lock")):
        if not home.is_dir():
            load_newsgroups(archive=archive, data_home=home, subset="train")
    return home


@pytest.fixture(scope="session")
def compiled_umap(tmp_path_factory, worker_id) -> None:
    """umap-learn's numba code compiled and kept on disk (``keep_compiled_code``) once for all test workers.

    On a new install the first UMAP fit compiles it (about 22 s of CPU here): without the lock, every worker
    whose first fit starts before another's has kept the code would compile it too.
    """
    import numpy as np

    from tasks.reduce import umap_class

    shared = _shared_folder(tmp_path_factory, worker_id)
    with FileLock(str(shared / "compiled-umap.lock")):
        if not (done := shared / "compiled-umap").exists():
            vectors = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
            umap_class()(n_components=2, n_neighbors=5, random_state=0).fit_transform(vectors)
            done.touch()


@pytest.fixture(scope="session")
def train_posts(archive, data_home) -> pd.DataFrame:
    """All posts of the real train split."""
    from tasks.ingest import load_newsgroups

    return load_newsgroups(archive=archive, data_home=data_home, subset="train")


@pytest.fixture(scope="session")
def real_map(train_posts) -> tuple[MapData, np.ndarray]:
    """About 300 real sci posts as map.html draws them, and their vectors; shared by the session: only read it.

    75 posts of each sci group, cleaned; TF-IDF and LSA vectors (40 dimensions, unit length); a PCA map;
    k-means in 4 clusters named by their terms, with the last six posts unassigned (noise); each post's
    neighbours and each cluster's central posts from the vectors.
    """
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    from tasks.clean import clean_corpus
    from tasks.config import CleaningSettings
    from tasks.mapdata import NOISE, prepare_map
    from tasks.names import name_clusters
    from tasks.sample import sample_per_class, select_groups

    sample = sample_per_class(select_groups(train_posts, ["sci"]), 75, seed=0)
    posts, _ = clean_corpus(sample, CleaningSettings())
    texts, classes = posts["text"].tolist(), posts["class_name"].to_numpy()
    tfidf = TfidfVectorizer(stop_words="english", min_df=2, max_df=0.5, sublinear_tf=True).fit_transform(
        texts
    )
    vectors = normalize(TruncatedSVD(40, random_state=0).fit_transform(tfidf))
    xy = PCA(2, random_state=0).fit_transform(vectors)
    clusters = KMeans(4, random_state=0, n_init=10).fit_predict(vectors)
    clusters[-6:] = NOISE
    names = name_clusters(texts, clusters, class_names=classes).set_index("cluster")
    coords = pd.DataFrame({"doc_id": posts["doc_id"], "x": xy[:, 0], "y": xy[:, 1]})
    data = prepare_map(
        coords,
        texts,
        clusters,
        classes,
        reducer_label="PCA",
        cluster_names=names["name"].to_dict(),
        matched_classes=names["matched_class"].dropna().to_dict(),
        vectors=vectors,
    )
    return data, vectors


@pytest.fixture
def tiny_corpus() -> pd.DataFrame:
    """Twelve short labelled texts in three classes, as a user's corpus would hold them."""
    import pandas as pd

    rows = [
        ("space", "The rocket reached orbit after the second stage burn."),
        ("space", "NASA plans a new mission to the moon and Mars."),
        ("space", "The shuttle docked with the space station today."),
        ("space", "Astronauts trained for the spacewalk on the station."),
        ("medicine", "The doctor prescribed antibiotics for the infection."),
        ("medicine", "Patients with diabetes need insulin every day."),
        ("medicine", "The new vaccine trial showed strong immune response."),
        ("medicine", "Surgery went well and the patient is recovering."),
        ("crypto", "The cipher uses a 128 bit key and public key exchange."),
        ("crypto", "Encryption protects the message from eavesdroppers."),
        ("crypto", "The government wants a backdoor in the clipper chip."),
        ("crypto", "RSA signatures rely on the difficulty of factoring."),
    ]
    return pd.DataFrame(
        {
            "id": [f"d{i}" for i in range(len(rows))],
            "text": [t for _, t in rows],
            "label": [c for c, _ in rows],
        }
    )


@pytest.fixture
def small_mount(tmp_path):
    """A real 1 MiB tmpfs (needs mount rights: root with CAP_SYS_ADMIN); skips where that is refused."""

    def mount(*options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    mounted: list[Path] = []
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)
