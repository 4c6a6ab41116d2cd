"""The command line's answer to ``--plan``: a flow's first steps as plain functions.

Each function is named after the flow it plans and returns what that flow
returns with ``--plan`` (the tests check they agree): the same checks, corpus
store, cleaning, sample and plan, without importing the later stages or
starting Prefect's temporary server, so the whole corpus is planned in seconds
(importing a flow and starting that server take 20-25 s on a 2-core machine).
Nothing is written but the corpus store.
"""

from __future__ import annotations

import os
from typing import Any

from tasks.check import check_sample, check_settings
from tasks.config import OutputSettings, RunSettings
from tasks.corpus_store import draw_sample
from tasks.embed.stage import plan_sample
from tasks.layout import default_run_name


def newsgroups(**parameters: Any) -> dict[str, Any]:
    """What :func:`flows.newsgroups.newsgroups` returns with ``--plan``."""
    settings = RunSettings(**parameters)
    check_settings(settings)
    sample, _ = draw_sample(settings)
    check_sample(sample, settings)
    return {"planned_only": True, "plan": plan_sample(sample, settings).as_dict()}


def compare(
    embedders: list[str] | None = None, clusterers: list[str] | None = None, **parameters: Any
) -> dict[str, Any]:
    """What :func:`flows.compare.compare` returns with ``--plan``: each embedder's plan once."""
    from tasks.compare import distinct_plans  # with the comparison's figures: only a comparison pays for them

    parameters.setdefault("output", OutputSettings())
    base, runs = checked_variants(parameters, embedders, clusterers)
    sample, _ = draw_sample(base)
    plans = []
    for settings in runs.values():
        check_sample(sample, settings)
        plans.append(plan_sample(sample, settings).as_dict())
    return {"planned_only": True, "plans": distinct_plans(plans)}


def checked_variants(
    parameters: dict[str, Any], embedders: list[str] | None, clusterers: list[str] | None
) -> tuple[RunSettings, dict[str, RunSettings]]:
    """A comparison's own settings and each variant's, every one checked before any work."""
    from tasks.compare import default_embedders, variants

    output = parameters["output"]
    name = output.run_name or default_run_name("compare")
    base = RunSettings(**parameters | {"output": output.model_copy(update={"run_name": name})})
    runs = variants(
        base, embedders or default_embedders(dict(os.environ)), clusterers or ["kmeans", "hdbscan"]
    )
    for settings in runs.values():
        check_settings(settings)
    return base, runs
