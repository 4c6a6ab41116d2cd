"""The logger of the Prefect run in progress, or a plain one where a stage runs without Prefect."""

from __future__ import annotations

import logging


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's logger of the flow or task run in progress (its lines reach the UI); ``fallback`` outside one.

    Prefect is imported here, not with the module: the backends' modules use
    this, and the command line reads their names before Prefect loads.
    """
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return fallback
