"""`warpbench merge` gives the union of stores with no duplicated row and keeps each run's
provenance; `warpbench export` writes every table as Parquet or CSV."""

import duckdb
import pandas as pd
import pytest

from warpbench.cli import main
from warpbench.runner import PairResult
from warpbench.store import Store, StoreFileError
from warpbench.store.exchange import ROW_KEYS


def provenance(method: str, host: str) -> dict:
    return {"method": method, "preset": "default", "params": "{}", "method_version": "1",
            "family": "baseline", "supervision": "none", "plugin": "toy",
            "plugin_distribution": "toy-dist", "plugin_version": "1.0", "dataset": "toy",
            "dataset_fingerprint": "f1", "train_dataset": None, "seed": 0, "device": "cpu",
            "torch_version": "2", "cuda_version": None, "warpbench_version": "0.1.0",
            "git_revision": "abc", "host": host}


def add_run(store: Store, method: str, host: str, pairs, complete: bool = True) -> str:
    state = store.begin_run(f"key-{method}", provenance(method, host), restart=True)
    for fixed, moving, dice in pairs:
        result = PairResult(fixed, moving, "ok", labels=[1, 2], dice=[dice, dice],
                            hd95=[1.0, 2.0], mean_dice=dice, mean_hd95=1.5, sdlogj=0.1,
                            folding_percent=0.0, seconds=0.5, peak_memory_mb=10, device="cpu")
        store.record_pair(state.run_id, 1, result)
    if complete:
        store.end_run(state.run_id, "complete")
    store.record_dataset({"dataset": "toy", "fingerprint": "f1", "kind": "toy", "subjects": 4,
                          "labels": {"1": "a", "2": "b"}, "mi_bits": 0.5}) \
        if not store.has_dataset("toy", "f1") else None
    return state.run_id


def table(path, name: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {name}").df()
    finally:
        con.close()


@pytest.fixture
def stores(tmp_path):
    """A holds run r1; B holds a copy of A (as a downloaded CI artifact would) plus run r2."""
    a, b = Store(tmp_path / "a.duckdb"), Store(tmp_path / "b.duckdb")
    r1 = add_run(a, "identity", "host-a", [("s0", "s1", 0.5), ("s1", "s2", 0.6)])
    b.merge_from([a.path])
    r2 = add_run(b, "greedy", "host-b", [("s0", "s1", 0.8), ("s1", "s2", 0.9), ("s2", "s0", 0.7)])
    return a, b, r1, r2


def test_merge_is_the_union_without_duplicated_rows(stores, tmp_path, capsys):
    a, b, r1, r2 = stores
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(a.path), str(b.path), "-o", str(out)]) == 0
    assert "added 2 runs, 5 pairs, 10 labels, 1 datasets" in capsys.readouterr().out
    runs = table(out, "runs")
    assert sorted(runs["run_id"]) == sorted([r1, r2])
    for name, key in [("pairs", ["run_id", "fixed", "moving", "attempt"]),
                      ("labels", ["run_id", "fixed", "moving", "attempt", "label"]),
                      ("datasets", ["dataset", "fingerprint"])]:
        rows = table(out, name)
        assert not rows.duplicated(key).any(), name
    assert len(table(out, "pairs")) == 5 and len(table(out, "labels")) == 10
    # every run keeps its provenance as it was recorded
    by_id = runs.set_index("run_id")
    assert by_id.loc[r1, "host"] == "host-a" and by_id.loc[r2, "host"] == "host-b"
    assert by_id.loc[r2, "plugin_distribution"] == "toy-dist"
    # and where it was merged from (r1 from both files, r2 from B)
    sources = table(out, "run_sources")
    assert set(sources[sources.run_id == r1]["source"]) == {str(a.path.resolve()), str(b.path.resolve())}
    assert set(sources[sources.run_id == r2]["source"]) == {str(b.path.resolve())}
    # the merged store ranks like the originals
    board = Store(out).leaderboard().set_index("method")
    assert board.loc["greedy", "pairs"] == 3 and board.loc["greedy", "dice"] == pytest.approx(0.8)

    # merging again, in any order, adds nothing
    assert main(["merge", str(b.path), str(a.path), "-o", str(out)]) == 0
    assert "added 0 runs, 0 pairs, 0 labels, 0 datasets, 0 run_sources" in capsys.readouterr().out
    assert len(table(out, "pairs")) == 5


def test_a_run_seen_half_done_then_complete_keeps_every_pair_and_its_final_status(tmp_path):
    early, late = Store(tmp_path / "early.duckdb"), Store(tmp_path / "late.duckdb")
    run = add_run(early, "identity", "h", [("s0", "s1", 0.5)], complete=False)
    late.merge_from([early.path])
    late.record_pair(run, 1, PairResult("s1", "s2", "ok", labels=[1], dice=[0.4], hd95=[1.0],
                                        mean_dice=0.4, device="cpu"))
    late.end_run(run, "complete")
    merged = Store(tmp_path / "merged.duckdb")
    merged.merge_from([early.path, late.path])
    runs = table(merged.path, "runs")
    assert list(runs["status"]) == ["complete"]
    assert len(table(merged.path, "pairs")) == 2


def test_merge_names_a_bad_input_and_leaves_no_output(tmp_path, capsys):
    (tmp_path / "notes.duckdb").write_text("not a database")
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(tmp_path / "missing.duckdb"), "-o", str(out)]) == 2
    assert f"{tmp_path / 'missing.duckdb'}: no such file" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "notes.duckdb"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "notes.duckdb: not a DuckDB file" in err and "Traceback" not in err
    assert not out.exists()
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute("CREATE TABLE something (x INTEGER)")
    other.close()
    assert main(["merge", str(tmp_path / "other.duckdb"), "-o", str(out)]) == 2
    assert "other.duckdb: not a warpbench store" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_every_table(stores, tmp_path, fmt, capsys):
    _, b, r1, r2 = stores
    out = tmp_path / "tables"
    assert main(["export", "--db", str(b.path), "--format", fmt, "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {f"{t}.{fmt}" for t in ("runs", "pairs", "labels", "datasets", "run_sources")}
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    runs = read(out / f"runs.{fmt}")
    assert set(runs["run_id"]) == {r1, r2} and "git_revision" in runs.columns
    pairs = read(out / f"pairs.{fmt}")
    assert len(pairs) == 5 and pairs["mean_dice"].max() == pytest.approx(0.9)


def test_export_names_a_missing_store(tmp_path, capsys):
    assert main(["export", "--db", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path)]) == 2
    assert "nope.duckdb: no such file" in capsys.readouterr().err


def test_check_file_accepts_a_store_and_rejects_others(stores, tmp_path):
    stores[0].check_file()
    with pytest.raises(StoreFileError, match="no such file"):
        Store(tmp_path / "x.duckdb").check_file()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_export_folder_merges_back_into_the_same_store(stores, tmp_path, fmt, capsys):
    """Results kept as exported files (in a repository, say) rebuild the store they came from."""
    _, b, r1, r2 = stores
    folder = tmp_path / "tables"
    b.export_tables(folder, fmt)
    out = tmp_path / "rebuilt.duckdb"
    assert main(["merge", str(folder), "-o", str(out)]) == 0
    assert "added 2 runs, 5 pairs, 10 labels, 1 datasets" in capsys.readouterr().out
    for name in ("runs", "pairs", "labels", "datasets"):
        original, rebuilt = table(b.path, name), table(out, name)
        assert list(rebuilt.columns) == list(original.columns)
        assert list(rebuilt.dtypes) == list(original.dtypes), name  # CSV typed by the schema
        keys = list(ROW_KEYS[name])
        pd.testing.assert_frame_equal(rebuilt.sort_values(keys).reset_index(drop=True),
                                      original.sort_values(keys).reset_index(drop=True))
    assert Store(out).leaderboard()[["method", "dice"]].equals(b.leaderboard()[["method", "dice"]])
    assert str(folder.resolve()) in set(table(out, "run_sources")["source"])
    assert main(["merge", str(folder), "-o", str(out)]) == 0  # twice adds nothing
    assert "added 0 runs, 0 pairs, 0 labels, 0 datasets" in capsys.readouterr().out


def test_a_folder_that_is_not_an_export_is_named(stores, tmp_path, capsys):
    out = tmp_path / "all.duckdb"
    folder = tmp_path / "tables"
    stores[1].export_tables(folder, "parquet")
    (folder / "pairs.parquet").unlink()
    assert main(["merge", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: not an exported warpbench store (no pairs.parquet or .csv)" in err
    stores[1].export_tables(folder, "parquet")
    (folder / "runs.csv").write_text("run_id,started_at\nr9,not a time\n")
    assert main(["merge", str(folder), "-o", str(out)]) == 2
    assert "runs.csv and runs.parquet both hold table runs" in capsys.readouterr().err
    (folder / "runs.parquet").unlink()
    assert main(["merge", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'runs.csv'}: cannot be read as table runs" in err and "Traceback" not in err
    assert not out.exists()
