"""The leaderboard app: its data shaping (``warpbench_leaderboard.tables``) and the pages
themselves, run through Streamlit's AppTest on an empty, a filled and an unreadable store."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from warpbench.store import LEADERBOARD_COLUMNS, Store, StoreBusy
from warpbench_leaderboard import loaders, navigation, pairview, tables

APP = Path(__file__).resolve().parents[1] / "leaderboard" / "app.py"

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


def test_configurations_with_failed_pairs_are_unranked_and_said_so(monkeypatch, filled_db):
    at = _app(monkeypatch, filled_db)  # every configuration failed one pair of four
    table = at.dataframe[0].value
    assert table["Rank"].isna().all() and (table["Failed"] == 1).all()
    assert "4 configurations have failed pairs (**Failed**): not ranked" in _texts(at.warning)


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
    monkeypatch.chdir(tmp_path)
    env = {"WARPBENCH_DB": "/env/wb.duckdb"}
    assert navigation.resolve_db_path(["--db", "/argv/wb.duckdb"], env) == "/argv/wb.duckdb"
    assert navigation.resolve_db_path(["--db=/argv/wb.duckdb"], env) == "/argv/wb.duckdb"
    assert navigation.resolve_db_path(["-q", "tests"], env) == "/env/wb.duckdb"
    assert navigation.resolve_db_path([], {}) == str(tmp_path / "results" / "warpbench.duckdb")
    assert navigation.resolve_db_path(["--db", "mine.duckdb"], {}) == str(tmp_path / "mine.duckdb")


# --- tables.py -----------------------------------------------------------------------------------
@pytest.fixture
def board() -> pd.DataFrame:
    rows = [
        ("demons", "default", "classical", "none", "synthetic", None, 10, 0, 0.81234, 0.02,
         2.5, 0.04, 0.0, 1.5, 200.0, "r1", None),
        ("identity", "default", "baseline", "none", "synthetic", None, 10, 0, 0.41, 0.05,
         6.0, 0.0, 0.0, 0.01, 50.0, "r2", None),
        ("demons", "fast", "classical", "none", "hippocampus", None, 8, 2, 0.7, float("nan"),
         3.0, 0.05, 0.1, 0.5, None, "r3", None),
        ("mystery", "default", None, None, "hippocampus", None, 9, 1, 0.6, 0.1,
         4.0, 0.1, 1.0, 2.0, 100.0, "r4", None),
    ]
    return pd.DataFrame([(*row, None, True) for row in rows], columns=LEADERBOARD_COLUMNS)


def test_display_columns_cover_the_store():
    assert set(tables.DISPLAY_COLUMNS) <= set(LEADERBOARD_COLUMNS) | set(tables.SUMMARY_COLUMNS)
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


def test_display_table_marks_a_training_dataset_as_the_store_does(board):
    trained = board.assign(train_dataset=["synthetic", "hippocampus", "synthetic", None],
                           in_domain=[True, False, False, None],  # Store.leaderboard()'s columns
                           same_labels=[True, False, True, None])
    assert tables.display_table(trained)["Trained on"].tolist() == [
        "synthetic (in-domain)", "hippocampus (shifted, other labels)", "synthetic (shifted)",
        tables.MISSING_TEXT]
    assert tables.learning_configs(trained)["run_id"].tolist() == ["r1", "r2", "r3"]


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


# --- every page, through app.py's navigation ------------------------------------------------------
def _page_script(page: str) -> None:
    """What AppTest runs: the app's main() with ``page`` as the page at the root URL (AppTest has
    no URL path to pick a page by)."""
    from warpbench_leaderboard import navigation

    navigation.main(start_page=page)


PAGE_MODULES = navigation.PAGES
PAGE_PATHS = [navigation.page_module(name).URL_PATH for name in PAGE_MODULES]


def _open(monkeypatch, db: Path, page: str, query: dict | None = None, cwd: Path | None = None) -> AppTest:
    monkeypatch.setenv("WARPBENCH_DB", str(db))
    if cwd is not None:
        monkeypatch.chdir(cwd)
    at = AppTest.from_function(_page_script, args=(page,), default_timeout=60)
    at.query_params.update(query or {})
    return at.run()


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_every_page_is_in_the_navigation():
    assert len(PAGE_MODULES) == 8 and len(set(PAGE_PATHS)) == 8
    for name in PAGE_MODULES:
        view = navigation.page_module(name)
        assert view.TITLE and view.ICON and callable(view.render)


@pytest.mark.parametrize("page", PAGE_PATHS)
def test_every_page_on_an_empty_store_says_how_to_fill_it(monkeypatch, tmp_path, page):
    db = tmp_path / "missing.duckdb"
    at = _open(monkeypatch, db, page)
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert not at.error
    assert at.title and at.title[0].value
    assert "warpbench run" in _texts(at.info)
    assert not at.dataframe or page == "instrumentation"  # the literature table needs no runs
    assert not db.exists()


PAGE_TITLES = {
    "leaderboard": "Leaderboard", "instrumentation": "Instrumentation bias",
    "supervision": "Classical versus unsupervised versus label-supervised",
    "domain-shift": "Domain shift", "mi-vs-dice": "MI(i;s) versus Dice",
    "significance": "Significance", "pair-viewer": "Pair viewer", "runs": "Runs and provenance",
}


@pytest.mark.parametrize("page", PAGE_PATHS)
def test_every_page_opens_with_its_title_and_the_refresh_button(monkeypatch, app_store, page):
    at = _open(monkeypatch, app_store, page, cwd=app_store.parent)
    assert [t.value for t in at.title] == [PAGE_TITLES[page]]
    assert [b.label for b in at.sidebar.button] == ["Refresh"]
    at.sidebar.button[0].click().run()  # reads the store again
    assert not at.exception and [t.value for t in at.title] == [PAGE_TITLES[page]]


@pytest.mark.parametrize("page", PAGE_PATHS)
def test_every_page_on_an_unreadable_store_says_so(monkeypatch, tmp_path, page):
    db = tmp_path / "garbage.duckdb"
    db.write_bytes(b"this is not a DuckDB database\n" * 400)
    at = _open(monkeypatch, db, page)
    assert not at.exception
    assert str(db) in _texts(at.error)


@pytest.mark.parametrize("page", PAGE_PATHS)
def test_every_page_on_a_store_filled_by_a_real_run(monkeypatch, app_store, page):
    at = _open(monkeypatch, app_store, page, cwd=app_store.parent)
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert not at.error, _texts(at.error)
    assert at.title and at.title[0].value


def test_leaderboard_of_a_real_run(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "leaderboard")
    table = at.dataframe[0].value
    assert list(table.columns) == list(tables.DISPLAY_COLUMNS.values())
    assert len(table) == 11  # 3 methods x 3 datasets, greedy:default on tiny-a, affine on tiny-d
    tiny_a = table[table["Dataset"] == "tiny-a"]
    assert tiny_a["Rank"].tolist() == [1, 2, 3, 4]  # best first
    scored = table[table["Pairs"] > 0]
    assert (scored["95% CI low"] <= scored["Mean Dice"]).all()
    assert (scored["Mean Dice"] <= scored["95% CI high"]).all()
    assert scored["Worst 30%"].notna().all() and scored["SDlogJ"].notna().all()
    failed = table[table["Dataset"] == "tiny-d"].iloc[0]
    assert failed["Pairs"] == 0 and failed["Failed"] == 3 and pd.isna(failed["Rank"])
    overall = at.dataframe[1].value
    assert overall.iloc[0]["Overall rank"] == 1 and set(overall["Datasets"]) <= {1, 3}
    assert at.get("download_button")[0].proto.label == "Download CSV"
    assert at.multiselect(key="train").options == []  # no training datasets yet
    assert at.multiselect(key="preset").options == ["default", "fast"]


def test_leaderboard_filters_from_the_url(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "leaderboard",
               {"preset": "fast", "supervision": "none", "dataset": ["tiny-a", "tiny-b"]})
    assert at.multiselect(key="preset").value == ["fast"]
    table = at.dataframe[0].value
    assert table[["Method", "Dataset"]].values.tolist() == [["greedy", "tiny-a"], ["greedy", "tiny-b"]]
    # ranks among every configuration on the dataset, not among the rows shown: on tiny-a,
    # greedy:default is there too
    board = Store(app_store).leaderboard()
    board = board[board["failed"] == 0]
    fast = board[board["preset"] == "fast"].set_index("dataset")["dice"]
    expected = [1 + int((board.loc[board["dataset"] == d, "dice"] > fast[d]).sum())
                for d in ("tiny-a", "tiny-b")]
    assert table["Rank"].tolist() == expected
    assert len(board[board["dataset"] == "tiny-a"]) > len(board[board["dataset"] == "tiny-b"])


def test_instrumentation_page_explains_what_it_waits_for(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "instrumentation")
    info = _texts(at.info)
    assert "Waiting for a reported result that warpbench has re-measured" in info
    assert "IXI" in info and "SyN" in info
    reported = at.dataframe[0].value
    assert set(reported["method"]) == {"SyN", "NiftyReg", "VoxelMorph-2", "TransMorph",
                                       "TransMorph-Large", "ConvexAdam"}
    assert reported["source"].str.contains("TransMorph").all()
    assert set(reported["dataset"]) == {"IXI", "OASIS (Learn2Reg 2021 task 3)"}
    spread = at.dataframe[1].value
    greedy = spread[(spread["method"] == "greedy") & (spread["dataset"] == "tiny-a")].iloc[0]
    assert greedy["presets"] == 2
    assert len(at.get("plotly_chart")) == 1


def test_supervision_and_domain_shift_say_what_learning_data_they_wait_for(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "supervision")
    assert "Waiting for runs of DLIR, unsupervised and DLIR, label-supervised" in _texts(at.info)
    assert len(at.get("plotly_chart")) == 1  # classical and baseline are shown meanwhile
    at = _open(monkeypatch, app_store, "domain-shift")
    info = _texts(at.info)
    assert "Waiting for learning methods trained on a dataset" in info
    assert "Waiting for a learning method tested both on its training dataset" in info
    assert len(at.get("plotly_chart")) == 1  # the per-dataset boxes exist already


def test_mi_page_correlates_the_three_datasets(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "mi-vs-dice")
    assert not at.info  # three datasets with MI: enough for a correlation
    text = _texts(at.markdown)
    assert "classical: Pearson r = " in text and "n = 3" in text
    points = at.dataframe[0].value
    assert set(points["dataset"]) == {"tiny-a", "tiny-b", "tiny-c"}
    at.radio(key="mi").set_value("nmi").run()
    assert not at.exception and (at.dataframe[0].value["mi"] < 1).all()


def test_significance_page_tests_the_chosen_configurations(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "significance", {"sig_dataset": "tiny-b"})
    assert at.selectbox(key="sig_dataset").value == "tiny-b"
    assert at.multiselect(key="sig_configs").value == ["greedy:fast", "affine:default", "identity:default"]
    table = at.dataframe[0].value
    assert len(table) == 3 and (table["Pairs"] == 3).all()
    assert (table["Wilcoxon p (Holm)"] >= table["Wilcoxon p"]).all()
    at.multiselect(key="sig_configs").unselect("identity:default").run()
    assert len(at.dataframe[0].value) == 1
    at.multiselect(key="sig_configs").unselect("affine:default").run()
    assert "at least two" in _texts(at.info)


def test_pair_viewer_recomputes_the_stored_pair(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "pair-viewer", cwd=app_store.parent)
    assert not at.warning, _texts(at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Dice (recomputed)"]) == pytest.approx(float(metrics["Dice (stored)"]), abs=2e-3)
    assert len(at.get("plotly_chart")) == 3  # slices, Jacobian, grid
    runs = Store(app_store).runs()
    identity = runs[(runs["method"] == "identity") & (runs["dataset"] == "tiny-c")]["run_id"].iloc[0]
    label = f"identity:default on tiny-c · {identity[:8]}"
    at = _open(monkeypatch, app_store, "pair-viewer", {"run": label}, cwd=app_store.parent)
    assert at.selectbox(key="run").value == label  # the URL names the run: a shareable view
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Folding %"]) == 0.0
    assert float(metrics["Dice (recomputed)"]) == pytest.approx(float(metrics["Dice (stored)"]), abs=1e-6)


def test_pair_viewer_explains_a_missing_configuration(monkeypatch, app_store, tmp_path):
    at = _open(monkeypatch, app_store, "pair-viewer", {"config": str(tmp_path / "nowhere.yaml")})
    assert not at.exception
    assert "Cannot read the dataset configuration" in _texts(at.warning)
    assert not at.get("plotly_chart")


def test_runs_page_lists_provenance_and_failures(monkeypatch, app_store):
    at = _open(monkeypatch, app_store, "runs")
    runs = at.dataframe[0].value
    assert len(runs) == 11 and {"Git revision", "torch", "Parameters", "Host"} <= set(runs.columns)
    failures = at.dataframe[1].value
    assert len(failures) == 3 and failures["error"].str.contains("timed out").all()
    assert at.json  # one run's full provenance
    at.multiselect(key="status").select("running").run()
    assert not at.exception


# --- a store with learning runs (written directly, so the tests train nothing) --------------------
STUDY = (  # method, family, supervision, train, dataset, base dice
    ("greedy", "classical", "none", None, "oasis", 0.80),
    ("greedy", "classical", "none", None, "lpba", 0.72),
    ("vxm", "learning", "none", "oasis", "oasis", 0.79),
    ("vxm", "learning", "none", "oasis", "lpba", 0.62),
    ("vxm-sup", "learning", "labels", "oasis", "oasis", 0.90),
    ("vxm-sup", "learning", "labels", "oasis", "lpba", 0.60),
)


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "warpbench.duckdb"
    store = Store(path)
    for method, family, supervision, train, dataset, base in STUDY:
        provenance = {"method": method, "preset": "default", "params": "{}", "family": family,
                      "supervision": supervision, "dataset": dataset, "train_dataset": train,
                      "in_domain": None if train is None else train == dataset, "seed": 0}
        run = store.begin_run(f"{method}/{train}/{dataset}", provenance)
        for k in range(4):
            store.record_pair(run.run_id, 1, _pair(f"s{k}", f"s{k + 1}", base + 0.01 * k))
        store.end_run(run.run_id, "complete")
    for dataset, mi in (("oasis", 1.1), ("lpba", 0.8)):
        store.record_dataset({"dataset": dataset, "fingerprint": dataset, "mi_bits": mi, "nmi": mi / 3})
    return path


def test_domain_shift_and_supervision_pages_with_learning_runs(monkeypatch, study_db):
    at = _open(monkeypatch, study_db, "domain-shift", {"shift_method": "vxm-sup:default"})
    assert not at.exception and not at.info
    assert at.selectbox(key="shift_method").options == ["vxm-sup:default", "vxm:default"]
    assert len(at.get("plotly_chart")) == 3  # heat map, boxes, drops
    drops = at.dataframe[0].value.set_index("config")
    assert drops.loc["vxm-sup:default [oasis]", "drop"] == pytest.approx(0.30)
    assert drops.loc["greedy:default", "drop"] == pytest.approx(0.08)
    at = _open(monkeypatch, study_db, "supervision")
    assert not at.exception and not at.info
    best = at.dataframe[0].value
    assert set(best["group"]) == {"classical", "DLIR, unsupervised", "DLIR, label-supervised"}
    assert at.selectbox(key="supervision_reference").value == "greedy:default"
    unsupervised, supervised = (at.dataframe[k].value for k in (1, 2))
    assert unsupervised[["dataset", "config", "pairs"]].values.tolist() == [["oasis", "vxm:default", 4]]
    assert unsupervised["difference"].iloc[0] == pytest.approx(-0.01)
    assert supervised["verdict"].tolist() == ["no significant difference"]  # 4 pairs cannot be
    at = _open(monkeypatch, study_db, "mi-vs-dice")
    assert "runs on at least 3 datasets" in _texts(at.info)  # two datasets only


# --- reads while a run writes ---------------------------------------------------------------------
def test_the_app_waits_for_a_writer_instead_of_failing(monkeypatch, app_store, tmp_path):
    import shutil
    import subprocess

    db = tmp_path / "busy.duckdb"
    shutil.copy(app_store, db)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "con.execute('BEGIN TRANSACTION'); print('locked', flush=True); time.sleep(2); "
         "con.execute('COMMIT'); con.close()", str(db)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        at = _open(monkeypatch, db, "leaderboard")
    finally:
        holder.wait(timeout=30)
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 11


# --- the literature plugin and the store reads behind the pages -----------------------------------
def test_literature_plugin_registers_sourced_values():
    from warpbench.literature import ReportedResult
    from warpbench.plugins import load_registry

    registry = load_registry(strict=True)
    results = list(registry.reported_results.values())
    values = {r.method: r.value for r in results if r.dataset == "IXI"}
    assert values == {"SyN": 0.645, "NiftyReg": 0.645, "VoxelMorph-2": 0.732, "TransMorph": 0.753}
    for result in results:
        assert not result.check()
        assert result.paper and result.table and result.configuration and result.url
    assert registry.plugin_of("reported", results[0].key).name == "literature"

    class Junk:
        from warpbench.hookspecs import hookimpl

        @hookimpl
        def register_reported_results(self, register):
            register({"method": "SyN"})
            register(ReportedResult(method="X", dataset="Y", metric="accuracy", value=1.0,
                                    source="s", paper="p", table="t", family="classical",
                                    configuration="c"))
            register(results[0])  # the same value twice

    registry = load_registry(extra_plugins=[Junk()])
    reasons = " | ".join(str(p) for p in registry.problems)
    assert "expected a warpbench.literature.ReportedResult" in reasons
    assert "metric 'accuracy'" in reasons
    assert "already registered by plugin 'literature'" in reasons


def test_store_reads_for_the_app(app_store, tmp_path):
    store = Store(app_store)
    pairs = store.pair_scores()
    assert len(pairs) == 11 * 3 and set(pairs["status"]) == {"ok", "failed"}
    assert pairs[pairs["status"] == "failed"]["mean_dice"].isna().all()
    failed = store.failed_pairs()
    assert len(failed) == 3 and set(failed["dataset"]) == {"tiny-d"}
    assert Store(tmp_path / "none.duckdb").pair_scores().columns.tolist() == list(pairs.columns)

    copy = Store(tmp_path / "bulk.duckdb")
    frame = store.pairs()
    assert copy.append_frame("pairs", frame) == len(frame)
    assert len(copy.pairs()) == len(frame)
    with pytest.raises(ValueError, match="cannot append"):
        copy.append_frame("meta", frame)


def test_cached_reads_follow_the_store_and_do_not_share_a_cache(app_store, tmp_path):
    import shutil

    db = tmp_path / "copy.duckdb"
    shutil.copy(app_store, db)
    path = str(db)
    loaders.clear()
    board, runs = loaders.load_leaderboard(path), loaders.load_runs(path)
    assert "dice" in board.columns and "pairs_ok" in runs.columns  # two caches, not one
    assert len(loaders.load_summary(path)) == len(board)
    store = Store(db)  # a new run completes: the next read after the stamp's TTL sees it
    run = store.begin_run("late/default/tiny-a", {"method": "late", "preset": "default",
                                                  "params": "{}", "dataset": "tiny-a"})
    store.record_pair(run.run_id, 1, _pair("a", "b", 0.5))
    store.end_run(run.run_id, "complete")
    loaders.load_stamp.clear()
    assert len(loaders.load_leaderboard(path)) == len(board) + 1
    assert len(loaders.load_summary(path)) == len(board) + 1


def test_pair_viewer_says_why_a_pair_cannot_be_recomputed(app_store):
    config = app_store.parent / "datasets.yaml"
    run = Store(app_store).runs().iloc[0].to_dict()
    fixed, moving = "subject_000", "subject_001"
    with pytest.raises(pairview.PairViewError, match="not installed here"):
        pairview.recompute_pair(config, {**run, "method": "no-such-method"}, fixed, moving)
    with pytest.raises(pairview.PairViewError, match="learning method"):
        pairview.recompute_pair(config, {**run, "train_dataset": "tiny-b"}, fixed, moving)
    with pytest.raises(pairview.PairViewError, match="Cannot build dataset"):
        pairview.recompute_pair(config, {**run, "dataset": "oasis"}, fixed, moving)
    with pytest.raises(pairview.PairViewError, match="Cannot load the pair"):
        pairview.recompute_pair(config, run, "subject_999", moving)
