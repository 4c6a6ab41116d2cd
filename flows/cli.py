"""The command line, generated from the flow's typed parameters.

Each pydantic settings model the flow takes becomes a group of flags, one per
field (``per_class`` -> ``--per-class``), with the field's description and
default as help. Values are validated by the same models, so the CLI, the
Prefect UI and deployments share one definition and one set of defaults.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import typing
from collections.abc import Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tasks.errors import InputError, PipelineError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choices(annotation: Any) -> list[Any] | None:
    return list(get_args(annotation)) if get_origin(annotation) is Literal else None


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list


def _add_option(
    group: argparse._ArgumentGroup, name: str, annotation: Any, default: Any, help_text: str
) -> None:
    shown = (
        "none" if default is None else " ".join(map(str, default)) if isinstance(default, list) else default
    )
    kwargs: dict[str, Any] = {
        "dest": name,
        "default": argparse.SUPPRESS,
        "help": f"{help_text} [default: {shown}]",
    }
    if annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif _is_list(annotation):
        kwargs.update(nargs="*", metavar="VALUE")
    elif choices := _choices(annotation):
        kwargs.update(choices=choices, metavar="{" + ",".join(map(str, choices)) + "}")
    else:
        kwargs["metavar"] = name.upper()
    group.add_argument(_flag(name), **kwargs)


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _documented(flow_fn: Any, name: str) -> str:
    """The description of ``name`` in the flow docstring's numpydoc "Parameters" section."""
    lines = (inspect.getdoc(flow_fn.fn) or "").splitlines()
    for index, line in enumerate(lines):
        if line.split(":")[0].strip() == name and ":" in line:
            body = []
            for following in lines[index + 1 :]:
                if not following.startswith("    "):
                    break
                body.append(following.strip())
            return " ".join(body)
    return ""


def _default(info: FieldInfo) -> Any:
    return info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]


def flow_parameters(flow_fn: Any) -> dict[str, tuple[Any, Any]]:
    """The flow's parameters: name -> (resolved annotation, default)."""
    fn = flow_fn.fn
    hints = typing.get_type_hints(fn, include_extras=True)
    return {name: (hints[name], param.default) for name, param in inspect.signature(fn).parameters.items()}


def build_parser(flow_fn: Any, prog: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per settings field and per plain flow argument."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=inspect.getdoc(flow_fn.fn).split("\n\n")[0],
    )
    for name, (annotation, default) in flow_parameters(flow_fn).items():
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            group = parser.add_argument_group(name, (annotation.__doc__ or "").strip().split("\n")[0])
            for field_name, info in annotation.model_fields.items():
                _add_option(
                    group,
                    field_name,
                    _unwrap_optional(info.annotation),
                    _default(info),
                    info.description or "",
                )
        else:
            _add_option(parser, name, annotation, default, _documented(flow_fn, name))
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks and debug logs.")
    return parser


def _sentence(error: ValidationError, parameter: str) -> str:
    problems = []
    for item in error.errors():
        # A settings field has its name in loc; a plain flow argument (validated alone) has none.
        name = str(item["loc"][0]) if item["loc"] else parameter
        problems.append(f"{_flag(name)}: {item['msg']} (got {item.get('input')!r})")
    return "Invalid parameter " + "; ".join(problems) + ". See --help."


def flow_kwargs(flow_fn: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Build the flow's keyword arguments from parsed flags; raise :class:`InputError` if invalid."""
    given = {k: v for k, v in vars(args).items() if k != "debug"}
    kwargs: dict[str, Any] = {}
    try:
        for name, (annotation, _default) in flow_parameters(flow_fn).items():
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                fields = {f: given[f] for f in annotation.model_fields if f in given}
                kwargs[name] = annotation(**fields)
            elif name in given:
                from pydantic import TypeAdapter

                kwargs[name] = TypeAdapter(annotation).validate_python(given[name])
    except ValidationError as error:
        raise InputError(_sentence(error, name)) from None
    return kwargs


class _HideExpectedTracebacks(logging.Filter):
    """Drop the traceback of failures that carry a user-facing message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_tracebacks() -> None:
    names = ["", "prefect", *[n for n in logging.root.manager.loggerDict if n.startswith("prefect")]]
    for name in names:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_HideExpectedTracebacks())


def main(flow_fn: Any, argv: Sequence[str] | None = None, prog: str = "python -m flows.newsgroups") -> int:
    """Parse ``argv``, run the flow, print where its results are; returns the exit status."""
    parser = build_parser(flow_fn, prog)
    args = parser.parse_args(argv)
    if not args.debug:
        _quiet_tracebacks()
    try:
        manifest = flow_fn(**flow_kwargs(flow_fn, args))
    except PipelineError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    if manifest.get("planned_only"):
        from tasks.embed.plan import EmbeddingPlan

        for plan in manifest.get("plans") or [manifest["plan"]]:
            print(EmbeddingPlan(**plan).summary())
        print("Nothing was embedded (--plan); run the same command without --plan to do it.")
        return 0
    metrics = manifest.get("metrics", {})
    print(f"\nrun folder: {manifest['parameters']['output']['output_dir']}/{manifest['run_name']}")
    for row in manifest.get("comparison", []):
        accuracy = "-" if row["hungarian_accuracy"] is None else f"{row['hungarian_accuracy']:.3f}"
        noise = f" ({row['noise_share']:.0%} unassigned)" if row["noise_share"] else ""
        print(
            f"  {row['embedder'] + ' + ' + row['clusterer']:<28} {accuracy}{noise}   {row['seconds']:.1f} s"
        )
    if "hungarian_accuracy" in metrics:
        for name, value in metrics["per_class_accuracy"].items():
            print(f"  {name:<28} {value:.3f}")
        print(
            f"  {'hungarian accuracy':<28} {metrics['hungarian_accuracy']:.3f}   ARI {metrics['ari']:.3f}   NMI {metrics['nmi']:.3f}"
        )
    return 0
