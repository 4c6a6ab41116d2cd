"""Prefect flows of the project."""

import os

# These must be set before Prefect is imported (it reads its settings then).
# Stage modules log through ``logging.getLogger("tasks....")``: forward those records
# to the run's logs and the UI, not only to the console.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")
# Outside a flow run (``--plan``, stages called as functions) those records go to the console only.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# Without it, every ad-hoc run logs a (harmless) telemetry error on offline machines.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# pyarrow's own allocator (mimalloc here) keeps the pages of every batch the embedding cache writes: a run
# over 2,000 posts grew to a 1.46 GB peak with it, and stayed flat (1.33 GB peak) with the C library's, whose
# freed pages the local model's thread hands back (tasks/embed/_local.py). Read when pyarrow is imported.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
# Ad-hoc runs start a temporary server; Prefect's 20 s start-up limit is too short on a busy laptop.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
