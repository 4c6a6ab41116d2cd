"""The flows' ``python -m`` entry: the process's environment first, then the command line.

The environment (``tasks/environment.py``) must be in place before pyarrow is
loaded, and the command line's settings modules load it (through pandas):
pyarrow picks its C++ memory pool from ``ARROW_DEFAULT_MEMORY_POOL`` once, at
load. Loaded first, it kept mimalloc, and a run of 8,000 posts grew from 1.0 to
2.2 GB while embedding instead of staying near 1.1 GB (docs/scaling.md).
"""

from __future__ import annotations

import sys
from typing import NoReturn


def run_command_line(entrypoint: str) -> NoReturn:
    """Apply the environment, then run ``entrypoint``'s command line and exit with its status."""
    from tasks.environment import configure_environment

    configure_environment()
    from flows.cli import main

    sys.exit(main(entrypoint))
