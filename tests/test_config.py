"""datasets.yaml: clear errors naming the file and the entry; one bad block spares the others."""

import re

import pytest

from toy_plugins import ToyPlugin
from warpbench.cli import main
from warpbench.config import ConfigError, load_config
from warpbench.plugins import load_registry
from warpbench.scheduler import make_plan


def write(tmp_path, text):
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "datasets:\n  a: {plugin: toy\n")
    with pytest.raises(ConfigError, match=r"(?s)datasets.yaml: not valid YAML.*line 2") as error:
        load_config(path)
    assert "\n" not in str(error.value)  # one line, for the command line's one error line


def test_a_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "expected a mapping"),
        ("datasets: {}\nsuitez: {}\n", "unknown top-level key 'suitez'; known: datasets, suites"),
        ("suites:\n  s: {methods: identity, datasets: []}\n",
         "suite 's': key 'methods': must be a list of names, got 'identity'"),
        ("suites:\n  s: {methods: [], datasets: [], time_limit: -1}\n", "time_limit"),
    ],
)
def test_structural_errors_are_reported(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text))


def test_a_broken_dataset_block_makes_only_that_dataset_unavailable(tmp_path):
    config = load_config(write(tmp_path, """
datasets:
  good: {plugin: toy, split: {train: 2, val: 1, test: 3}}
  no-plugin: {root: x}
  bad-split: {plugin: toy, split: {train: 4, val: 1, test: 3}}
  bad-fractions: {plugin: toy, split: {train: 0.5, test: 0.9}}
  bad-pairs: {plugin: toy, pairs: {test: many}}
  unknown-kind: {plugin: nifti-folder}
"""))
    registry = load_registry(extra_plugins=[ToyPlugin()])
    plan = make_plan(registry, config, ["toy-shift"], list(config.datasets))
    assert list(plan.datasets) == ["good"]
    reasons = plan.unavailable
    assert "expected a mapping with a 'plugin' key" in reasons["no-plugin"]
    assert reasons["bad-pairs"] == (f"{tmp_path / 'datasets.yaml'}: dataset 'bad-pairs' (toy): "
                                    "option 'pairs.test': must be a count or 'all', got 'many'")
    assert "no installed plugin supplies dataset kind 'nifti-folder'" in reasons["unknown-kind"]
    assert "asks for more than its 6 subjects" in reasons["bad-split"]
    assert "add up to 1.4, more than 1" in reasons["bad-fractions"]


def test_splits_are_disjoint_and_pairs_stay_in_their_split(tmp_path):
    config = load_config(write(tmp_path, """
datasets:
  d: {plugin: toy, subjects: 10, split: {train: 0.5, val: 0.2, test: 0.3, seed: 3}, pairs: {test: 4, val: all}}
"""))
    from warpbench.config import build_dataset

    dataset = build_dataset(config, "d", load_registry(extra_plugins=[ToyPlugin()]).dataset_kinds)
    splits = {s: set(dataset.subjects(s)) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5, 2, 3]
    assert set.union(*splits.values()) == set(dataset.all_subjects())
    assert not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])
    pairs = dataset.pairs("test")
    assert len(pairs) == 4 and len(set(pairs)) == 4
    assert all(p.fixed in splits["test"] and p.moving in splits["test"] and p.fixed != p.moving for p in pairs)
    assert len(dataset.pairs("val")) == 2
    assert dataset.pairs("test") == pairs  # deterministic


def test_cli_reports_a_broken_config_without_a_traceback(tmp_path, capsys):
    path = write(tmp_path, "datasets: [\n")
    assert main(["run", "--config", str(path), "--db", str(tmp_path / "r.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "datasets.yaml" in err and "Traceback" not in err
