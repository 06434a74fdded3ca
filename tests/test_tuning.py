"""Equal-budget tuning (`warpbench tune`): seeded trials, validation pairs only (asserted),
resuming after Ctrl-C, search spaces checked, the tuned preset run like any other, and the
instrumentation page's comparison of literature, default and tuned."""

import json
import shutil
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import REPO
from toy_plugins import ToyDataset, ToyLearner
from warpbench import Method, plugins as plugin_loading
from warpbench.cli import main
from warpbench.cli.shared import INTERRUPTED
from warpbench.config import build_dataset, load_config
from warpbench.executors import InProcessExecutor
from warpbench.hookspecs import hookimpl
from warpbench.options import OptionsError
from warpbench.search_space import Choice, FloatRange, IntRange, check_space
from warpbench.store import SCHEMA_VERSION, Store
from warpbench.store.schema import KEYS
from warpbench import tuning
from warpbench.tuning import Budget, SplitLeak, Tuner, TuningError

FIXTURES = Path(__file__).parent / "fixtures"

CONFIG = """
datasets:
  toy-a: {plugin: toy-unique, subjects: 9, split: {train: 2, val: 3, test: 4}, pairs: {test: 4}}
  toy-no-val: {plugin: toy-unique, subjects: 6, split: {train: 2, val: 0, test: 4},
               pairs: {test: 2}}
suites:
  tune-all:
    methods: [toy-tunable, toy-tunable:default, toy-steps, toy-fixed]
    datasets: [toy-a]
    seed: 3
"""


class UniqueToyDataset(ToyDataset):
    """The toy boxes, each subject's image its own (so a registered image names its subject)."""

    kind = "toy-unique"

    def load(self, subject_id):
        subject = super().load(subject_id)
        subject.image += int(subject_id[1:]) * 1e-3
        return subject


class TunableShift(Method):
    """A constant field along each axis; how far decides the Dice, so there is an optimum.
    Records every pair of images it registers (as the bytes of the two images)."""

    name = "toy-tunable"
    family = "baseline"
    presets = {"default": {"shift": 0.0, "spread": 1.0},
               "literature": {"shift": 1.5, "spread": 1.0}}
    search_space = {"shift": FloatRange(-2.0, 2.0), "spread": Choice(0.5, 1.0)}

    def __init__(self):
        self.seen: list[tuple[bytes, bytes]] = []
        self.interrupt_at = None  # a simulated Ctrl-C at this call of register

    def register(self, fixed, moving, params, device):
        self.seen.append((np.asarray(fixed).tobytes(), np.asarray(moving).tobytes()))
        if self.interrupt_at is not None and len(self.seen) == self.interrupt_at:
            raise KeyboardInterrupt
        field = torch.zeros((3, *fixed.shape), device=device)
        field[0] = params["shift"] * params["spread"]
        return field


class StepsShift(TunableShift):
    """The same, its cost in registration seconds growing with an integer parameter."""

    name = "toy-steps"
    presets = {"default": {"shift": 0.0, "spread": 1.0, "steps": 1}}
    search_space = {"shift": FloatRange(-2.0, 2.0), "steps": IntRange(1, 3)}


class OffsetShift(TunableShift):
    """The same, its default outside its space, so every trial is sampled and two seeds find
    different best parameters."""

    name = "toy-tunable-offset"
    presets = {"default": {"shift": 0.0, "spread": 1.0}}
    search_space = {"shift": FloatRange(0.5, 2.0)}


class FixedMethod(Method):
    name = "toy-fixed"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        return torch.zeros((3, *fixed.shape), device=device)


class TunableLearner(ToyLearner):
    """The toy learner with a search space over its training steps, capped for tuning."""

    name = "toy-tunable-learner"
    presets = {"default": {"steps": 5}, "literature": {"steps": 2}}
    search_space = {"steps": IntRange(1, 3)}
    tuning_budget = {"steps": 3}


class WeightedLearner(TunableLearner):
    """A tunable learner whose search space leaves the training budget alone."""

    name = "toy-weighted-learner"
    presets = {"default": {"steps": 5, "weight": 1.0}}
    search_space = {"weight": FloatRange(0.5, 2.0)}


class ShiftingLearner(TunableLearner):
    """A tunable learner whose field is toy-tunable's (its ``shift`` parameter along axis 0), so
    its trials score apart as toy-tunable's do."""

    name = "toy-shifting-learner"
    presets = {"default": {"steps": 1, "shift": 0.0}}
    search_space = {"shift": FloatRange(-2.0, 2.0)}
    tuning_budget = {"steps": 1}

    def register(self, fixed, moving, params, device, *, weights):
        field = torch.zeros((3, *fixed.shape), device=device)
        field[0] = params["shift"]
        return field


class PeekingLearner(TunableLearner):
    """A learner that loads a test subject while it trains (getting its id round the guard)."""

    name = "toy-peeking-learner"

    def train(self, job):
        job.dataset.load(job.dataset._dataset.subjects("test")[0])


class Plugin:
    def __init__(self):
        self.tunable, self.steps, self.learner = TunableShift(), StepsShift(), TunableLearner()
        self.offset = OffsetShift()

    @hookimpl
    def register_methods(self, register):
        for method in (self.tunable, self.steps, FixedMethod(), self.learner, PeekingLearner(),
                       WeightedLearner(), ShiftingLearner(), self.offset):
            register(method)

    @hookimpl
    def register_datasets(self, register):
        register(UniqueToyDataset)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy plugin, loaded by every registry the commands load, in a folder with CONFIG; the
    commands compute in this process, where the plugin is (a pool worker loads installed
    plugins only)."""
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    plugin = Plugin()
    monkeypatch.setattr(plugin_loading, "load_registry",
                        partial(plugin_loading.load_registry, extra_plugins=[plugin]))
    monkeypatch.setenv("WARPBENCH_EXECUTOR", "inprocess")
    monkeypatch.chdir(tmp_path)
    return plugin


def tuner(store_path, seed=0, **kwargs):
    registry = plugin_loading.load_registry()
    return registry, Tuner(registry, Store(store_path), InProcessExecutor("cpu"), seed=seed,
                           progress=False, **kwargs)


def dataset(registry, name="toy-a"):
    return build_dataset(load_config("datasets.yaml"), name, registry.dataset_kinds)


def sampled(store_path) -> list[tuple[int, str, str, float | None]]:
    trials = Store(store_path).tuning_trials()
    return [(t.trial, t.state, t.sampled, None if t.value != t.value else round(t.value, 12))
            for t in trials.itertuples()]


# --- the protocol: seeded, validation only, resumable --------------------------------------------
def test_the_same_seed_gives_the_same_trials_and_another_seed_other_ones(toy, monkeypatch):
    monkeypatch.setattr(tuning, "STARTUP_TRIALS", 2)  # so that TPE models most of the trials
    outcomes = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        registry, tune = tuner(f"{name}.duckdb", seed=seed)
        outcomes[name] = tune.tune("toy-tunable", dataset(registry), Budget(trials=4), pairs=3)
    assert sampled("a.duckdb") == sampled("b.duckdb")
    assert len(sampled("a.duckdb")) == 4
    assert [s for _, _, s, _ in sampled("a.duckdb")] != [s for _, _, s, _ in sampled("c.duckdb")]
    first = json.loads(sampled("a.duckdb")[0][2])
    assert first == {"shift": 0.0, "spread": 1.0}  # trial 0 is the default preset
    assert outcomes["a"].best_params == outcomes["b"].best_params
    assert outcomes["a"].best_value >= sampled("a.duckdb")[0][3]  # never worse than default


def test_no_test_pair_is_ever_registered_during_tuning(toy):
    registry, tune = tuner("wb.duckdb")
    data = dataset(registry)
    tune.tune("toy-tunable", data, Budget(trials=3), pairs=6)
    images = {s: data.load(s).image.tobytes() for s in data.all_subjects()}
    registered = {next(s for s, b in images.items() if b == image)
                  for pair in toy.tunable.seen for image in pair}
    assert registered and registered <= set(data.subjects("val"))
    assert not registered & set(data.subjects("test"))
    stored = Store("wb.duckdb").tuning_pairs(Store("wb.duckdb").tunings()["tuning_key"][0])
    assert set(stored["fixed"]) | set(stored["moving"]) <= set(data.subjects("val"))


def test_a_pair_with_a_test_subject_is_refused_before_anything_is_registered(toy, monkeypatch):
    registry, tune = tuner("wb.duckdb")
    data = dataset(registry)
    test_subject = data.subjects("test")[0]
    leaking = [tuning.Pair(data.subjects("val")[0], test_subject)]
    monkeypatch.setattr(tuning, "validation_pairs", lambda dataset, count: leaking)
    with pytest.raises(SplitLeak, match=f"has '{test_subject}', not a validation subject"):
        tune.tune("toy-tunable", data, Budget(trials=2))
    assert toy.tunable.seen == []


def test_a_method_reaching_for_the_test_split_while_tuning_is_stopped(toy):
    registry, tune = tuner("wb.duckdb")
    with pytest.raises(SplitLeak, match="tuning reached the test split"):
        tune.tune("toy-peeking-learner", dataset(registry), Budget(trials=1))
    guarded = tuning.ValidationOnly(dataset(registry))
    with pytest.raises(SplitLeak):
        guarded.pairs("test")
    assert guarded.pairs("val") == dataset(registry).pairs("val")


def test_ctrl_c_stops_tune_with_130_and_the_same_command_resumes_without_repeating_trials(
        toy, capsys):
    argv = ["tune", "toy-tunable", "--dataset", "toy-a", "--trials", "5", "--pairs", "3",
            "--quiet"]
    toy.tunable.interrupt_at = 8  # the second pair of trial 2
    assert main(argv) == 130
    assert capsys.readouterr().err.endswith(f"{INTERRUPTED}\n")
    store = Store("results/warpbench.duckdb")
    assert store.tunings()["status"].tolist() == ["interrupted"]
    assert store.tuning_trials()["state"].tolist() == ["complete", "complete", "interrupted"]
    toy.tunable.interrupt_at = None
    toy.tunable.seen.clear()
    assert main(argv) == 0
    # Trials 0 and 1 are not registered again, nor the pair trial 2 had scored: its other two
    # pairs and trials 3 and 4 (too few trials before them to prune) are.
    assert len(toy.tunable.seen) == 2 + 3 + 3
    resumed = sampled("results/warpbench.duckdb")

    shutil.move("results", "interrupted-results")
    assert main(argv) == 0  # the same tuning, never interrupted
    assert sampled("results/warpbench.duckdb") == resumed


def test_a_trial_whose_first_pairs_are_clearly_worse_is_pruned(toy, monkeypatch):
    monkeypatch.setattr(tuning, "PRUNE_STARTUP_TRIALS", 2)
    monkeypatch.setattr(tuning, "PRUNE_WARMUP_PAIRS", 1)
    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=8), pairs=4)
    trials = Store("wb.duckdb").tuning_trials()
    pruned = trials[trials["state"] == "pruned"]
    assert len(pruned) > 0 and (pruned["pairs_scored"] < 4).all()
    complete = trials[trials["state"] == "complete"]
    assert (complete["pairs_scored"] == 4).all()
    # What was pruned scored below what the tuning kept as its best.
    assert pruned["value"].max() < Store("wb.duckdb").tunings()["best_value"][0]


def test_a_learning_methods_trial_is_never_pruned_since_its_training_is_already_paid(
        toy, monkeypatch):
    monkeypatch.setattr(tuning, "PRUNE_STARTUP_TRIALS", 2)
    monkeypatch.setattr(tuning, "PRUNE_WARMUP_PAIRS", 1)
    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-shifting-learner", dataset(registry), Budget(trials=8), pairs=4)
    trials = Store("wb.duckdb").tuning_trials()
    assert set(trials["state"]) == {"complete"} and (trials["pairs_scored"] == 4).all()
    assert trials["value"].nunique() > 1  # the trials scored apart
    assert Store("wb.duckdb").tunings()["pruner"][0].startswith("none")


def test_a_budget_in_seconds_stops_once_spent_and_records_what_was_used(toy):
    registry, tune = tuner("wb.duckdb")
    outcome = tune.tune("toy-tunable", dataset(registry), Budget(seconds=0.05), pairs=3)
    row = Store("wb.duckdb").tunings().iloc[0]
    trials = Store("wb.duckdb").tuning_trials()
    assert row["used_seconds"] >= 0.05 and row["budget_seconds"] == 0.05
    assert row["used_seconds"] - trials["seconds"].iloc[-1] < 0.05  # the last one crossed it
    assert outcome.trials == len(trials) == row["used_trials"]


def test_a_larger_budget_goes_on_with_the_same_trials(toy):
    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=3), pairs=3)
    first = sampled("wb.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=5), pairs=3)
    assert sampled("wb.duckdb")[:3] == first and len(sampled("wb.duckdb")) == 5
    assert Store("wb.duckdb").tunings()["status"].tolist() == ["complete"]


# --- search spaces -----------------------------------------------------------------------------
@pytest.mark.parametrize("space, message", [
    ({"shfit": FloatRange(-1.0, 1.0)},
     "method 'toy-typo' search space: unknown parameter 'shfit'; known: shift, spread"),
    ({"shift": FloatRange(1.0, -1.0)}, "search space 'shift': low 1.0 is not below high -1.0"),
    ({"shift": FloatRange(0.0, 1.0, log=True)},
     "search space 'shift': a log scale needs a positive low, got 0.0"),
    ({"shift": Choice(1.0)}, "search space 'shift': a choice needs at least two options"),
    ({"shift": (0, 1)}, "search space 'shift': expected a FloatRange, IntRange or Choice"),
])
def test_a_broken_search_space_is_refused_naming_the_method_and_parameter(space, message):
    typo = type("Typo", (TunableShift,), {"name": "toy-typo", "search_space": space})()

    class TypoPlugin:
        @hookimpl
        def register_methods(self, register):
            register(typo)

    registry = plugin_loading.load_registry(extra_plugins=[TypoPlugin()])
    assert "toy-typo" not in registry.methods
    assert any(message in str(problem) for problem in registry.problems), registry.problems
    with pytest.raises(OptionsError, match="method 'toy-typo'"):
        check_space(typo)


def test_a_bound_the_methods_params_refuse_is_refused_when_the_plugin_registers():
    from warpbench_classical.greedy import GreedyMethod

    class Greedier(GreedyMethod):
        name = "greedier"
        search_space = {"learning_rate": FloatRange(0.0, 1.0)}  # PositiveFloat refuses 0

    problems = Greedier().check()
    assert problems == ["search space 'learning_rate' at 0.0: parameter 'learning_rate': must be "
                        "greater than 0, got 0.0"]


def test_the_classical_methods_and_the_peer_wrappers_declare_sound_search_spaces():
    from warpbench_ants.method import AntsSynMethod
    from warpbench_classical import DemonsMethod, GreedyMethod, SynMethod
    from warpbench_fireants.method import FireantsGreedyMethod, FireantsSynMethod

    for method in (GreedyMethod(), SynMethod(), DemonsMethod(), AntsSynMethod(),
                   FireantsGreedyMethod(), FireantsSynMethod()):
        assert method.search_space and method.check() == [], method.name
        check_space(method)


def test_a_learning_method_caps_every_trials_training_and_counts_its_seconds(toy):
    assert TunableLearner().check() == []
    uncapped = type("Uncapped", (TunableLearner,), {"tuning_budget": {}})()
    assert "a learning method caps each trial's training with tuning_budget" in \
        " ".join(uncapped.check())
    beyond = type("Beyond", (TunableLearner,), {"tuning_budget": {"steps": 2}})()
    assert TunableLearner().capped({"steps": 5}) == {"steps": 3}
    assert "search space 'steps' goes beyond its tuning_budget cap 2" in " ".join(beyond.check())

    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-tunable-learner", dataset(registry), Budget(trials=3), pairs=2)
    trials = Store("wb.duckdb").tuning_trials()
    steps = [json.loads(p)["steps"] for p in trials["params"]]
    assert max(steps) <= 3  # the default's 5 steps is capped as well
    assert (trials["training_seconds"] > 0).all()
    assert Store("wb.duckdb").tunings()["used_seconds"][0] == pytest.approx(
        (trials["seconds"] + trials["training_seconds"]).sum())
    assert {d for d, _ in toy.learner.trained} == {"toy-a"}  # trained on toy-a's train split


def test_a_learning_methods_tuned_preset_trains_under_the_default_budget_not_the_cap(toy):
    registry, tune = tuner("wb.duckdb")
    outcome = tune.tune("toy-weighted-learner", dataset(registry), Budget(trials=3), pairs=2)
    store = Store("wb.duckdb")
    assert {json.loads(p)["steps"] for p in store.tuning_trials()["params"]} == {3}
    best = json.loads(store.tuned_presets()["best_params"][0])
    assert best == outcome.best_params == {"steps": 5, **outcome.best_sampled}


# --- the command, the tuned preset, the suite ---------------------------------------------------
def test_the_tuned_preset_is_a_preset_run_names_and_its_run_is_reproducible_from_the_store(
        toy, capsys, monkeypatch):
    assert main(["tune", "toy-tunable", "--dataset", "toy-a", "--trials", "3", "--pairs", "2",
                 "--quiet"]) == 0
    out = capsys.readouterr()
    assert "preset toy-tunable:tuned@toy-a" in out.out
    assert "warpbench run --method toy-tunable:tuned@toy-a" in out.err
    assert main(["run", "--quiet", "--executor", "inprocess", "--dataset", "toy-a", "--method",
                 "toy-tunable:tuned@toy-a", "--method", "toy-tunable", "--method",
                 "toy-tunable:literature"]) == 0
    store = Store("results/warpbench.duckdb")
    board = store.leaderboard()
    assert set(board["preset"]) == {"tuned@toy-a", "default", "literature"}
    run = store.runs().set_index("preset").loc["tuned@toy-a"]
    assert json.loads(run["params"]) == json.loads(store.tuned_presets()["best_params"][0])
    assert run["pairs_ok"] == 4  # the test pairs, as any run
    # The comparison on the instrumentation-bias page, with paired tests between the presets.
    from warpbench_leaderboard import tuned

    comparison = tuned.preset_comparison(board, store.pair_scores())
    assert comparison.scores["preset"].tolist() == ["literature", "default", "tuned@toy-a"]
    assert len(comparison.tests) == 3 and (comparison.tests["n"] == 4).all()
    assert comparison.tests["t_p_holm"].ge(comparison.tests["t_p"]).all()
    history = tuned.tuning_history(store.tuning_trials())
    assert history["best_so_far"].is_monotonic_increasing and len(history) == 3
    assert len(tuned.tuning_history_figure(history).data) == 2
    assert len(tuned.comparison_figure(comparison.scores).data) == 3
    # ... and the page itself lays them out.
    monkeypatch.setenv("WARPBENCH_DB", str(Path("results/warpbench.duckdb").resolve()))
    page = AppTest.from_function(_instrumentation_page, default_timeout=60).run()
    assert not page.exception
    headers = [h.value for h in page.header]
    assert {"As published, as shipped, as tuned", "Tuning history"} <= set(headers)
    frames = [f.value for f in page.dataframe]
    assert any({"a", "b", "wilcoxon_p_holm"} <= set(f.columns) for f in frames)
    assert any("used_trials" in f.columns for f in frames)
    assert len(page.get("plotly_chart")) == 3  # compared presets, preset spread, history


def _instrumentation_page() -> None:
    from warpbench_leaderboard import navigation

    navigation.main(start_page="instrumentation")


def test_tune_suite_gives_every_tunable_method_the_same_budget(toy, capsys):
    assert main(["tune", "--suite", "tune-all", "--trials", "2", "--pairs", "2", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "not tuning toy-fixed: it declares no search space" in err
    tunings = Store("results/warpbench.duckdb").tunings()
    assert sorted(tunings["method"]) == ["toy-steps", "toy-tunable"]
    assert (tunings["used_trials"] == 2).all() and (tunings["budget_trials"] == 2).all()
    assert (tunings["seed"] == 3).all()  # the suite's


@pytest.mark.parametrize("argv, message", [
    (["tune", "toy-fixed", "--dataset", "toy-a"],
     "error: method 'toy-fixed' declares no search space, so it cannot be tuned (tunable: "
     "ants-syn, demons, fireants-greedy, fireants-syn, greedy, lkunet, syn, toy-peeking-learner, "),
    (["tune", "toy-tunable", "--dataset", "toy-no-val"],
     "error: dataset 'toy-no-val' has 0 validation subject(s): tuning registers only validation "
     "pairs"),
    (["tune", "toy-tunabel", "--dataset", "toy-a"], "error: no method 'toy-tunabel'"),
])
def test_tune_refuses_what_it_cannot_tune_in_one_line(toy, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_the_commands_defaults_are_the_protocols():
    from warpbench.cli.tuning import tune

    defaults = {option.name: option.default for option in tune.params}
    assert defaults["pairs"] == tuning.DEFAULT_PAIRS
    assert defaults["max_folding"] == tuning.DEFAULT_MAX_FOLDING


def test_both_budgets_at_once_is_a_usage_error(toy, capsys):
    assert main(["tune", "toy-tunable", "--dataset", "toy-a", "--trials", "3",
                 "--budget-seconds", "5"]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(TuningError):
        Budget()


# --- the store ------------------------------------------------------------------------------------
def test_the_last_releases_store_upgrades_to_the_tuning_tables(tmp_path):
    path = Path(shutil.copy(FIXTURES / "release-v2.duckdb", tmp_path / "release.duckdb"))
    store = Store(path)
    assert store.tunings().empty and store.tuned_presets().empty  # read as it stands
    runs = store.runs()
    store.initialise()
    with duckdb.connect(str(path), read_only=True) as con:
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),) and SCHEMA_VERSION >= 5
    assert Store(path).tuning_trials().empty and Store(path).tuned_presets().empty
    assert len(Store(path).runs()) == len(runs)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_and_merge_carry_the_tunings_stored_once_and_the_copy_resumes(toy, tmp_path,
                                                                             fmt):
    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=2), pairs=3)
    written = {p.name for p in Store("wb.duckdb").export_tables(tmp_path / "tables", fmt)}
    assert {f"{t}.{fmt}" for t in ("tunings", "tuning_trials", "tuning_pairs")} <= written
    added = Store("copy.duckdb").merge_from([tmp_path / "tables"])
    assert (added["tunings"], added["tuning_trials"], added["tuning_pairs"]) == (1, 2, 6)
    again = Store("copy.duckdb").merge_from([tmp_path / "tables", "wb.duckdb"])
    assert (again["tunings"], again["tuning_trials"], again["tuning_pairs"]) == (0, 0, 0)
    assert sampled("copy.duckdb") == sampled("wb.duckdb")
    for table in ("tunings", "tuning_trials", "tuning_pairs"):
        with duckdb.connect("copy.duckdb", read_only=True) as con:
            keys = con.execute(f"SELECT count(*), count(DISTINCT ({', '.join(KEYS[table])})) "
                               f"FROM {table}").fetchone()
        assert keys[0] == keys[1], table
    assert Store("copy.duckdb").tuned_presets()["best_params"].tolist() == \
        Store("wb.duckdb").tuned_presets()["best_params"].tolist()
    toy.tunable.seen.clear()
    registry, tune = tuner("copy.duckdb")  # and the copy resumes the tuning
    tune.tune("toy-tunable", dataset(registry), Budget(trials=3), pairs=3)
    assert sampled("copy.duckdb")[:2] == sampled("wb.duckdb") and len(toy.tunable.seen) == 3


def test_a_tuning_that_went_on_elsewhere_merges_as_its_progress_either_way(toy, tmp_path):
    """A copy that finished more trials, or the interrupted trial, is the same tuning further
    on: merged in, the output takes its state; merged the other way, nothing changes."""
    toy.tunable.interrupt_at = 5  # the second pair of trial 1
    registry, tune = tuner("early.duckdb")
    with pytest.raises(KeyboardInterrupt):
        tune.tune("toy-tunable", dataset(registry), Budget(trials=4), pairs=3)
    toy.tunable.interrupt_at = None
    shutil.copy("early.duckdb", "late.duckdb")
    registry, tune = tuner("late.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=4), pairs=3)

    out = Store(tmp_path / "out.duckdb")
    out.merge_from(["early.duckdb"])
    assert out.tunings()["status"].tolist() == ["interrupted"] and out.tuned_presets().empty
    added = out.merge_from(["late.duckdb"])
    # trials 2 and 3 are new, and trial 1's other two pairs; trial 1 is finished, the tuning too
    assert (added["tunings"], added["tuning_trials"], added["tuning_pairs"]) == (0, 2, 8)
    late = Store("late.duckdb")
    key = late.tunings()["tuning_key"][0]
    assert out.tunings().equals(late.tunings()) and not out.tuned_presets().empty
    assert out.tuning_trials(key).equals(late.tuning_trials(key))
    assert out.tuning_pairs(key).equals(late.tuning_pairs(key))
    assert sum(out.merge_from(["early.duckdb"]).values()) == 0  # an earlier state adds nothing
    assert out.tunings().equals(late.tunings())
    both = Store(tmp_path / "both.duckdb")  # both at once, in one transaction, in either order
    both.merge_from(["early.duckdb", "late.duckdb", "early.duckdb"])
    assert both.tunings().equals(out.tunings()) and sampled(both.path) == sampled(out.path)


@pytest.mark.parametrize("tamper, says", [
    ("UPDATE tunings SET method_version = 'forged'",
     "its row differs: method_version '"),
    ("UPDATE tunings SET best_value = 0.999",
     "its row differs: best_value"),
    ("UPDATE tuning_trials SET value = 0.999 WHERE trial = 1",
     "trial 1 differs: value"),
    ("UPDATE tuning_trials SET sampled = '{\"shift\": 1.0, \"spread\": 1.0}' WHERE trial = 0",
     "trial 0 differs: sampled"),
    ("UPDATE tuning_pairs SET mean_dice = 0.999 WHERE trial = 0 AND position = 0",
     "of trial 0 differs: mean_dice"),
    ("INSERT INTO tuning_pairs SELECT * REPLACE ('s9' AS moving) FROM tuning_pairs "
     "WHERE trial = 0 AND position = 0",
     "<- s9 of trial 0 is in the source but not in this trial, finished in the output"),
    ("DELETE FROM tuning_pairs WHERE trial = 1 AND position = 2",
     "of trial 1 is in the output but not in the source, which finished the trial too"),
])
def test_a_source_that_tells_a_tuning_otherwise_is_refused_whole(toy, tmp_path, capsys, tamper,
                                                                 says):
    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=2), pairs=3)
    out = tmp_path / "out.duckdb"
    Store(out).merge_from(["wb.duckdb"])
    before = Store(out).tuning_trials()
    shutil.copy("wb.duckdb", "tampered.duckdb")
    with duckdb.connect("tampered.duckdb") as con:
        con.execute(tamper)
    assert main(["merge", "tampered.duckdb", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    key = Store("wb.duckdb").tunings()["tuning_key"][0]
    assert err.startswith(f"error: tampered.duckdb: refused, it contradicts {out} on tuning "
                          f"{key} (toy-tunable on toy-a): ") and err.count("\n") == 1, err
    assert says in err and "nothing of tampered.duckdb was merged" in err
    assert Store(out).tuning_trials().equals(before)


def test_a_source_that_repeats_a_trial_is_refused(toy, capsys):
    registry, tune = tuner("wb.duckdb")
    tune.tune("toy-tunable", dataset(registry), Budget(trials=1), pairs=2)
    with duckdb.connect("wb.duckdb") as con:
        con.execute("CREATE TABLE doubled AS SELECT * FROM tuning_trials UNION ALL "
                    "SELECT * REPLACE (0.5 AS value) FROM tuning_trials")
        con.execute("DROP TABLE tuning_trials")
        con.execute("ALTER TABLE doubled RENAME TO tuning_trials")
    assert main(["merge", "wb.duckdb", "-o", "out.duckdb"]) == 2
    assert "table tuning_trials has 2 rows for tuning_key " in capsys.readouterr().err
    assert not Path("out.duckdb").exists()


# --- a tuned run, replayed; a preset tuned again -------------------------------------------------
def _tuned_runs(store: Store, method: str = "toy-tunable-offset"):
    runs = store.runs()
    return runs[(runs["method"] == method) & (runs["preset"] == "tuned@toy-a")] \
        .sort_values("started_at")


def test_a_tuned_run_replays_with_its_stored_parameters_to_the_same_score(toy, capsys):
    from warpbench import replay

    assert main(["tune", "toy-tunable-offset", "--dataset", "toy-a", "--trials", "2", "--pairs",
                 "2", "--quiet"]) == 0
    assert main(["run", "--quiet", "--dataset", "toy-a", "--method",
                 "toy-tunable-offset:tuned@toy-a"]) == 0
    store = Store("results/warpbench.duckdb")
    run = _tuned_runs(store).iloc[0].to_dict()
    params = json.loads(run["params"])
    vars(toy.offset).pop("presets")  # what `warpbench run` added to the plugin's instance
    registry = plugin_loading.load_registry()  # no tuned presets added: none is needed
    assert "tuned@toy-a" not in registry.methods["toy-tunable-offset"].presets
    again = replay.prepare(registry, load_config("datasets.yaml"), run)
    assert again.params == params
    for stored in store.pairs(run["run_id"]).itertuples():
        pair = again.register(stored.fixed, stored.moving, "cpu")
        assert pair.result.status == "ok"
        assert pair.result.mean_dice == pytest.approx(stored.mean_dice, abs=1e-9)
        assert np.allclose(pair.result.displacement[0], params["shift"] * params["spread"])
    refused = {**run, "params": json.dumps({**params, "shfit": 1.0})}
    with pytest.raises(replay.ReplayError, match="used tuned parameters that the installed "
                                                 "`toy-tunable-offset` refuses: .*'shfit'"):
        replay.prepare(registry, load_config("datasets.yaml"), refused)


def test_a_preset_tuned_again_shows_only_its_newest_definitions_run_on_the_leaderboard(toy):
    from warpbench import replay

    common = ["--dataset", "toy-a", "--trials", "2", "--pairs", "2", "--quiet"]
    run_tuned = ["run", "--quiet", "--dataset", "toy-a", "--method",
                 "toy-tunable-offset:tuned@toy-a", "--method", "toy-tunable-offset"]
    store = Store("results/warpbench.duckdb")
    assert main(["tune", "toy-tunable-offset", *common, "--seed", "0"]) == 0
    assert main(run_tuned) == 0
    first = store.tuned_presets()["best_params"].tolist()
    assert main(["tune", "toy-tunable-offset", *common, "--seed", "1"]) == 0
    newest = store.tuned_presets()["best_params"].tolist()
    assert len(store.tunings()) == 2 and len(newest) == 1 and newest != first
    assert main(run_tuned) == 0
    runs = _tuned_runs(store)
    assert runs["params"].tolist() == [*first, *newest]  # both runs stay in the store

    board = store.leaderboard()
    mine = board[board["method"] == "toy-tunable-offset"]
    assert sorted(mine["preset"]) == ["default", "tuned@toy-a"]  # one row for the tuned preset
    assert mine.set_index("preset").loc["tuned@toy-a", "run_id"] == runs["run_id"].iloc[-1]
    assert set(store.pair_scores()["run_id"]) <= set(board["run_id"])
    # The past definition's run still replays, with its own parameters, not the preset's now.
    assert toy.offset.presets["tuned@toy-a"] == json.loads(newest[0])
    old = runs.iloc[0].to_dict()
    again = replay.prepare(plugin_loading.load_registry(), load_config("datasets.yaml"), old)
    assert again.params == json.loads(first[0])


# --- the executor ------------------------------------------------------------------------------
class ShuffledExecutor(InProcessExecutor):
    """Hands a run's results back in another order than its pairs', as workers may."""

    def evaluate(self, work):
        yield from reversed(list(super().evaluate(work)))


def test_a_trial_takes_its_results_in_pair_order_whatever_order_they_come_in(toy, monkeypatch):
    monkeypatch.setattr(tuning, "STARTUP_TRIALS", 2)
    monkeypatch.setattr(tuning, "PRUNE_STARTUP_TRIALS", 2)
    monkeypatch.setattr(tuning, "PRUNE_WARMUP_PAIRS", 1)
    outcomes = {}
    for name, executor in [("ordered", InProcessExecutor("cpu")),
                           ("shuffled", ShuffledExecutor("cpu"))]:
        registry = plugin_loading.load_registry()
        tune = Tuner(registry, Store(f"{name}.duckdb"), executor, progress=False)
        outcomes[name] = tune.tune("toy-tunable", dataset(registry), Budget(trials=8), pairs=4)
    assert sampled("shuffled.duckdb") == sampled("ordered.duckdb")
    assert "pruned" in {state for _, state, _, _ in sampled("ordered.duckdb")}
    keys = {name: Store(f"{name}.duckdb").tunings()["tuning_key"][0] for name in outcomes}
    columns = ["trial", "fixed", "moving", "position", "status", "mean_dice"]
    assert Store("shuffled.duckdb").tuning_pairs(keys["shuffled"])[columns].equals(
        Store("ordered.duckdb").tuning_pairs(keys["ordered"])[columns])


def test_tune_takes_the_executor_options_of_run(toy, capsys):
    from warpbench.cli.evaluation import run
    from warpbench.cli.tuning import tune

    def options(command):
        return {o.name: (o.default, o.envvar) for o in command.params
                if o.name in ("device", "executor", "workers", "memory_limit", "address")}

    assert options(tune) == options(run) and options(tune)["executor"][0] == "pool"
    assert main(["tune", "toy-tunable", "--dataset", "toy-a", "--executor", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: no executor 'nope' (registered: ")
    assert main(["tune", "toy-tunable", "--dataset", "toy-a", "--executor", "inprocess",
                 "--workers", "2"]) == 2
    assert "executor 'inprocess' does not take --workers" in capsys.readouterr().err


# --- real data ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_greedy_tunes_on_hippocampus_validation_pairs(hippocampus_root, tmp_path):
    registry = plugin_loading.load_registry()
    data = build_dataset(load_config(REPO / "datasets.yaml"), "hippocampus",
                         registry.dataset_kinds)
    tune = Tuner(registry, Store(tmp_path / "wb.duckdb"), InProcessExecutor("cpu"),
                 progress=False)
    outcome = tune.tune("greedy", data, Budget(trials=2), pairs=2)
    pairs = Store(tmp_path / "wb.duckdb").tuning_pairs(outcome.key)
    assert set(pairs["fixed"]) | set(pairs["moving"]) <= set(data.subjects("val"))
    assert (pairs["status"] == "ok").all() and pairs["mean_dice"].between(0.5, 1).all()
    assert outcome.best_value is not None and outcome.trials == 2


@pytest.mark.slow
def test_trials_run_through_an_executor_with_worker_processes(tmp_path, monkeypatch, capsys):
    """Item 6: the pool executor registers a trial's pairs in its worker processes."""
    monkeypatch.chdir(tmp_path)
    Path("datasets.yaml").write_text("""
datasets:
  tiny:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    split: {train: 1, val: 3, test: 2}
    pairs: {test: 2}
""")
    assert main(["tune", "greedy", "--dataset", "tiny", "--trials", "2", "--pairs", "2",
                 "--executor", "pool", "--quiet"]) == 0
    assert "worker process" in capsys.readouterr().err
    trials = Store("results/warpbench.duckdb").tuning_trials()
    assert trials["state"].tolist() == ["complete", "complete"]
    assert (trials["pairs_scored"] == 2).all()
