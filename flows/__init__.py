"""Prefect flows of the project."""

import os

# Stage modules log through ``logging.getLogger("tasks....")``; this makes Prefect
# forward those records to the run's logs (and the UI), not only to the console.
# It must be set before Prefect configures logging, i.e. before prefect is imported.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
