"""`warpbench merge` trusts no source: it reads only the base tables of the store's own schema
(nothing of the source executed), checks their values, and refuses a source that tells a run
already in the output otherwise, while the honest progress of a run (more pairs, retried
failures, a later status) still merges."""

import shutil

import duckdb
import pytest
from test_merge import add_run, provenance, table
from test_store import copy_release_store

from warpbench.cli import main
from warpbench.runner import PairResult
from warpbench.store import Store

SECRET = "a line of a file on the merging machine"


def edit(path, *statements: str) -> None:
    """Change a store file behind warpbench's back, as a hostile author of a store would."""
    con = duckdb.connect(str(path))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


@pytest.fixture
def source(tmp_path):
    """An honest store holding one complete run of two ok pairs, and a file to keep secret."""
    store = Store(tmp_path / "source.duckdb")
    run = add_run(store, "identity", "host-a", [("s0", "s1", 0.5), ("s1", "s2", 0.6)])
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    return store.path, run, secret


def crafted(secret) -> dict[str, list[str]]:
    """Ways a store file can make its reader run something, or forge a value, on reading."""
    leak = f"read_text('{secret}')"
    return {
        "datasets is a view": [
            "DROP TABLE datasets",
            f"CREATE VIEW datasets AS SELECT content AS dataset, 'f9' AS fingerprint FROM {leak}"],
        "meta is a view": [
            "DROP TABLE meta",
            f"CREATE VIEW meta AS SELECT 'schema_version' AS key, content AS value FROM {leak}"],
        "mean_dice is generated": [
            "CREATE TABLE forged AS SELECT * EXCLUDE (mean_dice) FROM pairs", "DROP TABLE pairs",
            "CREATE TABLE pairs (run_id VARCHAR, fixed VARCHAR, moving VARCHAR, attempt INTEGER, "
            "status VARCHAR, mean_dice DOUBLE GENERATED ALWAYS AS (0.999) VIRTUAL)",
            "INSERT INTO pairs (run_id, fixed, moving, attempt, status) "
            "SELECT run_id, fixed, moving, attempt, status FROM forged", "DROP TABLE forged"],
        "labels has a foreign type": [
            "ALTER TABLE labels ALTER COLUMN dice TYPE VARCHAR",
            f"UPDATE labels SET dice = (SELECT content FROM {leak})"],
        "runs has a foreign column": [
            "ALTER TABLE runs ADD COLUMN note VARCHAR", "UPDATE runs SET note = 'x'"],
    }


@pytest.mark.parametrize("craft", ["datasets is a view", "meta is a view",
                                   "mean_dice is generated", "labels has a foreign type",
                                   "runs has a foreign column"])
def test_a_source_is_read_as_base_tables_of_the_schema_only(source, tmp_path, craft, capsys):
    path, _, secret = source
    edit(path, *crafted(secret)[craft])
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing read into an output, nothing of the secret anywhere


def test_views_and_macros_of_other_names_are_ignored_not_run(source, tmp_path, capsys):
    path, run, secret = source
    edit(path, f"CREATE VIEW leak AS SELECT * FROM read_text('{secret}')",
         f"CREATE MACRO leak_macro() AS TABLE SELECT * FROM read_text('{secret}')")
    secret.unlink()  # reading either would now fail: the merge never does
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(path), "-o", str(out)]) == 0
    assert "added 1 runs, 2 pairs" in capsys.readouterr().out
    assert list(table(out, "runs")["run_id"]) == [run]
    con = duckdb.connect(str(out), read_only=True)
    try:
        names = {n for (n,) in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        assert "leak" not in names
    finally:
        con.close()


@pytest.mark.parametrize("tamper, says", [
    ("INSERT INTO pairs SELECT * REPLACE (2 AS attempt, 0.999 AS mean_dice) FROM pairs",
     "pair s0 <- s1 has attempt 2 in the source, but the output's attempt 1 already scored it ok"),
    ("UPDATE pairs SET mean_dice = 0.999 WHERE fixed = 's0'",
     "pair s0 <- s1 attempt 1 differs: mean_dice 0.5 in the output, 0.999 in the source"),
    ("UPDATE labels SET dice = 0.999 WHERE fixed = 's1' AND label = 2",
     "label 2 of pair s1 <- s2 attempt 1 differs: dice 0.6 in the output, 0.999 in the source"),
    ("DELETE FROM labels WHERE fixed = 's1' AND label = 2",
     "label 2 of pair s1 <- s2 attempt 1 differs: only in the output"),
    ("INSERT INTO pairs SELECT * REPLACE ('s9' AS fixed) FROM pairs WHERE fixed = 's0'",
     "pair s9 <- s1 is in the source but not in this complete run in the output"),
    ("UPDATE runs SET method_version = '2'",
     "differs: method_version '1' in the output, '2' in the source"),
])
def test_a_source_that_tells_a_run_otherwise_is_refused_whole(source, tmp_path, tamper, says,
                                                              capsys):
    path, run, _ = source
    out = tmp_path / "all.duckdb"
    Store(out).merge_from([path])
    before = {name: table(out, name) for name in ("runs", "pairs", "labels")}
    board = Store(out).leaderboard()
    tampered = tmp_path / "tampered.duckdb"
    shutil.copy(path, tampered)
    add_run(Store(tampered), "greedy", "host-b", [("s0", "s1", 0.8)])  # never merged either
    edit(tampered, tamper)

    assert main(["merge", str(tampered), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tampered}: refused, it contradicts {out} on run {run} "
                          "(identity on toy): ") and err.count("\n") == 1
    assert says in err and f"nothing of {tampered} was merged" in err
    for name, rows in before.items():
        assert table(out, name).equals(rows), name
    assert Store(out).leaderboard().equals(board)
    # the same, between two sources into a new output: no output
    fresh = tmp_path / "fresh.duckdb"
    assert main(["merge", str(path), str(tampered), "-o", str(fresh)]) == 2
    assert not fresh.exists()


def failed(fixed: str, moving: str) -> PairResult:
    return PairResult(fixed, moving, "failed", error="ran out of time", device="cpu")


def test_a_later_state_of_a_run_merges(tmp_path):
    """More pairs, retried failures and a later status are a run's progress, not a conflict."""
    early = Store(tmp_path / "early.duckdb")
    state = early.begin_run("key-greedy", provenance("greedy", "host-a"))
    early.record_pair(state.run_id, 1, failed("s0", "s1"))
    early.end_run(state.run_id, "interrupted")
    late = Store(shutil.copy(early.path, tmp_path / "late.duckdb"))
    resumed = late.begin_run("key-greedy", provenance("greedy", "host-a"))
    assert resumed.run_id == state.run_id and resumed.attempts == {("s0", "s1"): 1}
    late.record_pair(state.run_id, 2, PairResult("s0", "s1", "ok", labels=[1], dice=[0.7],
                                                 hd95=[1.0], mean_dice=0.7, device="cpu"))
    late.record_pair(state.run_id, 1, PairResult("s1", "s2", "ok", labels=[1], dice=[0.9],
                                                 hd95=[1.0], mean_dice=0.9, device="cpu"))
    late.end_run(state.run_id, "complete")

    out = Store(tmp_path / "all.duckdb")
    out.merge_from([early.path])
    assert out.merge_from([late.path])["pairs"] == 2
    board = out.leaderboard().set_index("method")
    assert board.loc["greedy", "pairs"] == 2 and board.loc["greedy", "dice"] == pytest.approx(0.8)


def test_a_later_interrupted_status_never_undoes_a_complete_run(source, tmp_path):
    """A complete run resumed to retry a failed pair may be interrupted: it stays ranked."""
    path, run, _ = source
    out = Store(tmp_path / "all.duckdb")
    out.merge_from([path])
    later = tmp_path / "later.duckdb"
    shutil.copy(path, later)
    edit(later, "UPDATE runs SET status = 'interrupted', ended_at = ended_at + INTERVAL 1 HOUR")
    out.merge_from([later])
    assert list(table(out.path, "runs")["status"]) == ["complete"]
    assert list(out.leaderboard()["method"]) == ["identity"]


@pytest.mark.parametrize("tamper, says", [
    ("ALTER TABLE pairs DROP COLUMN mean_dice",
     "2 rows of table pairs are ok but have no mean_dice (the table has no such column)"),
    ("UPDATE pairs SET mean_dice = NULL WHERE fixed = 's1'",
     "1 rows of table pairs are ok but have no mean_dice (the first: run_id "),
    ("CREATE TABLE doubled AS SELECT * FROM pairs UNION ALL SELECT * FROM pairs "
     "WHERE fixed = 's1'; DROP TABLE pairs; ALTER TABLE doubled RENAME TO pairs",
     "table pairs has 2 rows for run_id "),
])
def test_a_source_missing_required_values_is_refused_naming_it(source, tmp_path, tamper, says,
                                                               capsys):
    path, _, _ = source
    edit(path, tamper)
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and says in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_export_folder_goes_through_the_same_checks(source, tmp_path, fmt, capsys):
    path, _, _ = source
    folder = tmp_path / "tables"
    Store(path).export_tables(folder, fmt)
    pairs = folder / f"pairs.{fmt}"
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT * EXCLUDE (mean_dice) FROM '{pairs}') "
                    f"TO '{tmp_path / pairs.name}' ({options})")
    finally:
        con.close()
    shutil.move(tmp_path / pairs.name, pairs)
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder}: 2 rows of table pairs are ok but have no mean_dice")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_store_and_its_export_are_one_state_of_its_runs(source, tmp_path, fmt):
    """An export holds the same values as its store (no conflict from a round trip through CSV)."""
    path, _, _ = source
    folder = tmp_path / "tables"
    Store(path).export_tables(folder, fmt)
    out = Store(tmp_path / "all.duckdb")
    out.merge_from([path])
    assert sum(out.merge_from([folder]).values()) == 1  # only where it came from, in run_sources


def test_a_store_of_the_last_release_merges_and_merges_again_as_no_conflict(tmp_path):
    """The release stored a trained run without in_domain, which the output states itself."""
    release = copy_release_store(tmp_path)
    out = Store(tmp_path / "all.duckdb")
    assert out.merge_from([release])["pairs"] == 18
    assert sum(out.merge_from([release]).values()) == 0


def trained(path, key: str, weights: str) -> None:
    """A complete training of ``key`` whose weights are ``weights``."""
    store = Store(path)
    store.begin_training(key, {"method": "voxelmorph", "preset": "default", "params": "{}",
                               "method_version": "1", "train_dataset": "toy",
                               "train_dataset_fingerprint": "f1", "seed": 0}, "folder")
    store.end_training(key, "complete", seconds=1.0, weights=weights, steps=10)


def test_a_complete_training_keeps_its_weights_and_a_forged_one_is_refused(tmp_path, capsys):
    """The output's runs were evaluated with its own weights: a source that trained the same key
    elsewhere (later) does not repoint them, and one that names another method or dataset under
    the key is refused."""
    out, other = tmp_path / "out.duckdb", tmp_path / "other.duckdb"
    trained(out, "k1", "here/weights.pt")
    trained(other, "k1", "elsewhere/weights.pt")
    assert main(["merge", str(other), "-o", str(out)]) == 0
    assert list(table(out, "trainings")["weights"]) == ["here/weights.pt"]

    edit(other, "UPDATE trainings SET train_dataset = 'hippocampus'")
    assert main(["merge", str(other), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"refused, it contradicts {out} on training k1 (voxelmorph on toy): its row differs: "
            "train_dataset 'toy' in the output, 'hippocampus' in the source") in err
    assert list(table(out, "trainings")["train_dataset"]) == ["toy"]


def test_a_macro_named_like_a_built_in_runs_neither_in_merge_nor_in_a_read(source, tmp_path,
                                                                           capsys):
    """A file's macros shadow built-in functions where it is the default database: a merge vets
    it attached instead, and every read of a store is sealed from other files."""
    path, _, secret = source
    edit(path, f"CREATE MACRO lower(x) AS CASE WHEN x = 'runs' THEN (SELECT content FROM "
               f"read_text('{secret}')) ELSE lcase(x) END",
         "DROP VIEW latest_runs",
         f"CREATE VIEW latest_runs AS SELECT * REPLACE ((SELECT content FROM "
         f"read_text('{secret}')) AS method) FROM runs")
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(path), "-o", str(out)]) == 0  # its tables are honest
    assert SECRET not in capsys.readouterr().err
    assert list(table(out, "runs")["method"]) == ["identity"]
    assert main(["leaderboard", "--db", str(path)]) == 2  # the forged view may not read the file
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: refused, a view or macro stored in it reads other "
                          "files") and SECRET not in err


def test_a_source_that_repeats_a_training_key_is_refused(tmp_path, capsys):
    source = tmp_path / "source.duckdb"
    trained(source, "k1", "one/weights.pt")
    edit(source, "INSERT INTO trainings SELECT * REPLACE ('two/weights.pt' AS weights) "
                 "FROM trainings")
    assert main(["merge", str(source), "-o", str(tmp_path / "out.duckdb")]) == 2
    assert "table trainings has 2 rows for training_key 'k1'" in capsys.readouterr().err
    assert not (tmp_path / "out.duckdb").exists()


def test_a_store_of_schema_4_without_tuning_tables_merges(source, tmp_path, capsys):
    """Before version 5 a store had no tunings: its runs merge, and the output's tunings stay."""
    path, run, _ = source
    edit(path, "DROP VIEW latest_runs", "DROP VIEW tuned_presets",
         "DROP TABLE tuning_pairs", "DROP TABLE tuning_trials", "DROP TABLE tunings",
         "ALTER TABLE runs DROP COLUMN pre_aligned", "ALTER TABLE runs DROP COLUMN same_labels",
         "CREATE VIEW latest_runs AS SELECT * FROM runs WHERE status = 'complete' QUALIFY "
         "row_number() OVER (PARTITION BY config_key ORDER BY started_at DESC) = 1",
         "UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    out = tmp_path / "all.duckdb"
    assert main(["merge", str(path), "-o", str(out)]) == 0
    assert ("added 1 runs, 2 pairs, 4 labels, 1 datasets, 1 run_sources, 0 trainings, "
            "0 training_curves, 0 tunings, 0 tuning_trials, 0 tuning_pairs") in \
        capsys.readouterr().out
    assert list(table(out, "runs")["run_id"]) == [run]
    assert Store(out).tunings().empty
    assert main(["merge", str(path), "-o", str(out)]) == 0  # and again, as no conflict
    assert "added 0 runs, 0 pairs" in capsys.readouterr().out
