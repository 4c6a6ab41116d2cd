"""The command line, generated from each flow's settings model.

A flow the command line serves is declared once, in :data:`COMMANDS`: its
entrypoint, the model in ``tasks/config.py`` whose fields are the flow's
parameters, and a summary. A field that is a settings model becomes a group of
flags, one per its own field (``per_class`` -> ``--per-class``), with the
field's description and default as help; any other field becomes one flag.
The same models validate the values, for the CLI, the Prefect UI and deployments.

Everything that can be checked without reading data (flags, files, the output
folder) is checked before the flow's module is imported, so a refusal comes in
well under a second, before Prefect and the stages are imported (seconds) and
before Prefect starts its temporary server. The flow runs in a thread while the
main thread waits for signals: Ctrl-C or SIGTERM ends the run at once (the
batches already embedded stay in the cache), and a watchdog process ends the
temporary server even when the command itself is killed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from flows.watchdog import run_in_thread, start_watchdog, stop_on_signals
from tasks.config import (
    SAMPLING_DEFAULTS,
    CompareSettings,
    ExecutionSettings,
    OutputSettings,
    RunSettings,
    SourceSettings,
    UpdateFlowSettings,
)
from tasks.environment import configure_environment
from tasks.errors import InputError, PipelineError, hide_refusals
from tasks.text import console_text


@dataclass(frozen=True)
class Command:
    """A flow served by the command line.

    ``entrypoint`` is ``"module:function"``; the fields of ``parameters`` are the
    flow's parameters, in order, with their types and defaults (a test holds each
    flow's signature to them); ``summary`` heads ``--help``.
    """

    entrypoint: str
    parameters: type[BaseModel]
    summary: str

    def load(self) -> Any:
        """Import the flow's module (Prefect and every stage with it) and return the flow."""
        module, function = self.entrypoint.split(":")
        return getattr(importlib.import_module(module), function)


#: The flows the command line serves; a flow's module calls ``main("<its entrypoint>")`` under ``__main__``.
COMMANDS = {
    command.entrypoint: command
    for command in (
        Command(
            "flows.newsgroups:newsgroups",
            RunSettings,
            "Embed a corpus, map it to 2-D, cluster it and score the clusters against the classes.",
        ),
        Command(
            "flows.compare:compare",
            CompareSettings,
            "Run one sample through several embedders and clusterers, and compare them side by side.",
        ),
        Command(
            "flows.update:update",
            UpdateFlowSettings,
            "Add the posts that arrived since a run to its map and clusters, and report what changed.",
        ),
    )
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    return "none" if value is None else " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _shown_default(name: str, default: Any) -> str:
    """How ``--help`` shows a default; sampling defaults depend on the source, so both are shown."""
    if default is None and name in SAMPLING_DEFAULTS["newsgroups"]:
        tutorial, corpus = SAMPLING_DEFAULTS["newsgroups"][name], SAMPLING_DEFAULTS["corpus"][name]
        return f"{_shown(tutorial)} for 20 Newsgroups, {_shown(corpus) or 'none'} with --corpus"
    return _shown(default)


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def field_type(info: FieldInfo) -> Any:
    """The field's type with its constraints, as a flow parameter would declare it."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def parameters(model: type[BaseModel]) -> dict[str, tuple[Any, Any]]:
    """The command line's flow parameters: each field of ``model`` as ``(type, default)``, in order."""
    return {
        name: (field_type(info), info.get_default(call_default_factory=True))
        for name, info in model.model_fields.items()
    }


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _add_option(group: Any, name: str, info: FieldInfo) -> None:
    annotation = _unwrap_optional(info.annotation)
    shown = _shown_default(name, info.get_default(call_default_factory=True))
    kwargs: dict[str, Any] = {
        "dest": name,
        "default": argparse.SUPPRESS,
        "help": f"{info.description or ''} [default: {shown}]",
    }
    if annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif get_origin(annotation) is list:
        kwargs.update(nargs="*", metavar="VALUE")
    elif get_origin(annotation) is Literal:
        choices = list(get_args(annotation))
        kwargs.update(choices=choices, metavar="{" + ",".join(map(str, choices)) + "}")
    else:
        kwargs["metavar"] = name.upper()
    group.add_argument(_flag(name), **kwargs)


def build_parser(command: Command, prog: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of each settings group and per other parameter."""
    # allow_abbrev=False: a mistyped flag is refused instead of read as the flag it abbreviates.
    parser = argparse.ArgumentParser(prog=prog, description=command.summary, allow_abbrev=False)
    for name, info in command.parameters.model_fields.items():
        if _is_group(info.annotation):
            model = info.annotation
            group = parser.add_argument_group(name, (model.__doc__ or "").strip().split("\n")[0])
            for field_name, field_info in model.model_fields.items():
                _add_option(group, field_name, field_info)
        else:
            _add_option(parser, name, info)
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks and debug logs.")
    return parser


def _sentence(error: ValidationError, parameter: str) -> str:
    refusals = [item for item in error.errors() if isinstance(item.get("ctx", {}).get("error"), InputError)]
    if refusals:
        # A settings model refused a combination of values in its own sentence: say just that.
        return str(refusals[0]["ctx"]["error"])
    problems = []
    for item in error.errors():
        # A settings field has its name in loc; a plain flow argument (validated alone) has none,
        # or only the position of the list item that was refused.
        name = item["loc"][0] if item["loc"] and isinstance(item["loc"][0], str) else parameter
        problems.append(f"{_flag(name)}: {item['msg']} (got {item.get('input')!r})")
    return "Invalid parameter " + "; ".join(problems) + ". See --help."


def flow_kwargs(command: Command, args: argparse.Namespace) -> dict[str, Any]:
    """The flow's keyword arguments from parsed flags (each group, and each other flag given).

    Raises :class:`InputError` naming the flag when a value is invalid.
    """
    given = {k: v for k, v in vars(args).items() if k != "debug"}
    kwargs: dict[str, Any] = {}
    try:
        for name, info in command.parameters.model_fields.items():
            if _is_group(info.annotation):
                model = info.annotation
                kwargs[name] = model(**{f: given[f] for f in model.model_fields if f in given})
            elif name in given:
                kwargs[name] = TypeAdapter(field_type(info)).validate_python(given[name])
        # Once more as a whole, with the preset filled in: a preset's model can refuse a flag given with it
        # (`--preset best --runtime onnx`), and the run would otherwise find out only once it started.
        command.parameters.model_validate(kwargs)
    except ValidationError as error:
        raise InputError(_sentence(error, name)) from None
    return kwargs


def check_output(settings: OutputSettings) -> None:
    """Refuse an output folder that is, or lies under, a file; raise :class:`InputError`."""
    folder = Path(settings.output_dir).expanduser()
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under the file {existing}"
        raise InputError(
            f"The output folder {folder} {where}; pass an --output-dir that is a folder or does not exist yet."
        )


def check_files(kwargs: dict[str, Any]) -> None:
    """Refuse the corpus, archive and output paths, and a Dask cluster, that cannot be used, reading no data."""
    from tasks.execution import check_execution
    from tasks.ingest import check_source

    for value in kwargs.values():
        if isinstance(value, SourceSettings):
            check_source(value)
        elif isinstance(value, OutputSettings):
            check_output(value)
        elif isinstance(value, ExecutionSettings):
            check_execution(value)


def _plans_only(kwargs: dict[str, Any]) -> bool:
    """Whether the run asked only for its plan (``--plan``)."""
    embedding = kwargs.get("embedding")
    return bool(embedding is not None and embedding.plan)


def main(entrypoint: str, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, check it, run the flow at ``entrypoint``, print where its results are.

    Returns the exit status. The flow's module is imported only once the flags
    and files are accepted. It owns the process it runs in: once the checks pass
    it takes over SIGINT and SIGTERM and starts a watchdog that ends this
    process's children when it dies.
    """
    # The command's own entry (flows/entry.py) applied it before pyarrow was loaded; a caller of main() gets it here.
    configure_environment()
    command = COMMANDS[entrypoint]
    parser = build_parser(command, prog="python -m " + entrypoint.split(":")[0])
    args = parser.parse_args(argv)
    try:
        kwargs = flow_kwargs(command, args)
        check_files(kwargs)
        # Importing the flow brings Prefect, which sets up its log handlers.
        flow_fn = command.load()
        from tasks.run import interrupted, summary

        if not args.debug:
            hide_refusals()
        stop_on_signals(lambda: interrupted(kwargs["embedding"], kwargs["output"].output_dir))
        if _plans_only(kwargs):
            # The flow's own body as a plain function: its first steps, up to the plan, without a
            # Prefect server (its tasks run as their functions outside a flow run: tasks.run.call).
            manifest = flow_fn.fn(**kwargs)
        else:
            start_watchdog()
            manifest = run_in_thread(flow_fn, kwargs)
    except PipelineError as error:
        if args.debug:
            raise
        print(f"error: {console_text(error)}", file=sys.stderr)
        return 2
    if manifest.get("nothing_new"):
        # An update with no new post: its flow printed the line and wrote no folder.
        return 0
    print(summary(manifest))
    return 0
