"""The stages of one run after sampling, shared by every flow that maps a sample.

``flows/newsgroups.py`` runs them once; ``flows/compare.py`` once per variant
of the same sample. Each call fills one run: its files, timings and manifest.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.check import check_task
from tasks.config import RunSettings
from tasks.embed.plan import plan_sample
from tasks.run import Run


def analyse_sample(run: Run, sample: pd.DataFrame, settings: RunSettings, resolved: dict[str, Any]) -> None:
    """Check, plan, embed, map, cluster, evaluate and publish ``sample`` into ``run``.

    ``resolved`` is what :func:`tasks.check.check_settings` returned for ``settings``.

    With ``--plan`` it stops after the plan (the embed stage's first step) and
    the run leaves no folder.
    """
    dropped = run.report.get("counts", {}).get("cleaned")
    backends = run.step("check", check_task, sample, settings, dropped=dropped)
    start = run.step("plan", plan_sample, sample, settings, resolved)
    run.record(plan=start.plan.as_dict())
    if settings.embedding.plan:
        run.discard()
        return
    # Imported here: --plan stops above, without the later stages' libraries (seconds to import).
    from tasks.analysis import analyse_planned

    analyse_planned(run, sample, settings, backends, start)
