"""Training as a job of its own: the cache, resuming, failures, the domain-shift matrix and the
``warpbench train`` command, on a toy learning method whose training takes milliseconds."""

import json
from pathlib import Path

import duckdb
import pytest

from toy_plugins import TRAINING_CONFIG, ToyLearningPlugin, ToyPlugin
from warpbench import plugins as plugin_loading
from warpbench.cli import main
from warpbench.config import load_config
from warpbench.executors import InProcessExecutor
from warpbench.scheduler import Scheduler, make_plan
from warpbench.store import Store


@pytest.fixture
def setup(tmp_path):
    config_path = tmp_path / "datasets.yaml"
    config_path.write_text(TRAINING_CONFIG)
    toy = ToyLearningPlugin()
    registry = plugin_loading.load_registry(extra_plugins=[ToyPlugin(), toy])
    return registry, load_config(config_path), Store(tmp_path / "results" / "wb.duckdb"), toy.learner


def run(registry, config, store, methods, datasets, train_on=None, seed=0):
    plan = make_plan(registry, config, methods, datasets, train_on)
    scheduler = Scheduler(registry, store, InProcessExecutor("cpu"), seed=seed, progress=False)
    return scheduler.run(plan)


def rows(store, sql):
    with duckdb.connect(str(store.path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_the_matrix_records_training_dataset_domain_labels_and_supervision(setup):
    registry, config, store, learner = setup
    names = ["toy-a", "toy-b", "toy-renamed"]
    summary = run(registry, config, store, ["toy-learner", "toy-learner:labels", "toy-shift"],
                  names)
    # Trained on a, b and renamed (each has train subjects), per preset; every network is tested
    # on all three, renamed's labels being another protocol than a's and b's.
    assert summary.trainings_done == 6 and summary.trainings_failed == 0
    assert summary.runs_done == 2 * 3 * 3 + 3 and summary.pairs_failed == 0
    runs = store.runs()
    learned = runs[runs["method"] == "toy-learner"]
    matrix = {(r.preset, r.train_dataset, r.dataset): (r.in_domain, r.same_labels)
              for r in learned.itertuples()}
    renamed = "toy-renamed".__eq__
    assert matrix == {(p, t, e): (t == e, renamed(t) == renamed(e))
                      for p in ("default", "labels") for t in names for e in names}
    assert learned.groupby("preset")["supervision"].agg(set).to_dict() == {
        "default": {"none"}, "labels": {"labels"}}  # the preset's, not the method's
    classical = runs[runs["method"] == "toy-shift"]
    assert classical["train_dataset"].isna().all() and classical["in_domain"].isna().all()
    assert classical["same_labels"].isna().all()
    # Every learning run registered with the weights of its own training.
    trainings = store.trainings().set_index("training_key")
    assert set(learned["training_key"]) == set(trainings.index)
    assert {Path(w) for w in trainings["weights"]} == learner.registered_with
    board = store.leaderboard()
    assert len(board[board["method"] == "toy-learner"]) == 18  # two presets: two configurations
    assert sorted(summary.run_ids) == sorted(runs["run_id"])


def test_a_complete_training_is_a_cache_hit_and_a_changed_key_retrains(setup, tmp_path):
    registry, config, store, learner = setup
    run(registry, config, store, ["toy-learner"], ["toy-a"])
    assert learner.trained == [("toy-a", 1)]
    (key,) = store.trainings()["training_key"]
    weights = tmp_path / "results" / "checkpoints" / "toy-learner" / key / "weights.json"
    assert store.training(key)["weights"] == str(weights) and weights.exists()

    # The same network tested on one more dataset: its weights come from the cache.
    summary = run(registry, config, store, ["toy-learner"], ["toy-a", "toy-b"], train_on=["toy-a"])
    assert learner.trained == [("toy-a", 1)]  # train() was not called again
    assert summary.trainings_cached == 1 and summary.runs_up_to_date == 1 and summary.runs_done == 1

    learner.presets = {**learner.presets, "default": {"steps": 6}}  # changed preset parameters
    run(registry, config, store, ["toy-learner"], ["toy-a"])
    run(registry, config, store, ["toy-learner"], ["toy-a"], seed=1)  # another seed
    changed = tmp_path / "changed.yaml"
    changed.write_text(TRAINING_CONFIG.replace("toy-a: {plugin: toy, subjects: 6",
                                               "toy-a: {plugin: toy, subjects: 7"))
    run(registry, load_config(changed), store, ["toy-learner"], ["toy-a"], seed=1)  # new fingerprint
    assert learner.trained == [("toy-a", 1)] * 4  # each from scratch, in its own folder
    assert store.trainings()["training_key"].nunique() == 4
    assert len(store.runs()) == 5  # each training's evaluation is a configuration of its own

    weights.unlink()  # weights gone: the row alone is no cache hit ...
    learner.presets = type(learner).presets
    run(registry, config, store, ["toy-learner"], ["toy-a"])
    assert len(learner.trained) == 4  # ... but every pair is scored: no weights needed
    plan = make_plan(registry, config, ["toy-learner"], ["toy-a"])
    Scheduler(registry, store, InProcessExecutor("cpu"), progress=False).train(plan)
    assert learner.trained[-1] == ("toy-a", 5)  # resumed from its last checkpoint (step 4)
    assert weights.exists()


def test_an_interrupted_training_resumes_from_its_checkpoint(setup):
    registry, config, store, learner = setup
    learner.interrupt_at = 4  # Ctrl-C after steps 1-3; the last checkpoint is step 2
    with pytest.raises(KeyboardInterrupt):
        run(registry, config, store, ["toy-learner"], ["toy-a"])
    (row,) = store.trainings().to_dict("records")
    assert row["status"] == "interrupted" and row["steps"] == 3
    assert sorted(store.training_curves()["step"].unique()) == [1, 2, 3]  # flushed on Ctrl-C
    assert store.runs().empty  # nothing evaluated without weights

    learner.interrupt_at = None
    summary = run(registry, config, store, ["toy-learner"], ["toy-a"])
    assert learner.trained == [("toy-a", 1), ("toy-a", 3)]  # resumed after step 2
    assert summary.trainings_done == 1 and summary.runs_done == 1
    row = store.training(row["training_key"])
    assert row["status"] == "complete" and row["attempts"] == 2 and row["steps"] == 5
    curves = store.training_curves(row["training_key"])
    # Step 3 was logged twice (before and after the interruption) and is stored once.
    assert len(curves) == 5 * 2 and not curves.duplicated(["step", "split", "name"]).any()
    assert curves[curves["split"] == "train"]["value"].tolist() == pytest.approx(
        [1 / s for s in range(1, 6)])


def test_curve_points_are_written_in_batches(setup, monkeypatch):
    registry, config, store, learner = setup
    learner.presets = {**learner.presets, "default": {"steps": 40}}
    writes = []
    monkeypatch.setattr(store, "record_curve", lambda key, points: writes.append(list(points)))
    run(registry, config, store, ["toy-learner"], ["toy-a"])
    assert len(writes) == 1 and len(writes[0]) == 80  # one flush at the end, not one per point


def test_a_failed_training_is_recorded_and_its_evaluations_skipped(setup):
    registry, config, store, learner = setup
    learner.fail_on = {"toy-b"}
    summary = run(registry, config, store, ["toy-learner", "toy-shift"], ["toy-a", "toy-b"])
    trainings = store.trainings().set_index("train_dataset")
    assert trainings.loc["toy-b", "status"] == "failed"
    assert trainings.loc["toy-b", "error"] == "RuntimeError: deliberate training failure"
    assert trainings.loc["toy-a", "status"] == "complete"
    assert summary.trainings_failed == 1
    assert any("training failed: RuntimeError: deliberate" in f for f in summary.failures)
    assert sorted(summary.skipped) == [
        f"toy-learner:default trained on toy-b, on {d}: not evaluated: training failed: "
        "RuntimeError: deliberate training failure" for d in ("toy-a", "toy-b")]
    runs = store.runs()
    assert set(zip(runs["method"], runs["train_dataset"].fillna("-"), runs["dataset"])) == {
        ("toy-learner", "toy-a", "toy-a"), ("toy-learner", "toy-a", "toy-b"),
        ("toy-shift", "-", "toy-a"), ("toy-shift", "-", "toy-b")}
    assert set(runs["status"]) == {"complete"}

    learner.fail_on = set()  # fixed: the next run retries it
    summary = run(registry, config, store, ["toy-learner", "toy-shift"], ["toy-a", "toy-b"])
    assert summary.trainings_done == 1 and summary.runs_done == 2 and summary.runs_up_to_date == 4
    assert store.trainings().set_index("train_dataset").loc["toy-b", "status"] == "complete"


def test_a_network_is_scored_on_another_protocol_with_its_labels_and_label_map_reconciles(setup):
    registry, config, store, _ = setup
    datasets = ["toy-a", "toy-renamed", "toy-mapped"]
    plan = make_plan(registry, config, ["toy-learner"], datasets)
    assert [str(t) for t in plan.trainings] == ["toy-learner:default trained on toy-a",
                                                "toy-learner:default trained on toy-renamed"]
    # Every network is tested everywhere; the plan says which tests are on another protocol.
    assert {(r.train_dataset, r.dataset) for r in plan.runs} == {
        (t, e) for t in ("toy-a", "toy-renamed") for e in datasets}
    note = plan.other_labels[("toy-a", "toy-renamed")]
    assert "scored on toy-renamed's own labels, another protocol than toy-a's" in note
    assert "only in toy-a: box" in note and "only in toy-renamed: cube" in note
    # toy-mapped names its cube "box": toy-a's protocol, not toy-renamed's.
    assert set(plan.other_labels) == {("toy-a", "toy-renamed"), ("toy-renamed", "toy-a"),
                                      ("toy-renamed", "toy-mapped")}

    scheduler = Scheduler(registry, store, InProcessExecutor("cpu"), progress=False)
    assert scheduler.run(plan).pairs_failed == 0
    board = store.leaderboard().set_index(["train_dataset", "dataset"])
    assert board.loc[("toy-a", "toy-renamed"), "same_labels"] == False  # noqa: E712
    assert board.loc[("toy-a", "toy-mapped"), "same_labels"] == True  # noqa: E712
    # Scored with the tested dataset's labels: toy-renamed's cube and slab.
    run_id = board.loc[("toy-a", "toy-renamed"), "run_id"]
    assert set(store.label_scores(run_id)["label"]) == {1, 2}


def test_a_block_of_the_same_domain_is_in_domain(setup):
    registry, config, store, _ = setup
    summary = run(registry, config, store, ["toy-learner"], ["toy-a", "toy-b", "toy-a-heldout"],
                  train_on=["toy-a"])
    assert summary.pairs_failed == 0
    runs = store.runs().set_index("dataset")
    # toy-a-heldout declares domain toy-a: held-out subjects of the same source, not a shift.
    assert runs["in_domain"].to_dict() == {"toy-a": True, "toy-a-heldout": True, "toy-b": False}


def test_train_on_chooses_the_training_datasets(setup):
    registry, config, _, _ = setup
    suite = config.suite("only-a")
    plan = make_plan(registry, config, suite.methods, suite.datasets, suite.train_on)
    assert {(r.train_dataset, r.dataset) for r in plan.runs} == {("toy-a", "toy-a"), ("toy-a", "toy-b")}
    plan = make_plan(registry, config, ["toy-learner"], ["toy-a"], ["toy-mapped"])
    assert "has no train subjects" in plan.skipped[("toy-mapped", "toy-mapped")]
    assert not plan.trainings


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``warpbench`` as a user runs it, with the toy plugins loaded, in this process (the tests
    watch this very learner object)."""
    (tmp_path / "datasets.yaml").write_text(TRAINING_CONFIG)
    monkeypatch.setenv("WARPBENCH_EXECUTOR", "inprocess")
    toy = ToyLearningPlugin()
    load = plugin_loading.load_registry
    monkeypatch.setattr(plugin_loading, "load_registry",
                        lambda strict=False: load(extra_plugins=[ToyPlugin(), toy], strict=strict))
    monkeypatch.chdir(tmp_path)
    return toy.learner


def test_the_train_command_trains_without_evaluating(cli, tmp_path, capsys):
    db = ["--db", "out/wb.duckdb", "--quiet"]
    assert main(["train", *db, "--method", "toy-learner", "--dataset", "toy-a",
                 "--dataset", "toy-renamed"]) == 0
    err = capsys.readouterr().err
    assert "2 trainings" in err and "done: 2 trainings run, 0 cached, 0 failed" in err
    store = Store(tmp_path / "out" / "wb.duckdb")
    assert store.runs().empty and set(store.trainings()["status"]) == {"complete"}
    assert all(Path(w).is_relative_to(tmp_path / "out" / "checkpoints" / "toy-learner")
               for w in store.trainings()["weights"])

    assert main(["run", *db, "--method", "toy-learner", "--dataset", "toy-a",
                 "--dataset", "toy-renamed"]) == 0
    err = capsys.readouterr().err
    assert "done: 0 trainings run, 2 cached" in err and len(cli.trained) == 2
    assert ("networks trained on toy-a, tested on toy-renamed: scored on toy-renamed's own "
            "labels, another protocol than toy-a's") in err

    assert main(["leaderboard", "--db", "out/wb.duckdb"]) == 0
    table = capsys.readouterr().out
    assert "trained_on" in table and "in-domain" in table and "shifted, other labels" in table
    assert main(["leaderboard", "--db", "out/wb.duckdb", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["train_dataset"], r["dataset"], r["in_domain"], r["same_labels"])
            for r in records} == {
        ("toy-a", "toy-a", True, True), ("toy-renamed", "toy-renamed", True, True),
        ("toy-a", "toy-renamed", False, False), ("toy-renamed", "toy-a", False, False)}


def test_a_suite_naming_an_unregistered_method_names_it(cli, tmp_path, capsys):
    (tmp_path / "datasets.yaml").write_text(TRAINING_CONFIG.replace("toy-shift]", "vxm-nope]"))
    assert main(["train", "--db", "out/wb.duckdb"]) == 2
    err = capsys.readouterr().err
    assert "suite 'default'" in err and "no method 'vxm-nope' is registered" in err
    assert "datasets.yaml" in err


def test_leaderboard_marks_shifted_rows(cli, capsys):
    assert main(["run", "--db", "wb.duckdb", "--quiet", "--suite", "only-a"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--db", "wb.duckdb"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shifted = [line for line in lines if "shifted" in line]
    assert len(shifted) == 1 and "toy-a" in shifted[0] and "toy-b" in shifted[0]


def test_merge_and_export_carry_trainings_and_curves(setup, tmp_path):
    registry, config, store, _ = setup
    run(registry, config, store, ["toy-learner"], ["toy-a"])
    merged = Store(tmp_path / "merged.duckdb")
    assert merged.merge_from([store.path])["trainings"] == 1
    assert merged.merge_from([store.path])["training_curves"] == 0  # nothing twice
    assert merged.trainings()["status"].tolist() == ["complete"]
    assert len(merged.training_curves()) == len(store.training_curves()) == 10
    written = {p.name for p in store.export_tables(tmp_path / "export", "csv")}
    assert {"trainings.csv", "training_curves.csv"} <= written


def test_a_run_resumes_on_another_machine_from_its_exported_tables(setup, tmp_path):
    """A long suite spread over machines that keep no files: its exported tables, merged into a
    new store, leave nothing to train or score again."""
    registry, config, store, learner = setup
    run(registry, config, store, ["toy-learner", "toy-shift"], ["toy-a", "toy-b"])
    trained = list(learner.trained)
    store.export_tables(tmp_path / "kept", "parquet")
    elsewhere = Store(tmp_path / "elsewhere" / "wb.duckdb")  # no checkpoints beside it
    elsewhere.merge_from([tmp_path / "kept"])
    summary = run(registry, config, elsewhere, ["toy-learner", "toy-shift"], ["toy-a", "toy-b"])
    assert learner.trained == trained and summary.trainings_done == 0
    assert summary.runs_done == 0 and summary.runs_up_to_date == len(elsewhere.runs()) == 6
    assert elsewhere.leaderboard()["dice"].tolist() == store.leaderboard()["dice"].tolist()


def _runs_page() -> None:
    """What AppTest runs: the app with the Runs page at the root URL."""
    from warpbench_leaderboard import navigation

    navigation.main(start_page="runs")


def test_the_runs_page_shows_trainings_and_their_curves(setup, monkeypatch):
    from streamlit.testing.v1 import AppTest

    registry, config, store, _ = setup
    run(registry, config, store, ["toy-learner"], ["toy-a"])
    monkeypatch.setenv("WARPBENCH_DB", str(store.path))
    at = AppTest.from_function(_runs_page, default_timeout=60).run()
    assert not at.exception
    assert "Trainings" in [h.value for h in at.header]
    assert at.selectbox(key="training_curve").value == store.trainings()["training_key"][0]
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in chart["data"]} == {"train loss", "val dice"}


def test_presets_differing_only_in_test_time_keys_share_one_training(setup):
    registry, config, store, learner = setup
    learner.presets = {**learner.presets, "io": {"steps": 5, "refine": 3}}
    learner.test_time_keys = ("refine",)
    summary = run(registry, config, store, ["toy-learner", "toy-learner:io"], ["toy-a"])
    assert learner.trained == [("toy-a", 1)]  # one training serves both presets
    assert summary.runs_done == 2 and len(store.trainings()) == 1
    runs = store.runs()
    assert set(runs["preset"]) == {"default", "io"} and runs["training_key"].nunique() == 1

    learner.test_time_keys = ()  # now "refine" is a training parameter: io trains its own
    run(registry, config, store, ["toy-learner:io"], ["toy-a"])
    assert learner.trained == [("toy-a", 1), ("toy-a", 1)] and len(store.trainings()) == 2


def test_a_learning_runs_fields_are_recreated_with_its_weights_and_their_loss_is_explained(setup, tmp_path):
    from warpbench.fields import ExportError, export_run_fields
    from warpbench_leaderboard import pairview

    registry, config, store, learner = setup
    run(registry, config, store, ["toy-learner"], ["toy-a", "toy-b"], train_on=["toy-a"])
    shifted = store.runs().query("dataset == 'toy-b'").iloc[0].to_dict()
    (weights,) = learner.registered_with
    learner.registered_with.clear()

    summary = export_run_fields(store, registry, config, shifted["run_id"], tmp_path / "out", "npy")
    assert len(summary.written) == 2 and not summary.failed and not summary.not_reproduced
    assert learner.registered_with == {weights}
    looked_up = pairview.with_weights(store.path, shifted)
    view = pairview.recompute_pair(config.path, looked_up, "s2", "s3", registry=registry)
    assert view.disp.shape == (3, 12, 14, 10) and looked_up["weights"] == str(weights)

    weights.unlink()
    with pytest.raises(ExportError, match="warpbench train --db .* --method toy-learner:default "
                                          "--dataset toy-a --seed 0") as error:
        export_run_fields(store, registry, config, shifted["run_id"], tmp_path / "again")
    assert str(weights) in str(error.value)
    with pytest.raises(pairview.PairViewError, match="weights .* are gone"):
        pairview.with_weights(store.path, shifted)
    with pytest.raises(pairview.PairViewError, match="gone; `warpbench train`"):
        pairview.recompute_pair(config.path, looked_up, "s2", "s3", registry=registry)
