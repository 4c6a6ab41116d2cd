"""The run lifecycle: folder, lock, stage timings, and the manifest written last; or no folder on bad input."""

from __future__ import annotations

import json

import pytest
from prefect import flow

from tasks.config import OutputSettings, RunSettings, SamplingSettings
from tasks.errors import InputError
from tasks.layout import RUN_LOCK, write_json
from tasks.run import open_run, result_packages


def settings_in(tmp_path, name: str | None = "run", **changes) -> RunSettings:
    return RunSettings(output=OutputSettings(output_dir=tmp_path, run_name=name), **changes)


def test_a_finished_run_has_its_manifest_last_with_settings_timings_and_records(tmp_path):
    settings = settings_in(tmp_path, sampling=SamplingSettings(per_class=7), seed=9)
    with open_run(settings) as run:
        assert run.step("double", lambda x: 2 * x, 21) == 42
        write_json({"a": 1}, run.layout.root / "data.json")
        run.record(counts={"sampled": 7})
        run.record(counts={"classes": 2}, metrics={"ari": 0.5})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest == run.manifest
    assert manifest["parameters"]["sampling"]["per_class"] == 7 and manifest["parameters"]["seed"] == 9
    assert manifest["parameters"] == settings.model_dump(mode="json")
    assert set(manifest["timings_s"]) == {"double"}
    assert manifest["counts"] == {"sampled": 7, "classes": 2} and manifest["metrics"] == {"ari": 0.5}
    assert manifest["files"] == ["data.json"]
    assert not (tmp_path / "run" / RUN_LOCK).exists()


def test_bad_input_inside_the_run_removes_its_folder(tmp_path):
    with pytest.raises(InputError, match="no good"), open_run(settings_in(tmp_path)) as run:
        write_json({}, run.layout.root / "partial.json")
        raise InputError("no good")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyboardInterrupt()])
def test_any_other_failure_leaves_the_folder_unfinished_for_a_rerun_to_reclaim(tmp_path, error):
    with pytest.raises(type(error)), open_run(settings_in(tmp_path)) as run:
        write_json({}, run.layout.root / "partial.json")
        raise error
    assert (tmp_path / "run" / "partial.json").exists()
    assert not (tmp_path / "run" / "manifest.json").exists()
    with open_run(settings_in(tmp_path)):
        pass
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["files"] == []


def test_a_run_without_a_name_gets_time_label_and_suffix(tmp_path):
    with open_run(settings_in(tmp_path, None), label="tfidf") as run:
        pass
    assert run.name.split("-")[2] == "tfidf" and (tmp_path / run.name / "manifest.json").exists()


def test_one_flow_can_open_several_runs(tmp_path):
    @flow
    def two_variants() -> list[str]:
        names = []
        for per_class in (3, 5):
            variant = settings_in(
                tmp_path, f"variant-{per_class}", sampling=SamplingSettings(per_class=per_class)
            )
            with open_run(variant) as run:
                run.record(counts={"sampled": per_class})
            names.append(run.name)
        return names

    assert two_variants() == ["variant-3", "variant-5"]
    for per_class in (3, 5):
        manifest = json.loads((tmp_path / f"variant-{per_class}" / "manifest.json").read_text())
        assert manifest["parameters"]["sampling"]["per_class"] == per_class


def test_the_manifest_records_the_versions_of_the_declared_dependencies_not_a_typed_list():
    packages = result_packages()
    assert {"prefect", "numpy", "scikit-learn", "openTSNE", "sentence-transformers", "torch"} <= set(packages)
    assert "pytest" not in packages and "newsgroups-map" not in packages


def test_the_run_label_comes_from_the_settings_defaults():
    assert RunSettings.from_parameters({}).run_label() == RunSettings().run_label()
    assert (
        RunSettings.from_parameters({"sampling": {"per_class": 0}, "seed": 4})
        .run_label()
        .endswith("all-per-class-tsne-seed-4")
    )


@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999999999999])
def test_a_seed_outside_0_to_2_32_minus_1_is_refused_by_the_settings(seed):
    with pytest.raises(ValueError, match="seed"):
        RunSettings(seed=seed)


def test_a_preset_resolves_into_explicit_settings_and_explicit_ones_win():
    from tasks.check import preset_summary
    from tasks.config import ClusterSettings

    best = RunSettings(preset="best")
    assert (best.embedding.local_model, best.embedding.max_tokens, best.clustering.clusterer) == (
        "embeddinggemma-300m",
        256,
        "gmm",
    )
    mine = RunSettings(preset="best", clustering=ClusterSettings(clusterer="kmeans"))
    assert mine.clustering.clusterer == "kmeans" and mine.embedding.local_model == "embeddinggemma-300m"
    assert (
        RunSettings(preset="fast") == RunSettings(preset="fast")
        and RunSettings(preset="fast").embedding == RunSettings().embedding
    )
    assert (
        best.model_dump(mode="json")["embedding"]["local_model"] == "embeddinggemma-300m"
    )  # the manifest's record
    assert preset_summary(mine) == (
        "preset best: embedding.embedder=local, embedding.local_model=embeddinggemma-300m, "
        "embedding.max_tokens=256, embedding.tfidf_weight=0.6, clustering.clusterer=kmeans, clustering.gmm_pca_dimensions=25"
    )
    assert preset_summary(RunSettings()) is None


def test_an_unknown_preset_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="'fast' or 'best'"):
        RunSettings(preset="fastest")
