"""CLI: one flag per settings field, generated from the flow's pydantic models."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter

from flows.cli import COMMANDS, build_parser, flow_kwargs, parameters
from flows.newsgroups import newsgroups
from tasks.config import (
    CleaningSettings,
    ClusterSettings,
    EmbeddingSettings,
    ExecutionSettings,
    MapSettings,
    OutputSettings,
    SamplingSettings,
    SourceSettings,
)
from tasks.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
NEWSGROUPS = "flows.newsgroups:newsgroups"
# What a refusal must not import: each takes from a tenth of a second to seconds.
HEAVY = ("prefect", "sklearn", "scipy", "seaborn", "matplotlib", "plotly", "torch", "sentence_transformers")


def expected_flags() -> dict[str, str]:
    """Flag -> how its default should read, from the flow's signature and its models."""
    expected = {}
    hints = typing.get_type_hints(newsgroups.fn)
    for name, parameter in inspect.signature(newsgroups.fn).parameters.items():
        model = hints[name]
        if isinstance(model, type) and issubclass(model, BaseModel):
            defaults = {
                f: info.get_default(call_default_factory=True) for f, info in model.model_fields.items()
            }
        else:
            defaults = {name: parameter.default}
        for field, default in defaults.items():
            shown = "none" if default is None else " ".join(default) if isinstance(default, list) else default
            expected["--" + field.replace("_", "-")] = f"[default: {shown}]"
    # These depend on the source: the tutorial's sample of 20 Newsgroups, a user's corpus whole.
    expected["--groups"] = "[default: sci for 20 Newsgroups, none with --corpus]"
    expected["--per-class"] = "[default: 150 for 20 Newsgroups, 0 with --corpus]"
    return expected


@pytest.fixture(scope="module")
def help_text() -> str:
    env = {**os.environ, "COLUMNS": "1000"}  # one line per option, so a default is never wrapped
    result = subprocess.run(
        [sys.executable, "-m", "flows.newsgroups", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse(*argv: str, entrypoint: str = NEWSGROUPS) -> dict:
    command = COMMANDS[entrypoint]
    return flow_kwargs(command, build_parser(command, "test").parse_args(list(argv)))


def schema(kind) -> dict:
    return {k: v for k, v in TypeAdapter(kind).json_schema().items() if k != "description"}


def test_every_flow_the_cli_serves_takes_exactly_the_parameters_of_its_settings_model():
    assert set(COMMANDS) == {NEWSGROUPS, "flows.compare:compare", "flows.update:update"}
    for entrypoint, command in COMMANDS.items():
        flow = command.load()
        assert flow.fn.__name__ == entrypoint.split(":")[1]
        hints = typing.get_type_hints(flow.fn, include_extras=True)
        signature = inspect.signature(flow.fn).parameters
        cli = parameters(command.parameters)
        assert list(cli) == list(signature), entrypoint
        for name, (kind, default) in cli.items():
            # Same type and constraints: the same JSON schema Prefect builds its form from (the help
            # text aside, which the flow documents in its docstring).
            assert schema(kind) == schema(hints[name]), name
            assert default == signature[name].default, name


def test_a_list_argument_of_the_flow_takes_several_values():
    kwargs = parse("--embedders", "local", "tfidf", entrypoint="flows.compare:compare")
    assert kwargs["embedders"] == ["local", "tfidf"]
    with pytest.raises(InputError, match=r"^Invalid parameter --embedders: .*\(got 'nope'\)"):
        parse("--embedders", "local", "nope", entrypoint="flows.compare:compare")


def test_the_expectation_covers_every_settings_model_field():
    flags = expected_flags()
    models = [
        SourceSettings,
        CleaningSettings,
        SamplingSettings,
        EmbeddingSettings,
        MapSettings,
        ClusterSettings,
        OutputSettings,
        ExecutionSettings,
    ]
    assert len(flags) == sum(len(m.model_fields) for m in models) + 2  # + --seed and --preset
    assert "--per-class" in flags and "--seed" in flags and "--preset" in flags


def option_help(help_text: str) -> dict[str, str]:
    """Each option's help entry, joined into one line (long option names push the help down a line)."""
    entries: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            flag = stripped.split()[0].rstrip(",")
            entries[flag] = stripped
        elif stripped and flag:
            entries[flag] += " " + stripped
        else:
            flag = None
    return entries


def test_help_lists_every_settings_field_as_a_flag_with_its_default(help_text):
    entries = option_help(help_text)
    for flag, default in expected_flags().items():
        assert flag in entries, f"{flag} is missing from --help"
        assert entries[flag].endswith(default), f"{flag}: expected {default!r} in {entries[flag]!r}"


def test_help_groups_the_flags_by_stage(help_text):
    for group in ("source:", "cleaning:", "sampling:", "embedding:", "mapping:", "clustering:", "output:"):
        assert f"\n{group}\n" in help_text


def test_no_flags_give_the_default_settings():
    kwargs = parse()
    assert kwargs == {
        "source": SourceSettings(),
        "cleaning": CleaningSettings(),
        "sampling": SamplingSettings(),
        "embedding": EmbeddingSettings(),
        "mapping": MapSettings(),
        "clustering": ClusterSettings(),
        "output": OutputSettings(),
        "execution": ExecutionSettings(),
    }


def test_flags_build_the_settings_models_with_typed_values():
    kwargs = parse(
        "--per-class",
        "5",
        "--embedder",
        "tfidf",
        "--perplexity",
        "12.5",
        "--archive",
        "data/a.tar.gz",
        "--n-clusters",
        "3",
        "--seed",
        "7",
    )
    assert kwargs["sampling"] == SamplingSettings(per_class=5)
    assert kwargs["embedding"] == EmbeddingSettings(embedder="tfidf")
    assert kwargs["mapping"].perplexity == 12.5
    assert kwargs["source"].archive == Path("data/a.tar.gz")
    assert kwargs["clustering"] == ClusterSettings(n_clusters=3)
    assert kwargs["seed"] == 7
    assert isinstance(kwargs["seed"], int)


def test_a_list_field_takes_several_values():
    assert parse("--groups", "sci", "^rec\\.")["sampling"].groups == ["sci", "^rec\\."]


def test_a_list_flag_with_no_values_gives_an_empty_list():
    assert parse("--groups")["sampling"].groups == []


def test_a_bool_field_has_a_flag_and_a_no_flag():
    assert parse("--no-drop-duplicates")["cleaning"].drop_duplicates is False
    assert parse("--drop-duplicates")["cleaning"].drop_duplicates is True


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--per-class", "-1"], "--per-class"),
        (["--max-chars", "0"], "--max-chars"),
        (["--perplexity", "many"], "--perplexity"),
        (["--run-name", "../escape"], "--run-name"),
        (["--seed", "1.5"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "4294967296"], "--seed"),
        (["--seed", "99999999999999999999"], "--seed"),
    ],
)
def test_an_invalid_value_is_an_input_error_naming_the_flag(argv, flag):
    with pytest.raises(InputError, match=rf"^Invalid parameter {flag}: .*\(got '{argv[1]}'\)"):
        parse(*argv)


def test_the_largest_seed_numpy_accepts_is_accepted():
    assert parse("--seed", str(2**32 - 1))["seed"] == 2**32 - 1


def test_an_abbreviated_flag_is_refused_not_guessed(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("--per-clas", "3")
    assert exit_.value.code == 2
    assert "unrecognized arguments: --per-clas 3" in capsys.readouterr().err


def test_sampling_defaults_are_the_tutorials_for_20_newsgroups_and_everything_for_a_corpus():
    assert SamplingSettings().resolved(SourceSettings()) == SamplingSettings(groups=["sci"], per_class=150)
    mine = SourceSettings(corpus=Path("posts.csv"))
    assert SamplingSettings().resolved(mine) == SamplingSettings(groups=[], per_class=0)
    assert SamplingSettings(per_class=5).resolved(mine) == SamplingSettings(groups=[], per_class=5)
    assert SamplingSettings(groups=[]).resolved(SourceSettings()) == SamplingSettings(
        groups=[], per_class=150
    )


def file_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "results.txt").write_text("a file")
    return [
        (["--corpus", str(tmp_path / "folder.csv")], "folder.csv is a folder; pass the corpus file itself"),
        (["--corpus", str(tmp_path / "none.csv")], "none.csv does not exist; check the --corpus path"),
        (["--corpus", str(tmp_path / "notes.txt")], "must be a .csv, .parquet or .jsonl file; got '.txt'"),
        (["--archive", str(tmp_path / "none.tar.gz")], "none.tar.gz does not exist; pass the path of"),
        (
            ["--output-dir", str(tmp_path / "results.txt")],
            "results.txt is a file; pass an --output-dir that is",
        ),
        (
            ["--output-dir", str(tmp_path / "results.txt" / "runs")],
            f"lies under the file {tmp_path / 'results.txt'}; pass an --output-dir",
        ),
        (["--run-name", "r" * 256], "--run-name: String should have at most 255 characters"),
        (["--csv-separator", ";;"], "--csv-separator: String should have at most 1 character"),
    ]


def test_a_wrong_file_or_flag_is_refused_with_one_line_in_under_3_s_before_prefect_starts(tmp_path, capsys):
    from flows.cli import main

    for argv, expected in file_cases(tmp_path):
        started = time.monotonic()
        status = main(
            NEWSGROUPS,
            [*argv, "--output-dir", str(tmp_path / "runs")] if "--output-dir" not in argv else argv,
        )
        took = time.monotonic() - started
        err = capsys.readouterr().err
        assert status == 2, argv
        assert took < 3, f"{argv}: {took:.1f} s"
        assert expected in err, err
        assert err.count("error: ") == 1 and err.startswith("error: "), err
    assert not (tmp_path / "runs").exists()


def test_the_command_refuses_a_folder_as_corpus_without_starting_prefect(tmp_path):
    (tmp_path / "posts.csv").mkdir()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flows.newsgroups", "--corpus", str(tmp_path / "posts.csv")],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: The corpus {tmp_path / 'posts.csv'} is a folder; pass the corpus file itself with --corpus.\n"
    )
    assert "Starting temporary server" not in result.stdout
    print(f"refused in {took:.1f} s, imports included")


def imported_modules(importtime: str) -> set[str]:
    """The top-level packages named in ``python -X importtime`` output."""
    lines = [line for line in importtime.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines[1:]}


@pytest.mark.parametrize(
    ("argv", "refusal"),
    [
        (
            ["--per-class", "-5"],
            "error: Invalid parameter --per-class: Input should be greater than or equal to 0",
        ),
        (
            ["--corpus", "missing.csv"],
            "error: The corpus file missing.csv does not exist; check the --corpus path.",
        ),
        (
            ["--output-dir", "results.txt"],
            "error: The output folder results.txt is a file; pass an --output-dir",
        ),
    ],
    ids=["flag", "missing-corpus", "output-dir-is-a-file"],
)
def test_a_refusal_imports_neither_prefect_nor_the_heavy_libraries(argv, refusal, tmp_path):
    (tmp_path / "results.txt").write_text("a file")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.newsgroups", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    messages = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert len(messages) == 1 and messages[0].startswith(refusal), messages
    imported = imported_modules(result.stderr)
    assert {"pydantic", "tasks", "flows"} <= imported  # the output was read right
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


# `python -m flows.newsgroups --per-class -5` (a refusal: it stops after the settings modules, which load pyarrow),
# then the memory pool pyarrow chose when it was loaded.
POOL_AFTER_A_COMMAND = """
import atexit, runpy, sys
atexit.register(lambda: print(__import__("pyarrow").default_memory_pool().backend_name))
sys.argv = ["flows.newsgroups", "--per-class", "-5"]
runpy.run_module("flows.newsgroups", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_loads_pyarrow_after_its_environment_so_the_pool_is_the_environments(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given:  # a value the user set wins
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    result = subprocess.run(
        [sys.executable, "-c", POOL_AFTER_A_COMMAND],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--per-class" in result.stderr, result.stderr[-2000:]
    assert result.stdout.split() == [expected]
