"""The leaderboard app: its data shaping (``leaderboard/tables.py``) and the page itself, run
through Streamlit's AppTest on an empty, a filled and an unreadable store."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from warpbench.store import LEADERBOARD_COLUMNS, Store, StoreBusy

APP_DIR = Path(__file__).resolve().parents[1] / "leaderboard"
APP = APP_DIR / "app.py"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

import tables  # noqa: E402  (leaderboard/tables.py, not an installed package)

TIMEOUT = 30  # first import of torch and duckdb is slow on small machines


# --- a store with two methods x two datasets -----------------------------------------------------
METHODS = (("identity", "baseline", 0.40), ("demons", "classical", 0.70))
DATASETS = ("synthetic", "hippocampus")


def _pair(fixed, moving, dice, status="ok"):
    ok = status == "ok"
    return SimpleNamespace(
        fixed=fixed, moving=moving, status=status, error=None if ok else "diverged",
        mean_dice=dice if ok else None, mean_hd95=3.0 if ok else None,
        sdlogj=0.05 if ok else None, folding_percent=0.01 if ok else None,
        seconds=0.5 if ok else None, peak_memory_mb=128.0 if ok else None, device="cpu",
        labels=[1, 2] if ok else [], dice=[dice, dice] if ok else [], hd95=[3.0, 3.0] if ok else [],
    )


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "warpbench.duckdb"
    store = Store(path)
    for method, family, base in METHODS:
        for dataset in DATASETS:
            provenance = {
                "method": method, "preset": "default", "params": json.dumps({}),
                "family": family, "supervision": "none", "dataset": dataset, "seed": 0,
                "device": "cpu",
            }
            run = store.begin_run(f"{method}/default/{dataset}", provenance)
            for k in range(3):
                store.record_pair(run.run_id, 1, _pair(f"s{k}", f"s{k + 1}", base + 0.01 * k))
            store.record_pair(run.run_id, 1, _pair("s8", "s9", None, status="failed"))
            store.end_run(run.run_id, "complete")
    return path


def _app(monkeypatch, db: Path, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("WARPBENCH_DB", str(db))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    return at.run()


# --- the page ------------------------------------------------------------------------------------
def test_empty_store_explains_how_to_fill_it(monkeypatch, tmp_path):
    db = tmp_path / "missing.duckdb"
    at = _app(monkeypatch, db)
    assert not at.exception
    assert not at.error
    assert len(at.info) == 1
    message = at.info[0].value
    assert "warpbench run --suite default --db" in message
    assert str(db) in message
    assert "make demo" in message
    assert not at.dataframe
    assert not db.exists()  # the app never creates the store


def test_store_with_unfinished_run_only_is_empty(monkeypatch, tmp_path):
    db = tmp_path / "running.duckdb"
    store = Store(db)
    run = store.begin_run("demons/default/synthetic", {
        "method": "demons", "preset": "default", "params": "{}", "dataset": "synthetic"})
    store.record_pair(run.run_id, 1, _pair("a", "b", 0.7))
    at = _app(monkeypatch, db)
    assert not at.exception
    assert "not complete" in at.info[0].value
    assert "warpbench run" in at.info[0].value


def test_filled_store_shows_every_configuration(monkeypatch, filled_db):
    at = _app(monkeypatch, filled_db)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.columns) == list(tables.DISPLAY_COLUMNS.values())
    assert len(table) == len(METHODS) * len(DATASETS)
    assert set(table["Method"]) == {"identity", "demons"}
    assert set(table["Dataset"]) == set(DATASETS)
    assert (table["Pairs"] == 3).all() and (table["Failed"] == 1).all()
    demons = table[table["Method"] == "demons"]
    assert demons["Mean Dice"].tolist() == pytest.approx([0.71, 0.71])
    assert at.multiselect(key="dataset").options == sorted(DATASETS)
    assert at.multiselect(key="family").options == ["baseline", "classical"]


def test_filters_reduce_rows(monkeypatch, filled_db):
    at = _app(monkeypatch, filled_db)
    at.multiselect(key="family").select("classical").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == len(DATASETS)
    assert set(table["Family"]) == {"classical"}

    at.multiselect(key="dataset").select("synthetic").run()
    table = at.dataframe[0].value
    assert len(table) == 1
    assert table.iloc[0][["Method", "Dataset"]].tolist() == ["demons", "synthetic"]

    at.multiselect(key="family").unselect("classical").run()
    assert len(at.dataframe[0].value) == len(METHODS)


def test_filters_come_from_the_url(monkeypatch, filled_db):
    at = _app(monkeypatch, filled_db, {"dataset": "hippocampus", "family": "baseline"})
    assert not at.exception
    assert at.multiselect(key="dataset").value == ["hippocampus"]
    assert at.multiselect(key="family").value == ["baseline"]
    table = at.dataframe[0].value
    assert table[["Method", "Dataset"]].values.tolist() == [["identity", "hippocampus"]]


def test_unreadable_store_shows_an_error(monkeypatch, tmp_path):
    db = tmp_path / "garbage.duckdb"
    db.write_bytes(b"this is not a DuckDB database\n" * 400)
    at = _app(monkeypatch, db)
    assert not at.exception
    assert len(at.error) == 1
    assert str(db) in at.error[0].value
    assert not at.dataframe


def test_db_path_resolution(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("warpbench_leaderboard_app", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # defines, does not run: main() only runs as __main__
    monkeypatch.chdir(tmp_path)
    env = {"WARPBENCH_DB": "/env/wb.duckdb"}
    assert app.resolve_db_path(["--db", "/argv/wb.duckdb"], env) == "/argv/wb.duckdb"
    assert app.resolve_db_path(["--db=/argv/wb.duckdb"], env) == "/argv/wb.duckdb"
    assert app.resolve_db_path(["-q", "tests"], env) == "/env/wb.duckdb"
    assert app.resolve_db_path([], {}) == str(tmp_path / "results" / "warpbench.duckdb")
    assert app.resolve_db_path(["--db", "mine.duckdb"], {}) == str(tmp_path / "mine.duckdb")


# --- tables.py -----------------------------------------------------------------------------------
@pytest.fixture
def board() -> pd.DataFrame:
    rows = [
        ("demons", "default", "classical", "none", "synthetic", None, 10, 0, 0.81234, 0.02,
         2.5, 0.04, 0.0, 1.5, 200.0, "r1"),
        ("identity", "default", "baseline", "none", "synthetic", None, 10, 0, 0.41, 0.05,
         6.0, 0.0, 0.0, 0.01, 50.0, "r2"),
        ("demons", "fast", "classical", "none", "hippocampus", None, 8, 2, 0.7, float("nan"),
         3.0, 0.05, 0.1, 0.5, None, "r3"),
        ("mystery", "default", None, None, "hippocampus", None, 9, 1, 0.6, 0.1,
         4.0, 0.1, 1.0, 2.0, 100.0, "r4"),
    ]
    return pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)


def test_display_columns_cover_the_store():
    assert set(tables.DISPLAY_COLUMNS) <= set(LEADERBOARD_COLUMNS)
    assert set(tables.NUMBER_FORMATS) <= set(tables.DISPLAY_COLUMNS.values())
    assert tables.NUMBER_FORMATS["Mean Dice"] == "%.3f"


def test_filter_options(board):
    assert tables.filter_options(board, "dataset") == ["hippocampus", "synthetic"]
    assert tables.filter_options(board, "family") == ["baseline", "classical"]  # no None
    assert tables.filter_options(board.iloc[:0], "dataset") == []
    assert tables.filter_options(board, "no_such_column") == []


def test_filter_leaderboard(board):
    assert tables.filter_leaderboard(board).equals(board)
    assert tables.filter_leaderboard(board, [], []).equals(board)
    assert tables.filter_leaderboard(board, ["synthetic"])["run_id"].tolist() == ["r1", "r2"]
    assert tables.filter_leaderboard(board, families=["classical"])["run_id"].tolist() == ["r1", "r3"]
    both = tables.filter_leaderboard(board, ["hippocampus"], ["classical", "baseline"])
    assert both["run_id"].tolist() == ["r3"]  # the row without a family is filtered out
    assert tables.filter_leaderboard(board, ["nowhere"]).empty


def test_display_table(board):
    table = tables.display_table(board)
    assert list(table.columns) == list(tables.DISPLAY_COLUMNS.values())
    assert len(table) == len(board)
    assert table.index.tolist() == [0, 1, 2, 3]
    assert table.loc[3, "Family"] == tables.MISSING_TEXT
    assert table["Pairs"].tolist() == [10, 10, 8, 9]
    assert table.loc[0, "Mean Dice"] == pytest.approx(0.81234)  # numeric, the table sorts
    assert math.isnan(table.loc[2, "Peak memory (MB)"])
    # filtered rows keep a clean index
    assert tables.display_table(board.iloc[2:]).index.tolist() == [0, 1]
    # an empty board still has the headers
    assert list(tables.display_table(board.iloc[:0]).columns) == list(table.columns)


def test_format_table(board):
    text = tables.format_table(tables.display_table(board))
    assert text.loc[0, "Mean Dice"] == "0.812"
    assert text.loc[0, "Pairs"] == "10"
    assert text.loc[0, "HD95 (mm)"] == "2.50"
    assert text.loc[2, "Std"] == tables.MISSING_TEXT
    assert text.loc[2, "Peak memory (MB)"] == tables.MISSING_TEXT


def test_messages():
    empty = tables.empty_store_message("/x/wb.duckdb")
    assert "warpbench run --suite default --db /x/wb.duckdb" in empty
    assert "make demo" in empty
    running = pd.DataFrame({"status": ["running", "complete"]})
    assert "1 run(s) that are not complete" in tables.empty_store_message("/x", running)
    error = tables.read_error_message("/x/wb.duckdb", OSError("not a valid DuckDB database file"))
    assert "/x/wb.duckdb" in error and "not a valid DuckDB" in error
    busy = tables.read_error_message("/x/wb.duckdb", StoreBusy("/x/wb.duckdb stayed locked"))
    assert "stayed locked" in busy and "reload" in busy
