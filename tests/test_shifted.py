"""Dataset kind ``shifted``: another block's subjects under acquisition changes. Deterministic per
subject and seed, the source's subjects, splits, pairs and labels kept, the fingerprint covering
the source and the changes, a missing source or a cycle named; networks trained on the source
are evaluated on it as shifted runs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

import warpbench_shifted
from toy_plugins import ToyLearningPlugin, ToyPlugin
from warpbench.config import build_dataset, load_config
from warpbench.datasets import DatasetConfigError, load_subject
from warpbench.executors import InProcessExecutor
from warpbench.plugins import load_registry
from warpbench.scheduler import Scheduler, make_plan
from warpbench.store import Store
from warpbench_shifted.shifts import head_mask

CONFIG = """
datasets:
  synth:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    split: {train: 2, val: 1, test: 3}
    pairs: {test: 4, seed: 1}
  synth-noise:
    plugin: shifted
    source: synth
    shift: [{transform: noise, std: 0.1}]
  synth-noise-seed1:
    plugin: shifted
    source: synth
    seed: 1
    shift: [{transform: noise, std: 0.1}]
  synth-everything:
    plugin: shifted
    source: synth
    shift:
      - {transform: invert}
      - {transform: gamma, gamma: 1.5}
      - {transform: bias_field, coefficients: 0.3, order: 2}
      - {transform: blur, std: 2.0}
      - {transform: resample, spacing: [2, 2, 6]}
      - {transform: noise, std: 0.05}
  synth-twice:
    plugin: shifted
    source: synth-noise
    shift: [{transform: invert}]
  orphan:
    plugin: shifted
    source: nowhere
    shift: [{transform: invert}]
  gone:
    plugin: decathlon
    root: no/such/folder
    labels: {1: a}
  from-gone:
    plugin: shifted
    source: gone
    shift: [{transform: invert}]
  loop-a:
    plugin: shifted
    source: loop-b
    shift: [{transform: invert}]
  loop-b:
    plugin: shifted
    source: loop-a
    shift: [{transform: invert}]
  itself:
    plugin: shifted
    source: itself
    shift: [{transform: invert}]
"""


@pytest.fixture(autouse=True, scope="module")
def shifted_plugin_loads():
    """The tests load only the built-in plugins they name; this kind is one of them."""
    loaded = os.environ.get("WARPBENCH_LOAD_PLUGINS")
    with pytest.MonkeyPatch.context() as patch:
        if loaded is not None and "shifted" not in loaded.split(","):
            patch.setenv("WARPBENCH_LOAD_PLUGINS", f"{loaded},shifted")
        yield


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_text(CONFIG)
    return load_config(path)


@pytest.fixture(scope="module")
def kinds():
    return load_registry().dataset_kinds


def build(config, name, kinds):
    return build_dataset(config, name, kinds)


def test_the_kind_is_a_registered_plugin(kinds):
    assert kinds["shifted"] is warpbench_shifted.ShiftedDataset


def test_a_derived_dataset_keeps_its_sources_subjects_splits_pairs_and_labels(config, kinds):
    source, derived = build(config, "synth", kinds), build(config, "synth-everything", kinds)
    assert derived.all_subjects() == source.all_subjects()
    for split in ("train", "val", "test"):
        assert derived.subjects(split) == source.subjects(split)
    assert derived.pairs("test") == source.pairs("test") and len(derived.pairs("test")) == 4
    assert derived.labels == source.label_names()
    assert derived.availability() == (True, "")
    for subject_id in derived.subjects("test"):
        original, shifted = load_subject(source, subject_id), load_subject(derived, subject_id)
        np.testing.assert_array_equal(shifted.labels, original.labels)
        np.testing.assert_array_equal(shifted.affine, original.affine)
        assert shifted.image.shape == original.image.shape and shifted.image.dtype == np.float32
        assert not np.allclose(shifted.image, original.image, atol=0.05)
        assert shifted.image.min() == 0 and shifted.image.max() == 1  # rescaled as readers do


def test_a_derived_subject_is_the_same_on_every_load_and_build(config, kinds):
    first = build(config, "synth-noise", kinds)
    subject_id = first.subjects("test")[0]
    image = load_subject(first, subject_id).image
    np.testing.assert_array_equal(load_subject(first, subject_id).image, image)
    again = build(load_config(config.path), "synth-noise", kinds)  # another command, say
    np.testing.assert_array_equal(load_subject(again, subject_id).image, image)
    # Another seed draws other noise; another subject is drawn on its own.
    other_seed = load_subject(build(config, "synth-noise-seed1", kinds), subject_id).image
    assert not np.allclose(other_seed, image)
    source = build(config, "synth", kinds)
    noise = [load_subject(first, s).image - load_subject(source, s).image
             for s in first.subjects("test")[:2]]
    assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.2


def test_inversion_swaps_dark_and_bright_inside_the_head_only(tmp_path, kinds):
    (tmp_path / "datasets.yaml").write_text(CONFIG.replace(
        "  synth:\n    plugin: synthetic\n", "  synth:\n    plugin: synthetic\n    noise: 0.0\n"))
    config = load_config(tmp_path / "datasets.yaml")
    source = build(config, "synth", kinds)
    subject_id = source.subjects("test")[0]
    original = load_subject(source, subject_id).image
    inverted = load_subject(build(config, "synth-twice", kinds), subject_id)  # noise, inverted
    head = head_mask(original)
    assert 0 < head.mean() < 1  # a background without noise is left out of the head
    assert np.corrcoef(original[head], inverted.image[head])[0, 1] < -0.9
    assert inverted.image[~head].mean() < 0.2  # the background stays dark


def test_the_fingerprint_covers_the_source_and_the_changes(config, kinds, tmp_path):
    fingerprint = build(config, "synth-noise", kinds).fingerprint()
    assert build(load_config(config.path), "synth-noise", kinds).fingerprint() == fingerprint
    assert build(config, "synth-noise-seed1", kinds).fingerprint() != fingerprint

    def changed(old: str, new: str) -> str:
        path = tmp_path / "changed.yaml"
        path.write_text(CONFIG.replace(old, new, 1))
        return build(load_config(path), "synth-noise", kinds).fingerprint()

    noise = "[{transform: noise, std: 0.1}]"
    assert changed(noise, noise.replace("0.1", "0.2")) != fingerprint
    assert changed("pairs: {test: 4, seed: 1}", "pairs: {test: 4, seed: 2}") != fingerprint
    assert changed("subjects: 6", "subjects: 7") != fingerprint


def test_a_missing_or_unavailable_source_makes_the_derived_dataset_unavailable(config, kinds):
    registry = load_registry()
    plan = make_plan(registry, config, ["identity"], ["orphan", "from-gone", "synth-noise"])
    assert [run.dataset for run in plan.runs] == ["synth-noise"]
    assert "dataset 'orphan' (shifted): its source 'nowhere' cannot be used: no dataset " \
           "'nowhere'" in plan.unavailable["orphan"]
    assert plan.unavailable["from-gone"].startswith(
        "its source dataset 'gone' is unavailable: root ")
    assert str(config.path) in plan.unavailable["orphan"]


@pytest.mark.parametrize("name, cycle", [("loop-a", "loop-a -> loop-b -> loop-a"),
                                         ("itself", "itself -> itself")])
def test_a_cycle_of_sources_is_an_error_naming_the_blocks(config, kinds, name, cycle):
    with pytest.raises(DatasetConfigError, match=f"its sources form a cycle, {cycle};"):
        build(config, name, kinds)


@pytest.mark.parametrize("block, message", [
    ("{plugin: shifted, source: synth, shift: [{transform: nois}]}",
     "option 'shift.0': Input tag 'nois' found using 'transform' does not match"),
    ("{plugin: shifted, source: synth, shift: []}", "option 'shift': List should have at least 1"),
    ("{plugin: shifted, source: synth, shift: [{transform: noise}]}",
     "missing option 'shift.0.noise.std'"),
    ("{plugin: shifted, source: synth, shift: [{transform: invert}], split: {test: 3}}",
     "option 'split': must be left out: a shifted dataset keeps its source's split"),
    ("{plugin: shifted, shift: [{transform: invert}]}", "missing option 'source'"),
])
def test_a_bad_block_is_one_line_naming_the_block_and_the_option(tmp_path, kinds, block, message):
    path = tmp_path / "datasets.yaml"
    path.write_text(CONFIG + f"  bad: {block}\n")
    with pytest.raises(DatasetConfigError) as error:
        build(load_config(path), "bad", kinds)
    assert str(error.value).startswith(f"{path}: dataset 'bad' (shifted): ")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_networks_trained_on_the_source_are_evaluated_on_it_as_shifted_runs(config, tmp_path):
    toy = ToyLearningPlugin()
    registry = load_registry(extra_plugins=[ToyPlugin(), toy])
    plan = make_plan(registry, config, ["toy-learner", "identity"], ["synth", "synth-noise"],
                     train_on=["synth"])
    assert [(t.method, t.dataset) for t in plan.trainings] == [("toy-learner", "synth")]
    store = Store(tmp_path / "wb.duckdb")
    summary = Scheduler(registry, store, InProcessExecutor("cpu"), progress=False).run(plan)
    assert summary.trainings_done == 1 and summary.pairs_failed == 0
    runs = store.runs().set_index(["method", "dataset"])
    assert runs.loc[("toy-learner", "synth"), "in_domain"] == True  # noqa: E712 (numpy bool)
    assert runs.loc[("toy-learner", "synth-noise"), "in_domain"] == False  # noqa: E712
    assert runs.loc[("toy-learner", "synth-noise"), "train_dataset"] == "synth"
    pairs = store.pair_scores().merge(store.runs()[["run_id", "method", "dataset"]], on="run_id")
    by_dataset = {d: sorted(zip(g["fixed"], g["moving"])) for d, g in
                  pairs[pairs["method"] == "identity"].groupby("dataset")}
    assert by_dataset["synth-noise"] == by_dataset["synth"]  # the same test pairs
    datasets = store.datasets().set_index("dataset")
    assert datasets.loc["synth-noise", "kind"] == "shifted"


def test_the_shipped_hippocampus_shifts_keep_the_real_split(hippocampus_root, kinds):
    from conftest import REPO

    config = load_config(REPO / "datasets.yaml")
    source = build(config, "hippocampus", kinds)
    subject_id = source.subjects("test")[0]
    original = load_subject(source, subject_id)
    shifted = [name for name, block in config.datasets.items()
               if block.get("plugin") == "shifted" and block.get("source") == "hippocampus"]
    assert len(shifted) >= 4
    for name in shifted:
        derived = build(config, name, kinds)
        assert derived.pairs("test") == source.pairs("test")
        assert derived.subjects("train") == source.subjects("train")
        subject = load_subject(derived, subject_id)
        np.testing.assert_array_equal(subject.labels, original.labels)
        assert not np.allclose(subject.image, original.image, atol=0.02), name
    suite = config.suite("hippocampus-shift")
    assert suite.train_on == ["hippocampus"] and set(shifted) <= set(suite.datasets)


def test_the_json_schema_describes_a_shifted_block(kinds):
    import jsonschema

    from conftest import REPO
    from warpbench.config import datasets_yaml_schema

    schema = datasets_yaml_schema(kinds)
    jsonschema.validate(yaml.safe_load((REPO / "datasets.yaml").read_text()), schema)
    jsonschema.validate(yaml.safe_load(CONFIG), schema)
    bad = yaml.safe_load("datasets: {x: {plugin: shifted, source: s, shift: [{transform: nois}]}}")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
