"""The `warpbench` command end to end on a small synthetic dataset; its help, its error layer,
its interruption."""

import json
import signal
from functools import partial

import pytest

from conftest import REPO
from toy_plugins import TRAINING_CONFIG, ToyLearningPlugin, ToyPlugin
from warpbench import plugins as plugin_loading
from warpbench.cli import build_cli, main
from warpbench.cli.shared import DEFAULT_DB, INTERRUPTED
from warpbench.runner import PairResult
from warpbench.store import Store

CONFIG = """
datasets:
  tiny:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    split: {train: 2, val: 1, test: 3}
    pairs: {test: 3}
  elsewhere:
    plugin: decathlon
    root: no/such/folder
    labels: {1: a}
suites:
  default:
    methods: [identity, greedy:fast]
    datasets: [tiny, elsewhere]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    return tmp_path


def test_run_then_leaderboard_then_resume(workdir, capsys):
    assert main(["run", "--quiet"]) == 1  # the dataset 'elsewhere' was set aside
    err = capsys.readouterr().err
    assert "skipping dataset elsewhere: root" in err and "does not exist" in err
    assert "2 runs computed" in err

    assert main(["leaderboard", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["method"], r["preset"], r["dataset"], r["pairs"]) for r in records} == {
        ("identity", "default", "tiny", 3), ("greedy", "fast", "tiny", 3)}
    assert set(records[0]) >= {"dice", "dice_std", "hd95", "sdlogj", "folding_percent", "seconds"}
    by_method = {r["method"]: r for r in records}
    assert by_method["greedy"]["dice"] > by_method["identity"]["dice"]

    assert main(["leaderboard", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("method,preset,family,dataset,pairs")
    assert main(["leaderboard"]) == 0
    assert "greedy" in capsys.readouterr().out

    assert main(["run", "--quiet"]) == 1
    assert "0 runs computed, 2 already complete, 0 pairs scored" in capsys.readouterr().err


def _store_with_a_partly_failed_configuration(path) -> None:
    """'steady' scores all 6 pairs at 0.7; 'lucky' fails 3 of 6 and scores 0.9 on the others."""
    store = Store(path)
    for method, dice, failed in (("steady", 0.7, 0), ("lucky", 0.9, 3)):
        run = store.begin_run(method, {"method": method, "preset": "default", "params": "{}",
                                       "family": "classical", "dataset": "tiny"})
        for k in range(6):
            ok = k >= failed
            store.record_pair(run.run_id, 1, PairResult(
                f"s{k}", f"s{k + 1}", "ok" if ok else "failed", error=None if ok else "diverged",
                labels=[1] if ok else [], dice=[dice] if ok else [], hd95=[1.0] if ok else [],
                mean_dice=dice if ok else None, mean_hd95=1.0 if ok else None))
        store.end_run(run.run_id, "complete")


def test_a_partly_failed_configuration_is_marked_and_ranked_after_the_complete_ones(
        tmp_path, capsys):
    db = str(tmp_path / "wb.duckdb")
    _store_with_a_partly_failed_configuration(db)
    assert main(["leaderboard", "--db", db, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["pairs"], r["failed"]) for r in records] == [
        ("steady", 6, 0), ("lucky", 3, 3)]
    assert main(["leaderboard", "--db", db, "--format", "csv"]) == 0
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "steady", "lucky"]
    assert main(["leaderboard", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lucky" in lines[2] and "3 (unranked)" in lines[2] and "unranked" not in lines[1]
    assert lines[3].startswith("(unranked): 1 configuration(s) with failed pairs: not ranked")


def test_datasets_lists_availability_and_mi(workdir, capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert ("tiny: synthetic, 6 subjects (train 2, val 1, test 3), 3 test pairs, 22 labels, "
            "pre-aligned, MI(i;s)") in out
    assert "elsewhere: unavailable: root" in out


def test_an_unknown_method_is_an_error_not_a_traceback(workdir, capsys):
    assert main(["run", "--method", "no-such-method", "--dataset", "tiny"]) == 2
    assert "no method 'no-such-method'" in capsys.readouterr().err


def test_an_empty_store_says_how_to_fill_it(workdir, capsys):
    assert main(["leaderboard", "--db", "nothing.duckdb"]) == 0
    assert "warpbench run --suite default --db nothing.duckdb" in capsys.readouterr().out


def test_every_command_says_what_it_does_with_an_example(capsys):
    commands = build_cli().commands
    assert {"plugins", "datasets", "run", "train", "leaderboard", "study", "check", "new-plugin",
            "schema", "ci", "merge", "export", "export-fields"} <= set(commands)
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name, command in commands.items():
        assert f"  {name} " in listed and command.get_short_help_str()
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"Usage: warpbench {name} ")
        assert "Examples:" in text and f"\n    warpbench {name}" in text, name


def test_a_user_error_is_one_line_and_exit_status_2(workdir, capsys):
    assert main(["run", "--suite", "nightly"]) == 2
    assert capsys.readouterr().err == (
        "error: datasets.yaml: no suite 'nightly'; suites defined: default\n")
    assert main(["run", "--executor", "nowhere", "--method", "identity", "--dataset", "tiny"]) == 2
    assert capsys.readouterr().err.startswith("error: no executor 'nowhere' (registered: ")
    (workdir / "datasets.yaml").write_text(CONFIG + "extras: {}\n")
    for argv in (["datasets"], ["train"], ["ci", "--out", "ci"], ["export-fields", "--run", "x",
                                                                    "--out", "f"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: datasets.yaml: ") and "extras" in err, argv
        assert err.count("\n") == 1, err


def test_a_missing_store_or_an_unwritable_file_is_a_user_error_too(workdir, capsys):
    assert main(["study", "--db", "nothing.duckdb"]) == 2
    assert capsys.readouterr().err == "error: nothing.duckdb: no such file\n"
    assert main(["schema", "--out", "no/such/folder/datasets.schema.json"]) == 2
    assert capsys.readouterr().err.endswith(
        "error: no/such/folder/datasets.schema.json: cannot write the schema: No such file or "
        "directory\n")


def test_a_usage_error_is_exit_status_2_with_the_usage(capsys):
    assert main(["leaderboard", "--format", "xml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: warpbench leaderboard") and "'xml' is not one of" in err
    assert main([]) == 2 and "Commands:" in capsys.readouterr().err


@pytest.fixture
def learner(tmp_path, monkeypatch):
    """The toy learner, loaded by every registry the commands load, and trained in this
    process (the tests steer and watch this very object)."""
    (tmp_path / "datasets.yaml").write_text(TRAINING_CONFIG)
    monkeypatch.setenv("WARPBENCH_EXECUTOR", "inprocess")
    toy = ToyLearningPlugin()
    monkeypatch.setattr(plugin_loading, "load_registry",
                        partial(plugin_loading.load_registry, extra_plugins=[ToyPlugin(), toy]))
    monkeypatch.chdir(tmp_path)
    return toy.learner


@pytest.mark.parametrize("command", ["train", "run"])
def test_ctrl_c_stops_with_the_hint_and_status_130_and_the_same_command_resumes(learner, command,
                                                                                capsys):
    argv = [command, "--quiet", "--db", "wb.duckdb", "--method", "toy-learner", "--dataset",
            "toy-a"]
    learner.interrupt_at = 3
    assert main(argv) == 130
    assert capsys.readouterr().err.endswith(f"{INTERRUPTED}\n")
    assert Store("wb.duckdb").trainings()["status"].tolist() == ["interrupted"]
    learner.interrupt_at = None
    assert main(argv) == 0
    assert learner.trained == [("toy-a", 1), ("toy-a", 3)]  # from its checkpoint of step 2


def test_sigterm_stops_like_ctrl_c(learner, capsys):
    def not_replaced(signum, frame):
        pytest.fail("warpbench did not handle SIGTERM")

    previous = signal.signal(signal.SIGTERM, not_replaced)
    try:
        learner.terminate_at = 2
        assert main(["train", "--quiet", "--method", "toy-learner", "--dataset", "toy-a"]) == 130
        assert INTERRUPTED in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) is not_replaced  # put back afterwards
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert Store(DEFAULT_DB).trainings()["status"].tolist() == ["interrupted"]


def test_schema_prints_or_writes_the_json_schema_of_datasets_yaml(tmp_path, capsys):
    import jsonschema
    import yaml

    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    schema = json.loads(printed)
    assert "datasets" in schema["properties"] and printed == json.dumps(schema, indent=2) + "\n"
    jsonschema.validate(yaml.safe_load((REPO / "datasets.yaml").read_text()), schema)
    assert main(["schema", "--out", str(tmp_path / "datasets.schema.json")]) == 0
    assert json.loads((tmp_path / "datasets.schema.json").read_text()) == schema
