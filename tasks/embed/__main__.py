"""Embedding cache maintenance: ``python -m tasks.embed --cache-dir DIR [--prune MODEL | ...]``.

Prints one line per embedder identity (model, parts, entries, size) and
deletes what is asked for. Safe while runs use the cache: a run whose folder
is pruned under it warns and embeds again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.embed.cache import prune, summarise
from tasks.text import console_table

CACHE_COLUMNS = [
    ("folder", "folder", "<17"),
    ("embedder", "embedder", "<10"),
    ("model", "model", "<42"),
    ("dims", "dimensions", ">5"),
    ("parts", "parts", ">6"),
    ("entries", "entries", ">8"),
    ("bad", "unreadable", ">4"),
    ("MiB", "mib", ">8.2f"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """``rows`` of :func:`summarise` as a plain-text table with a total line."""
    lines = console_table(rows, CACHE_COLUMNS)
    total = sum(row["mib"] for row in rows)
    lines.append(f"{len(rows)} identities, {sum(r['entries'] for r in rows)} entries, {total:.2f} MiB")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the cache's size per model, and prune it on request."""
    parser = argparse.ArgumentParser(prog="python -m tasks.embed", description=main.__doc__)
    parser.add_argument("--cache-dir", type=Path, required=True, help="The embedding cache folder.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--prune", metavar="MODEL", help="Delete the vectors of this model (or embedder, or folder)."
    )
    action.add_argument("--prune-all", action="store_true", help="Delete every stored vector.")
    action.add_argument(
        "--prune-unreadable",
        action="store_true",
        help="Delete unreadable or foreign files and stale temporaries.",
    )
    args = parser.parse_args(argv)
    if not args.cache_dir.is_dir():
        print(f"error: the cache folder {args.cache_dir} does not exist; check --cache-dir.", file=sys.stderr)
        return 2
    if args.prune or args.prune_all or args.prune_unreadable:
        model = "*" if args.prune_all else args.prune
        deleted = prune(args.cache_dir, model=model, unreadable=args.prune_unreadable)
        for path in deleted:
            print(f"deleted {path}")
        print(f"{len(deleted)} deleted")
    print(format_table(summarise(args.cache_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
