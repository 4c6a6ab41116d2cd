"""Exceptions the pipeline raises on purpose.

Each one subclasses the builtin it refines, so callers that already catch
``ValueError`` or ``OSError`` keep working.
"""

from __future__ import annotations


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
