"""The `warpbench` command end to end on a small synthetic dataset."""

import json

import pytest

from warpbench.cli import main

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
    assert main(["run", "--quiet"]) == 0
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

    assert main(["run", "--quiet"]) == 0
    assert "0 runs computed, 2 already complete, 0 pairs scored" in capsys.readouterr().err


def test_datasets_lists_availability_and_mi(workdir, capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "tiny: synthetic, 6 subjects (train 2, val 1, test 3), 3 test pairs, 22 labels, MI(i;s)" in out
    assert "elsewhere: unavailable: root" in out


def test_an_unknown_method_is_an_error_not_a_traceback(workdir, capsys):
    assert main(["run", "--method", "no-such-method", "--dataset", "tiny"]) == 2
    assert "no method 'no-such-method'" in capsys.readouterr().err


def test_an_empty_store_says_how_to_fill_it(workdir, capsys):
    assert main(["leaderboard", "--db", "nothing.duckdb"]) == 0
    assert "warpbench run --suite default --db nothing.duckdb" in capsys.readouterr().out
