"""Exceptions the pipeline raises on purpose.

Each one subclasses the builtin it refines, so callers that already catch
``ValueError`` or ``OSError`` keep working.
"""

from __future__ import annotations

import logging


class PipelineError(Exception):
    """Base class: a failure with a message written for the user, not a bug."""


class InputError(PipelineError, ValueError):
    """The user's input (a parameter, a file, a corpus) cannot be used as given.

    The message is one sentence that says what is wrong and how to fix it.
    """


class MissingDependencyError(PipelineError, ImportError):
    """An optional dependency is not installed; the message holds the install command."""


class EmbeddingServiceError(PipelineError, RuntimeError):
    """A remote embedding service refused the work for a reason retrying cannot fix."""


class OutputError(PipelineError, OSError):
    """The output folder cannot be written (read-only, full disk, ...)."""


class NewsgroupsWarning(UserWarning):
    """A degraded but working path was taken (for example, texts were truncated)."""


def is_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry any failure except those carrying a message for the user.

    A :class:`PipelineError` (bad input, a refused key, an unwritable folder) fails the same
    way on every attempt, so retrying it only delays the message.
    """
    return not isinstance(state.result(raise_on_failure=False), PipelineError)


class HideRefusals(logging.Filter):
    """Drop Prefect's log lines that repeat a :class:`PipelineError`, which the command line prints as one sentence."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record of a refusal (its exception, or Prefect's state message naming it)."""
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            return False
        message = record.getMessage()
        # Prefect repeats the exception in its state messages: "... exception InputError: ...", "InputError(...)".
        return not any(f"{name}:" in message or f"{name}(" in message for name in _refusal_names())


def _refusal_names() -> list[str]:
    names, todo = [], [PipelineError]
    while todo:
        kind = todo.pop()
        names.append(kind.__name__)
        todo.extend(kind.__subclasses__())
    return names


def hide_refusals() -> None:
    """Add :class:`HideRefusals` to the handlers of the root and Prefect's loggers (the command line's process)."""
    names = ["", "prefect", *[n for n in logging.root.manager.loggerDict if n.startswith("prefect")]]
    for name in names:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(HideRefusals())
