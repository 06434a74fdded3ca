"""`warpbench ci`: fresh runs of a suite, DuckDB + Parquet + Markdown out, and an exit status that
fails on a failed pair or a regression against a baseline store, and passes when nothing changed."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from toy_plugins import TRAINING_CONFIG, ToyLearningPlugin, ToyPlugin
from warpbench import Method
from warpbench.ci import run_ci
from warpbench.cli import main
from warpbench.config import load_config
from warpbench.hookspecs import hookimpl
from warpbench.plugins import load_registry

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
datasets:
  toy-a: {plugin: toy, subjects: 5, split: {train: 1, val: 1, test: 3}, pairs: {test: all}}
  toy-b: {plugin: toy, subjects: 5, split: {train: 1, val: 1, test: 3}, pairs: {test: all}}
suites:
  quick:
    methods: [toy-drift]
    datasets: [toy-a, toy-b]
"""

DRIFT = {"voxels": 0.0}


class DriftMethod(Method):
    """Aligns the toy boxes (whose subjects differ by whole voxels along axis 0) from their
    centres of mass, plus an error that a test can inject without changing the configuration."""

    name = "toy-drift"
    family = "classical"
    version = "1"

    def register(self, fixed, moving, params, device):
        axis0 = torch.arange(fixed.shape[0], dtype=torch.float32).view(-1, 1, 1)
        centre = [float((torch.as_tensor(im > 0.2) * axis0).sum() / (torch.as_tensor(im > 0.2)).sum())
                  for im in (fixed, moving)]
        field = torch.zeros(3, *fixed.shape)
        field[0] = centre[1] - centre[0] + DRIFT["voxels"]
        return field


class DriftPlugin:
    @hookimpl
    def register_methods(self, register):
        register(DriftMethod())


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    registry = load_registry(extra_plugins=[ToyPlugin(), DriftPlugin()])
    DRIFT["voxels"] = 0.0
    yield registry, load_config(tmp_path / "datasets.yaml"), tmp_path
    DRIFT["voxels"] = 0.0


def test_ci_writes_store_parquet_and_markdown_and_passes(setup):
    registry, config, tmp = setup
    result = run_ci(registry, config, "quick", tmp / "ci", methods=["toy-shift"])
    assert result.exit_code == 0, result.markdown
    assert result.store == tmp / "ci" / "warpbench.duckdb" and result.store.exists()
    assert {p.name for p in result.exports} == {"runs.parquet", "pairs.parquet", "labels.parquet",
                                                "datasets.parquet"}
    pairs = pd.read_parquet(tmp / "ci" / "parquet" / "pairs.parquet")
    assert len(pairs) == 2 * 2 * 6 and (pairs["status"] == "ok").all()
    markdown = (tmp / "ci" / "summary.md").read_text()
    assert markdown == result.markdown
    assert "## warpbench CI: suite `quick` passed" in markdown
    assert "| toy-drift | default | toy-a | - | 6 | 0 | 1.0000 |" in markdown
    assert "| toy-shift | default | toy-b |" in markdown
    assert "No baseline store given" in markdown and "### Failures\n\nNone." in markdown


def test_learning_runs_are_in_the_table_with_their_training_dataset_and_domain(setup):
    registry, config, tmp = setup
    registry = load_registry(extra_plugins=[ToyPlugin(), DriftPlugin(), ToyLearningPlugin()])
    result = run_ci(registry, config, "quick", tmp / "ci", methods=["toy-learner"])
    assert result.exit_code == 0, result.markdown
    learned = result.leaderboard[result.leaderboard["method"] == "toy-learner"]
    assert len(learned) == 4  # trained on toy-a and on toy-b, each evaluated on both
    assert "| toy-learner | default | toy-b | toy-a (shifted) | 6 | 0 |" in result.markdown
    assert "| toy-learner | default | toy-a | toy-a (in-domain) | 6 | 0 |" in result.markdown
    assert "2 trainings, 6 runs" in result.markdown

    again = run_ci(registry, config, "quick", tmp / "ci-2", methods=["toy-learner"],
                   baseline=result.store)
    assert again.exit_code == 0, again.markdown
    verdicts = again.comparison.set_index(["method", "dataset", "train_dataset"])["verdict"]
    assert verdicts[("toy-learner", "toy-b", "toy-a")] == "same" and len(verdicts) == 6


def test_the_summary_says_which_tests_are_shifted_and_on_another_label_protocol(tmp_path):
    (tmp_path / "datasets.yaml").write_text(TRAINING_CONFIG)
    registry = load_registry(extra_plugins=[ToyPlugin(), ToyLearningPlugin()])
    result = run_ci(registry, load_config(tmp_path / "datasets.yaml"), "default", tmp_path / "ci")
    assert result.exit_code == 0, result.markdown
    assert "| toy-learner | labels | toy-renamed | toy-a (shifted, other labels) |" in result.markdown
    assert "| toy-learner | labels | toy-mapped | toy-a (shifted) |" in result.markdown
    assert "| toy-learner | labels | toy-a | toy-a (in-domain) |" in result.markdown


def test_ci_exits_1_on_an_injected_regression_and_0_when_equal(setup):
    registry, config, tmp = setup
    baseline = run_ci(registry, config, "quick", tmp / "base").store

    same = run_ci(registry, config, "quick", tmp / "same", baseline=baseline)
    assert same.exit_code == 0, same.markdown
    assert set(same.comparison["verdict"]) == {"same"}
    assert "| toy-drift | default | toy-a | - | 1.0000 | 1.0000 | +0.0000 | same |" in same.markdown

    DRIFT["voxels"] = 1.0  # the method got worse; its name, preset and version did not change
    worse = run_ci(registry, config, "quick", tmp / "worse", baseline=baseline)
    assert worse.exit_code == 1
    assert set(worse.comparison["verdict"]) == {"regressed"}
    assert len(worse.regressions) == 2
    assert "FAILED" in worse.markdown and "regression: toy-drift:default on toy-a" in worse.markdown

    # a drop within the threshold passes
    assert run_ci(registry, config, "quick", tmp / "lenient", baseline=baseline,
                  threshold=0.9).exit_code == 0


def test_ci_exits_1_when_a_pair_fails_and_lists_it(setup):
    registry, config, tmp = setup
    result = run_ci(registry, config, "quick", tmp / "ci", methods=["toy-nan"])
    assert result.exit_code == 1
    assert "toy-nan:default on toy-a: " in result.markdown
    assert "invalid field: 1 of" in result.markdown
    assert "| toy-nan | default | toy-a | - | 0 | 6 |" in result.markdown


def test_ci_exits_1_when_a_dataset_of_the_suite_is_unavailable(setup):
    registry, config, tmp = setup
    config.datasets["gone"] = {"plugin": "toy", "subjects": 2, "split": {"train": 0, "val": 0, "test": 3}}
    config.suites["quick"].datasets.append("gone")
    result = run_ci(registry, config, "quick", tmp / "ci")
    assert result.exit_code == 1
    assert "dataset gone unavailable: " in result.markdown and "asks for more than its 2" in result.markdown


def test_ci_does_not_compare_across_changed_datasets_or_new_methods(setup):
    registry, config, tmp = setup
    baseline = run_ci(registry, config, "quick", tmp / "base").store
    changed = tmp / "changed.yaml"
    changed.write_text(CONFIG.replace("pairs: {test: all}}\n  toy-b", "pairs: {test: 2}}\n  toy-b"))
    DRIFT["voxels"] = 1.0
    result = run_ci(registry, load_config(changed), "quick", tmp / "ci", baseline=baseline,
                    methods=["toy-shift"])
    verdicts = {(r.method, r.dataset): r.verdict for r in result.comparison.itertuples()}
    assert verdicts[("toy-drift", "toy-a")] == "dataset changed"
    assert verdicts[("toy-drift", "toy-b")] == "regressed"
    assert verdicts[("toy-shift", "toy-a")] == "new"


def test_ci_command_end_to_end_and_its_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets.yaml").write_text("""
datasets:
  tiny: {plugin: synthetic, shape: [24, 24, 24], subjects: 4, split: {train: 1, val: 0, test: 3},
         pairs: {test: 2}}
suites:
  quick: {methods: [identity], datasets: [tiny]}
""")
    assert main(["ci", "--quiet", "--out", "first"]) == 0
    assert "| identity | default | tiny | - | 2 | 0 |" in capsys.readouterr().out
    assert (tmp_path / "first" / "parquet" / "runs.parquet").exists()
    assert main(["ci", "--quiet", "--out", "second", "--baseline", "first/warpbench.duckdb"]) == 0
    assert "| identity | default | tiny |" in capsys.readouterr().out

    for args, message in [
        (["--baseline", "missing.duckdb"], "missing.duckdb: no such file"),
        (["--baseline", "datasets.yaml"], "datasets.yaml: not a DuckDB file"),
        (["--method", "no-such-method"], "no method 'no-such-method' is registered"),
        (["--suite", "nightly"], "no suite 'nightly'"),
        (["--threshold", "-1"], "--threshold must be a non-negative"),
    ]:
        assert main(["ci", "--quiet", "--out", "bad", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()  # refused before any work


def test_the_quick_suite_is_small_synthetic_data_with_identity_and_greedy_fast():
    config = load_config(REPO / "datasets.yaml")
    quick = config.suite("quick")
    assert quick.methods == ["identity", "greedy:fast"]
    for name in quick.datasets:
        block = config.datasets[name]
        assert block["plugin"] == "synthetic"
        voxels = block["shape"][0] * block["shape"][1] * block["shape"][2]
        assert voxels <= 48_000 and block["pairs"]["test"] <= 8
