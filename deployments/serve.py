"""Serve the deployments of ``prefect.yaml`` without a work pool: ``python -m deployments.serve``.

``prefect.yaml`` is the single source of the deployments' parameters, schedules
and tags; this module reads it and hands the same values to ``prefect.serve``,
so a user without a work pool or worker gets the same nightly run. The process
keeps running and starts each scheduled or triggered run itself.

``python -m deployments.serve --check`` only validates every deployment's
parameters against the flow's settings models, which is what ``prefect deploy``
would otherwise reject with a long server response.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from pydantic import TypeAdapter, ValidationError

from flows.newsgroups import newsgroups
from flows.update import update
from tasks.environment import configure_environment
from tasks.errors import InputError, PipelineError

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
FLOWS = {"flows/newsgroups.py:newsgroups": newsgroups, "flows/update.py:update": update}


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of ``prefect.yaml``, reduced to what serving it needs.

    Attributes
    ----------
    name : str
        Deployment name, e.g. ``"nightly-tutorial"``.
    entrypoint : str
        The flow it runs, one of :data:`FLOWS`.
    parameters : dict
        Flow parameters, grouped per stage as the flow takes them.
    schedules : list of dict
        ``prefect.yaml`` schedules: ``cron``, optional ``timezone`` and ``active``.
    tags : list of str
        Tags of the deployment, given to each of its flow runs.
    description : str
        Shown in the UI's deployment list.
    """

    name: str
    entrypoint: str = "flows/newsgroups.py:newsgroups"
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str = ""


def load_specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Read the deployments of a ``prefect.yaml`` (YAML anchors and merges resolved).

    Raises
    ------
    InputError
        If a deployment runs another flow than those of :data:`FLOWS`, or has a
        schedule that is not a cron schedule.
    """
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    specs = []
    for entry in document.get("deployments") or []:
        name = entry["name"]
        if entry.get("entrypoint") not in FLOWS:
            raise InputError(
                f"The entrypoint of deployment '{name}' in {path} must be one of {sorted(FLOWS)}. "
                f"Got {entry.get('entrypoint')!r} instead."
            )
        schedules = list(entry.get("schedules") or [])
        if any("cron" not in schedule for schedule in schedules):
            raise InputError(
                f"Each schedule of deployment '{name}' in {path} must be a cron schedule "
                "(a 'cron' key); interval and rrule schedules are not served."
            )
        specs.append(
            DeploymentSpec(
                name=name,
                entrypoint=entry["entrypoint"],
                parameters=dict(entry.get("parameters") or {}),
                schedules=schedules,
                tags=list(entry.get("tags") or []),
                description=entry.get("description") or "",
            )
        )
    return specs


def check_parameters(spec: DeploymentSpec) -> None:
    """Validate a deployment's parameters with the flow's settings models.

    Raises
    ------
    InputError
        Naming the deployment and every invalid field, e.g.
        ``sampling.per_class: Input should be greater than or equal to 0``.
    """
    hints = get_type_hints(FLOWS[spec.entrypoint].fn, include_extras=True)
    hints.pop("return", None)
    problems = []
    for name, value in spec.parameters.items():
        if name not in hints:
            problems.append(f"{name}: not a parameter of the flow (allowed: {', '.join(hints)})")
            continue
        try:
            TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as error:
            problems += [
                ".".join(map(str, (name, *e["loc"]))) + f": {e['msg']} (got {e['input']!r})"
                for e in error.errors()
            ]
    if problems:
        raise InputError(
            f"Deployment '{spec.name}' in prefect.yaml has invalid parameters: {'; '.join(problems)}. "
            f"Fix them in prefect.yaml (`python -m {spec.entrypoint.split('.py:')[0].replace('/', '.')} --help` "
            "lists the allowed values)."
        )


def to_runner_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """The deployment as ``flow.serve`` takes it, with the schedules and parameters of ``spec``."""
    check_parameters(spec)
    return FLOWS[spec.entrypoint].to_deployment(
        name=spec.name,
        schedules=[
            Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True)) for s in spec.schedules
        ],
        parameters=spec.parameters,
        tags=spec.tags,
        description=spec.description,
    )


def select(specs: Sequence[DeploymentSpec], names: Sequence[str] | None) -> list[DeploymentSpec]:
    """The specs named in ``names`` (all of them when ``names`` is empty or None).

    Raises
    ------
    InputError
        If a name is not a deployment of ``prefect.yaml``.
    """
    known = {spec.name: spec for spec in specs}
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        raise InputError(f"The deployment names must be among {sorted(known)}. Got {unknown} instead.")
    return [known[name] for name in names] if names else list(specs)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve (or with ``--check``, only validate) the deployments of ``prefect.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", "--name", action="append", help="Deployment to serve (repeatable; default: all)."
    )
    parser.add_argument("--file", type=Path, default=PREFECT_YAML, help="The prefect.yaml to read.")
    parser.add_argument(
        "--check", action="store_true", help="Only validate the deployments' parameters, then exit."
    )
    args = parser.parse_args(argv)
    # The runs this process starts are child processes, which read these settings when they start.
    configure_environment()
    try:
        specs = select(load_specs(args.file), args.name)
        deployments = [to_runner_deployment(spec) for spec in specs]
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        print("ok: " + ", ".join(spec.name for spec in specs))
        return 0
    serve(*deployments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
