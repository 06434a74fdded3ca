"""The scheduler end to end on throw-away plugins: plan, store, resume, failure isolation; and
resuming on a store written by the last release."""

import duckdb
import pytest

from test_store import copy_release_store
from toy_plugins import TOY_CONFIG, ToyPlugin
from warpbench.compatibility import in_domain
from warpbench.config import load_config
from warpbench.executors import InProcessExecutor
from warpbench.plugins import load_registry
from warpbench.scheduler import Scheduler, make_plan
from warpbench.store import Store
from warpbench.training import training_key


@pytest.fixture
def setup(tmp_path):
    config_path = tmp_path / "datasets.yaml"
    config_path.write_text(TOY_CONFIG)
    registry = load_registry(extra_plugins=[ToyPlugin()])
    return registry, load_config(config_path), Store(tmp_path / "results.duckdb")


def run(registry, config, store, methods, datasets, **options):
    plan = make_plan(registry, config, methods, datasets)
    scheduler = Scheduler(registry, store, InProcessExecutor("cpu"), progress=False, **options)
    return scheduler.run(plan)


def count(store, sql):
    with duckdb.connect(str(store.path), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_every_method_preset_and_dataset_is_scored_with_provenance(setup):
    registry, config, store = setup
    summary = run(registry, config, store, ["toy-shift:*"], ["toy-a", "toy-b"])
    assert summary.runs_done == 4 and summary.pairs_failed == 0
    board = store.leaderboard()
    assert len(board) == 4
    pairs = board.set_index(["preset", "dataset"])["pairs"]
    assert pairs[("default", "toy-a")] == 6  # 3 test subjects, every ordered pair
    assert pairs[("default", "toy-b")] == 4
    # A one-voxel shift of boxes that already overlap changes Dice: presets are really applied.
    dice = board.set_index(["preset", "dataset"])["dice"]
    assert dice[("default", "toy-a")] != pytest.approx(dice[("one", "toy-a")])
    runs = store.runs()
    assert set(runs["status"]) == {"complete"}
    first = runs.iloc[0]
    assert first["plugin"] == "ToyPlugin" and first["device"] == "cpu"
    assert first["torch_version"] and first["host"] and first["warpbench_version"]
    assert len(store.label_scores()) == 2 * (6 + 4) * 2  # two labels per pair
    assert set(store.datasets()["dataset"]) == {"toy-a", "toy-b"}


def test_rerunning_the_same_plan_recomputes_nothing(setup):
    registry, config, store = setup
    run(registry, config, store, ["toy-shift"], ["toy-a", "toy-b"])
    before = count(store, "SELECT count(*) FROM pairs")
    summary = run(registry, config, store, ["toy-shift"], ["toy-a", "toy-b"])
    assert summary.runs_done == 0 and summary.runs_up_to_date == 2
    assert count(store, "SELECT count(*) FROM pairs") == before
    assert count(store, "SELECT count(*) FROM runs") == 2


class InterruptAfter(InProcessExecutor):
    """Simulates Ctrl-C arriving while the third pair is being computed."""

    def __init__(self, pairs):
        super().__init__("cpu")
        self.pairs = pairs

    def evaluate(self, work):
        for index, result in enumerate(super().evaluate(work)):
            if index == self.pairs:
                raise KeyboardInterrupt
            yield result


def test_an_interrupted_run_keeps_finished_pairs_and_resumes(setup):
    registry, config, store = setup
    plan = make_plan(registry, config, ["toy-shift"], ["toy-a"])
    with pytest.raises(KeyboardInterrupt):
        Scheduler(registry, store, InterruptAfter(2), progress=False).run(plan)
    assert count(store, "SELECT count(*) FROM pairs") == 2
    assert store.runs()["status"].tolist() == ["interrupted"]
    assert store.leaderboard().empty  # only complete runs are ranked

    summary = run(registry, config, store, ["toy-shift"], ["toy-a"])
    assert summary.pairs_ok == 4  # only the missing ones
    assert count(store, "SELECT count(*) FROM pairs") == 6
    assert store.runs()["status"].tolist() == ["complete"]
    assert store.leaderboard()["pairs"].tolist() == [6]


@pytest.mark.parametrize(
    "method, error",
    [
        ("toy-raises", "RuntimeError: deliberate failure"),
        ("toy-nan", "invalid field: 1 of"),
        ("toy-wrong-shape", "invalid field: expected shape (3, 12, 14, 10)"),
        ("toy-hangs", "timed out after 0.5 s"),
    ],
)
def test_a_failing_pair_is_recorded_and_the_run_goes_on(setup, method, error):
    registry, config, store = setup
    summary = run(registry, config, store, [method, "toy-shift"], ["toy-b"], time_limit=0.5)
    assert summary.pairs_failed == 4 and summary.pairs_ok == 4
    pairs = store.pairs()
    runs = store.runs().set_index("run_id")
    failed = pairs[pairs["run_id"].map(runs["method"]) == method]
    assert (failed["status"] == "failed").all()
    assert all(error in e for e in failed["error"]), failed["error"].tolist()
    board = store.leaderboard().set_index("method")
    assert board.loc["toy-shift", "pairs"] == 4
    assert board.loc[method, "failed"] == 4


def test_failed_pairs_are_retried_on_the_next_run(setup):
    registry, config, store = setup
    run(registry, config, store, ["toy-raises"], ["toy-b"])
    run(registry, config, store, ["toy-raises"], ["toy-b"])
    assert count(store, "SELECT max(attempt) FROM pairs") == 2
    assert len(store.pairs()) == 4  # the view shows each pair's latest attempt once


def test_a_dataset_that_cannot_be_built_is_skipped_with_its_reason(setup):
    registry, config, _ = setup
    plan = make_plan(registry, config, ["toy-shift"], ["toy-a", "missing"])
    assert "not-installed" in plan.unavailable["missing"]
    assert {r.dataset for r in plan.runs} == {"toy-a"}


def test_a_method_that_cannot_run_here_is_set_aside_with_its_reason(setup):
    registry, config, _ = setup
    toy = type(registry.methods["toy-shift"])

    class Missing(toy):
        name = "toy-missing"

        def availability(self):
            return False, "needs the package nothere"

    class Broken(toy):
        name = "toy-broken"

        def availability(self):
            raise OSError("probe failed")

    registry.methods.update({"toy-missing": Missing(), "toy-broken": Broken()})
    plan = make_plan(registry, config, ["toy-missing", "toy-broken", "toy-shift"], ["toy-a"])
    assert plan.unavailable_methods["toy-missing"] == "needs the package nothere"
    assert "'toy-broken'" in plan.unavailable_methods["toy-broken"]
    assert "OSError: probe failed" in plan.unavailable_methods["toy-broken"]
    assert {r.method for r in plan.runs} == {"toy-shift"}


def test_an_unknown_method_or_preset_is_refused_by_name(setup):
    registry, config, _ = setup
    with pytest.raises(ValueError, match="no method 'nope'"):
        make_plan(registry, config, ["nope"], ["toy-a"])
    with pytest.raises(ValueError, match="no preset 'fast'"):
        make_plan(registry, config, ["toy-shift:fast"], ["toy-a"])


def test_in_domain_is_a_trained_run_tested_on_its_training_dataset():
    assert in_domain("toy-a", "toy-a") is True
    assert in_domain("toy-a", "toy-b") is False
    assert in_domain(None, "toy-a") is None  # not trained


def test_a_run_resumed_on_the_last_release_store_scores_nothing_it_already_has(tmp_path):
    """Same datasets.yaml, methods and seed as the release used: every configuration whose method
    version is unchanged is found complete, so nothing of it is scored; the fingerprints and config
    keys are what that release computed. The release's VoxelMorph training (method version 1) is
    not reused by version 2, whose recipe trains other weights (issue 16)."""
    path = copy_release_store(tmp_path)
    store = Store(path)
    pairs = count(store, "SELECT count(*) FROM pairs")
    registry = load_registry()
    plan = make_plan(registry, load_config(tmp_path / "datasets.yaml"),
                     ["identity", "affine"], ["fixture-a", "fixture-b"])
    assert len(plan.runs) == 4 and not plan.unavailable and not plan.unavailable_methods
    summary = Scheduler(registry, store, InProcessExecutor("cpu"), progress=False).run(plan)
    # identity is found complete on both datasets; affine's version 2 (issue 15: its LNCC window
    # in mm) is a new configuration, scored anew beside the release's version-1 runs.
    assert summary.runs_up_to_date == 2 and summary.runs_done == 2
    assert not summary.failures and not summary.skipped
    assert count(store, "SELECT count(*) FROM pairs") == pairs + summary.pairs_ok
    assert count(store, "SELECT count(*) FROM runs") == 8
    assert set(summary.run_ids) < set(store.leaderboard()["run_id"])
    stored = store.trainings()
    assert stored["method_version"].tolist() == ["1"]
    voxelmorph = registry.methods["voxelmorph"]
    assert voxelmorph.version != "1"
    key = training_key(voxelmorph, "default", plan.datasets["fixture-a"], 0)
    assert key not in set(stored["training_key"])
