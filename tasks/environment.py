"""The process settings every entry point applies: Prefect's, and pyarrow's allocator.

:func:`configure_environment` is called by each place a run starts: the
command line (``flows/entry.py``, before it imports anything else), the test
suite, and ``deployments/serve.py`` (whose runs are processes it starts), before
Prefect or pyarrow is imported: both read these variables then, pyarrow once,
when it is loaded. A worker's flow-run process gets the same variables from the work pool's job
variables in ``prefect.yaml`` (a test holds them equal to :data:`ENVIRONMENT`).
Nothing is written at import; a value already set in the environment wins.

Prefect gives the ``tasks`` loggers its API handler but leaves their level at
the root's WARNING, so :func:`log_stages` lets their INFO lines through; every
run calls it when it opens (``tasks/run.py``), in whichever process it runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

ENVIRONMENT = {
    # Stage modules log through ``logging.getLogger("tasks....")``: forward those records to the run's
    # logs and the UI, not only to the console.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks",
    # Outside a flow run (``--plan``, stages called as functions) those records go to the console only.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # Without it, every ad-hoc run logs a (harmless) telemetry error on offline machines.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # pyarrow's own allocator (mimalloc here) keeps the pages of every batch the embedding cache writes: a
    # run over 2,000 posts grew to a 1.46 GB peak with it, and stayed flat (1.33 GB peak) with the C
    # library's, whose freed pages the local model's thread hands back (tasks/embed/_local.py).
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    # Ad-hoc runs start a temporary server; Prefect's 20 s start-up limit is too short on a busy laptop.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def configure_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set each variable of :data:`ENVIRONMENT` that ``environ`` does not set already."""
    for name, value in ENVIRONMENT.items():
        environ.setdefault(name, value)
    log_stages()


def log_stages() -> None:
    """Let the stages' INFO lines (``tasks.*`` loggers) reach the run's logs and the console."""
    logging.getLogger("tasks").setLevel(logging.INFO)
