"""prefect.yaml and deployments/serve.py: one source of schedules and parameters, checked before any run."""

from __future__ import annotations

import re

import pytest
import yaml

from deployments.serve import (
    PREFECT_YAML,
    DeploymentSpec,
    check_parameters,
    load_specs,
    main,
    select,
    to_runner_deployment,
)
from tasks.config import RunSettings
from tasks.embed import EMBEDDERS
from tasks.environment import ENVIRONMENT
from tasks.errors import InputError


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


@pytest.fixture(scope="module")
def specs() -> dict[str, DeploymentSpec]:
    return {spec.name: spec for spec in load_specs()}


def test_prefect_yaml_has_a_nightly_utc_local_deployment_and_an_on_demand_gemini_one(document, specs):
    assert set(specs) == {"nightly-tutorial", "gemini-on-demand", "nightly-update"}
    assert specs["nightly-tutorial"].schedules == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert specs["gemini-on-demand"].schedules == []
    assert specs["nightly-tutorial"].parameters["embedding"] == {"embedder": "local"}
    assert specs["gemini-on-demand"].parameters["embedding"] == {"embedder": "gemini"}
    for entry in document["deployments"]:
        if entry["name"] == "nightly-update":
            continue
        assert entry["entrypoint"] == "flows/newsgroups.py:newsgroups"
        assert entry["work_pool"]["name"] == "newsgroups-process"
        assert {"newsgroups", f"embedder-{entry['parameters']['embedding']['embedder']}"} <= set(
            entry["tags"]
        )


def test_nightly_parameters_are_the_tutorials_which_are_the_flow_defaults(specs):
    # Checked against the models themselves: a changed default must fail here until prefect.yaml follows.
    assert RunSettings.from_parameters(specs["nightly-tutorial"].parameters) == RunSettings()
    for group, values in specs["nightly-tutorial"].parameters.items():
        if isinstance(values, dict):
            defaults = getattr(RunSettings(), group)
            assert {k: getattr(defaults, k) for k in values} == values, group


def test_a_workers_flow_run_process_gets_the_environment_every_entry_point_applies(document):
    # A worker starts the flow run in a process of its own; only the job variables reach it in time.
    for entry in document["deployments"]:
        assert entry["work_pool"]["job_variables"]["env"] == ENVIRONMENT, entry["name"]


def test_gemini_deployment_differs_from_the_nightly_one_only_by_its_embedder(specs):
    nightly, gemini = specs["nightly-tutorial"].parameters, specs["gemini-on-demand"].parameters
    assert {k: v for k, v in gemini.items() if k != "embedding"} == {
        k: v for k, v in nightly.items() if k != "embedding"
    }


def test_pull_steps_hold_no_absolute_path_and_nothing_prefect_deploy_would_fill_in(document):
    text = yaml.safe_dump(document["pull"])
    assert not re.search(r"(^|[\s:'\"])/(work|home|Users|tmp)\b", text)
    # `prefect deploy` fills `{{ $VAR }}` from its own environment, which would store the author's path.
    assert "{{ $" not in text
    shell, chdir = document["pull"]
    assert shell["prefect.deployments.steps.run_shell_script"]["expand_env_vars"] is True
    assert (
        chdir["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ worker-folder.stdout }}"
    )


def test_served_deployments_have_the_schedules_parameters_and_tags_of_prefect_yaml(specs):
    servable = [
        s
        for s in specs.values()
        if s.parameters.get("embedding", {}).get("embedder", "local") in EMBEDDERS.names()
    ]
    assert {"nightly-tutorial", "nightly-update"} <= {s.name for s in servable}
    for spec in servable:
        deployment = to_runner_deployment(spec)
        assert deployment.name == spec.name
        assert deployment.entrypoint == spec.entrypoint
        assert deployment.parameters == spec.parameters
        assert deployment.tags == spec.tags
        assert [
            {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "active": s.active}
            for s in deployment.schedules
        ] == spec.schedules


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"sampling": {"per_class": -1}},
            r"sampling\.per_class: Input should be greater than or equal to 0 \(got -1\)",
        ),
        (
            {"embedding": {"embedder": "word2vec"}},
            r"embedding\.embedder: Input should be .*\(got 'word2vec'\)",
        ),
        ({"sampling": {"per_klass": 3}}, r"sampling\.per_klass: Extra inputs are not permitted"),
        ({"sede": 1}, r"sede: not a parameter of the flow \(allowed: source, cleaning"),
    ],
)
def test_a_deployment_with_a_bad_parameter_is_rejected_before_serving(parameters, message):
    with pytest.raises(
        InputError, match=r"Deployment 'bad' in prefect.yaml has invalid parameters: " + message
    ):
        check_parameters(DeploymentSpec(name="bad", parameters=parameters))


def test_check_command_names_the_deployment_and_field_and_exits_with_2(tmp_path, capsys):
    bad = PREFECT_YAML.read_text().replace("per_class: 150", "per_class: -5")
    (tmp_path / "prefect.yaml").write_text(bad)
    assert main(["--check", "--file", str(tmp_path / "prefect.yaml"), "-n", "nightly-tutorial"]) == 2
    assert re.search(
        r"error: Deployment 'nightly-tutorial' .* sampling\.per_class: Input should be greater than or equal to 0",
        capsys.readouterr().err,
    )


def test_check_command_accepts_the_nightly_deployment(capsys):
    assert main(["--check", "-n", "nightly-tutorial"]) == 0
    assert capsys.readouterr().out.strip() == "ok: nightly-tutorial"


def test_unknown_deployment_name_and_foreign_entrypoint_are_rejected(specs, tmp_path):
    with pytest.raises(
        InputError,
        match=r"names must be among \['gemini-on-demand', 'nightly-tutorial', 'nightly-update'\]. Got \['nope'\]",
    ):
        select(list(specs.values()), ["nope"])
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n  - name: other\n    entrypoint: flows/other.py:other\n"
    )
    with pytest.raises(
        InputError,
        match=r"entrypoint of deployment 'other' .* must be one of \['flows/newsgroups.py:newsgroups'",
    ):
        load_specs(tmp_path / "prefect.yaml")


def test_the_nightly_update_adds_to_the_latest_run_an_hour_after_the_tutorials(specs):
    spec = specs["nightly-update"]
    assert spec.entrypoint == "flows/update.py:update"
    assert spec.parameters == {"updating": {"base": "latest"}}
    assert spec.schedules == [{"cron": "0 3 * * *", "timezone": "UTC", "active": True}]
    check_parameters(spec)
    with pytest.raises(InputError, match=r"updating\.max_new: Input should be greater than or equal to 1"):
        check_parameters(
            DeploymentSpec(name="bad", entrypoint=spec.entrypoint, parameters={"updating": {"max_new": 0}})
        )
