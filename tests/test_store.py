"""The DuckDB store: provenance, resume bookkeeping, reading while another process writes, waiting
on a lock, and upgrading a store written by the last release (a fixture) in place."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from warpbench.cli import main
from warpbench.compatibility import in_domain
from warpbench.runner import PairResult
from warpbench.store import LEADERBOARD_COLUMNS, SCHEMA_VERSION, Store, StoreBusy, StoreFileError
from warpbench.store import locks

FIXTURES = Path(__file__).parent / "fixtures"

PROVENANCE = {"method": "m", "preset": "default", "params": "{}", "family": "baseline",
              "supervision": "none", "dataset": "d", "seed": 0}


def ok(fixed, moving, dice=0.5):
    return PairResult(fixed, moving, "ok", labels=[1, 2], dice=[dice, None], hd95=[1.0, None],
                      mean_dice=dice, mean_hd95=1.0, sdlogj=0.1, folding_percent=0.0,
                      seconds=0.1, peak_memory_mb=3.0, device="cpu")


def test_an_empty_or_missing_store_reads_as_empty_tables(tmp_path):
    store = Store(tmp_path / "none.duckdb")
    assert store.leaderboard().empty and "dice" in store.leaderboard().columns
    assert store.runs().empty and store.pairs().empty
    assert not (tmp_path / "none.duckdb").exists()  # reading never creates the file


def test_resume_reports_done_pairs_and_attempts(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    state = store.begin_run("key", PROVENANCE)
    assert not state.resumed
    store.record_pair(state.run_id, 1, ok("a", "b"))
    store.record_pair(state.run_id, 1, PairResult("b", "a", "failed", error="boom"))
    again = store.begin_run("key", PROVENANCE)
    assert again.resumed and again.run_id == state.run_id
    assert again.done == {("a", "b")}
    assert again.attempts == {("a", "b"): 1, ("b", "a"): 1}
    fresh = store.begin_run("key", PROVENANCE, restart=True)
    assert fresh.run_id != state.run_id and not fresh.done
    # A NULL per-label Dice (label absent from both) is kept as NULL, not as a number.
    labels = store.label_scores(state.run_id)
    assert labels.set_index("label")["dice"].isna().tolist() == [False, True]


def test_the_leaderboard_shows_the_newest_complete_run_of_each_configuration(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    old = store.begin_run("key", PROVENANCE)
    store.record_pair(old.run_id, 1, ok("a", "b", 0.4))
    store.end_run(old.run_id, "complete")
    time.sleep(0.01)
    new = store.begin_run("key", PROVENANCE, restart=True)
    store.record_pair(new.run_id, 1, ok("a", "b", 0.8))
    assert store.leaderboard()["dice"].tolist() == [0.4]  # the new one is not complete yet
    store.end_run(new.run_id, "complete")
    assert store.leaderboard()["dice"].tolist() == [0.8]


def test_a_method_version_since_replaced_leaves_the_leaderboard_and_the_study(tmp_path):
    """After a method's version changes, its preset's newest run is the result: one row per name,
    and the study pairs each network with one classical run, not with every version's."""
    from warpbench import study

    store = Store(tmp_path / "s.duckdb")
    runs = [("syn", "2", "classical", None, 0.70), ("syn", "3", "classical", None, 0.75),
            ("syn", "3", "classical", 1, 0.6),  # another seed is another result
            ("net", "1", "learning", "d", 0.65)]
    for method, version, family, other, dice in runs:
        provenance = {**PROVENANCE, "method": method, "method_version": version,
                      "family": family, "supervision": "labels"}
        if family == "learning":
            provenance.update(train_dataset=other, in_domain=True)
        elif other is not None:
            provenance["seed"] = other
        state = store.begin_run(f"{method}-{version}-{other}", provenance)
        for fixed in "abc":
            store.record_pair(state.run_id, 1, ok(fixed, "z", dice + 0.01 * "abc".index(fixed)))
        store.end_run(state.run_id, "complete")
        time.sleep(0.01)
    board = store.leaderboard().sort_values(["method", "dice"])
    assert board[["method", "dice"]].round(3).values.tolist() == [
        ["net", 0.66], ["syn", 0.61], ["syn", 0.76]]
    assert len(store.pair_scores()) == 9
    scores = study.pair_scores(board[board["dice"] != 0.61], store.pair_scores())
    margins = study.in_domain_margins(scores, "labels", classical="syn:default")
    assert margins[["pairs", "classical"]].values.tolist() == [[3, pytest.approx(0.76)]]
    assert len(store.runs()) == 4  # the replaced version's run stays in the store


WRITER = """
from test_store import PROVENANCE, ok
from warpbench.store import Store
store = Store({path!r})
state = store.begin_run("key", PROVENANCE)
for i in range(20):
    store.record_pair(state.run_id, 1, ok(f"f{{i}}", "m"))
store.end_run(state.run_id, "complete")
"""


def test_readers_work_while_another_process_writes(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).initialise()
    tests = str(Path(__file__).parent)  # the writer imports this module's helpers
    script = textwrap.dedent(WRITER.format(path=str(path)))
    writer = subprocess.Popen([sys.executable, "-c", script],
                              env={**os.environ, "PYTHONPATH": tests})
    reader = Store(path)
    reads = 0
    while writer.poll() is None:
        reader.leaderboard()
        reads += 1
        time.sleep(0.1)  # a page refresh, not a busy loop
    assert writer.returncode == 0
    assert reads > 0
    assert reader.leaderboard()["pairs"].tolist() == [20]


# --- in_domain: worked out once, stored with the run, read by everyone -------------------------
def domains(frame: pd.DataFrame) -> dict:
    """{(train dataset or None, dataset): in_domain or None} of a leaderboard or runs frame."""
    return {(None if pd.isna(train) else train, dataset): None if pd.isna(value) else bool(value)
            for train, dataset, value in zip(frame["train_dataset"], frame["dataset"],
                                             frame["in_domain"])}


def test_the_leaderboard_reads_in_domain_as_stored_and_a_bulk_append_fills_it_in(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    for train, dataset in [(None, "d"), ("d", "d"), ("d", "e")]:
        state = store.begin_run(f"{train}-{dataset}", {
            **PROVENANCE, "dataset": dataset, "train_dataset": train,
            "in_domain": in_domain(train, dataset)})
        store.record_pair(state.run_id, 1, ok("a", "b"))
        store.end_run(state.run_id, "complete")
    board = store.leaderboard()
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert LEADERBOARD_COLUMNS[-3:] == ["in_domain", "same_labels", "pre_aligned"]
    expected = {(None, "d"): None, ("d", "d"): True, ("d", "e"): False}
    assert domains(board) == expected

    # Rows from elsewhere (a benchmark, an import) carry no in_domain: the store states it.
    runs = store.runs()[["run_id", "config_key", "method", "preset", "params", "dataset",
                         "train_dataset", "status", "started_at"]]
    bulk = Store(tmp_path / "bulk.duckdb")
    bulk.append_frame("runs", runs)
    assert domains(bulk.runs()) == expected


# --- the lock, and files that are not stores ---------------------------------------------------
HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold(path, mode: str, seconds: float) -> subprocess.Popen:
    """Another process holding ``path`` open for ``seconds`` (``mode``: read or write)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode, str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_store_held_by_another_process_is_waited_for_then_busy(tmp_path, monkeypatch):
    path = tmp_path / "s.duckdb"
    Store(path).initialise()
    monkeypatch.setattr(locks, "LOCK_WAIT_SECONDS", 0.5)
    holder = hold(path, "write", 60)
    try:
        start = time.monotonic()
        with pytest.raises(StoreBusy, match="stayed locked by another process"):
            Store(path).leaderboard()
        assert time.monotonic() - start >= 0.5
        with pytest.raises(StoreBusy):
            Store(path).begin_run("key", PROVENANCE)
        assert locks.held_by_another_process(path, exclusive=False)
    finally:
        holder.kill()
        holder.wait()
    assert not locks.held_by_another_process(path, exclusive=True)

    readers = hold(path, "read", 60)  # readers share the file, a writer waits for them
    try:
        assert Store(path).leaderboard().empty  # read at once, beside the other reader
        assert locks.held_by_another_process(path, exclusive=True)
        with pytest.raises(StoreBusy):
            Store(path).initialise()
    finally:
        readers.kill()
        readers.wait()

    monkeypatch.setattr(locks, "LOCK_WAIT_SECONDS", 30.0)
    holder = hold(path, "write", 1.0)  # let go after a second: the read waits, then succeeds
    start = time.monotonic()
    assert Store(path).leaderboard().empty
    assert time.monotonic() - start >= 0.5
    holder.wait()


@pytest.mark.parametrize("content", [b"not a database", b""])
def test_a_file_that_is_not_a_duckdb_file_is_refused_at_once(tmp_path, monkeypatch, content):
    monkeypatch.setattr(locks, "LOCK_WAIT_SECONDS", 30.0)
    path = tmp_path / "notes.duckdb"
    path.write_bytes(content)
    start = time.monotonic()
    with pytest.raises(StoreFileError, match=re.escape(f"{path}: not a DuckDB file")):
        Store(path).leaderboard()
    with pytest.raises(StoreFileError, match=re.escape(f"{path}: not a DuckDB file")):
        Store(path).begin_run("key", PROVENANCE)
    with pytest.raises(StoreFileError, match=re.escape(f"{tmp_path}: cannot be opened")):
        Store(tmp_path).runs()  # a folder
    assert time.monotonic() - start < 5  # no waiting for a lock nobody holds
    assert path.read_bytes() == content


# --- schema versions: a store of the last release is upgraded, a newer one refused -------------
def copy_release_store(folder: Path) -> Path:
    """A copy of the store the last release wrote (schema version 2; tests/fixtures/
    make_release_store.py made it), with the datasets.yaml it used beside it."""
    shutil.copy(FIXTURES / "release_datasets.yaml", folder / "datasets.yaml")
    return Path(shutil.copy(FIXTURES / "release-v2.duckdb", folder / "release.duckdb"))


def stored_version(path: Path) -> str | None:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row[0] if row else None


def everything(store: Store) -> dict[str, pd.DataFrame]:
    return {"leaderboard": store.leaderboard(), "runs": store.runs(), "pairs": store.pairs(),
            "labels": store.label_scores(), "datasets": store.datasets(),
            "trainings": store.trainings(), "curves": store.training_curves()}


def test_a_store_of_the_last_release_is_upgraded_in_place_and_its_results_are_unchanged(tmp_path):
    path = copy_release_store(tmp_path)
    store = Store(path)
    before = everything(store)  # read as it stands: reads never upgrade
    assert stored_version(path) == "2"
    assert len(before["leaderboard"]) == 6 and len(before["pairs"]) == 18
    assert len(before["trainings"]) == 1 and len(before["curves"]) == 3
    # The release stored the shifted run without in_domain (as a bulk append leaves it), the
    # in-domain one with it: reads state the missing one as the upgrade will.
    learned = before["leaderboard"][before["leaderboard"]["method"] == "voxelmorph"]
    assert domains(learned) == {("fixture-a", "fixture-a"): True, ("fixture-a", "fixture-b"): False}
    with duckdb.connect(str(path), read_only=True) as con:  # ... without writing it
        assert con.execute("SELECT count(*) FROM runs WHERE train_dataset IS NOT NULL "
                           "AND in_domain IS NULL").fetchone()[0] == 1

    store.initialise()
    assert stored_version(path) == str(SCHEMA_VERSION)
    after = everything(Store(path))
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)
    assert domains(after["leaderboard"]) == {
        (None, "fixture-a"): None, (None, "fixture-b"): None,
        ("fixture-a", "fixture-a"): True, ("fixture-a", "fixture-b"): False}
    assert domains(after["runs"]) == domains(after["leaderboard"])
    Store(path).initialise()  # upgrading is done once; a second open changes nothing
    pd.testing.assert_frame_equal(Store(path).runs(), after["runs"])


@pytest.mark.parametrize("forget", ["DROP TABLE meta", "DELETE FROM meta"])
def test_a_store_without_a_recorded_version_is_version_1_and_is_upgraded(tmp_path, forget):
    """The first stores had no training tables and no in_domain or training_key columns."""
    path = copy_release_store(tmp_path)
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM runs WHERE train_dataset IS NOT NULL")
        for statement in ["DROP TABLE trainings", "DROP TABLE training_curves", forget,
                          "ALTER TABLE runs DROP COLUMN in_domain",
                          "ALTER TABLE runs DROP COLUMN training_key"]:
            con.execute(statement)
    board = Store(path).leaderboard()  # readable before the upgrade
    assert len(board) == 4 and board["in_domain"].isna().all()
    assert Store(path).trainings().empty

    Store(path).initialise()
    assert stored_version(path) == str(SCHEMA_VERSION)
    assert {"in_domain", "training_key"} <= set(Store(path).runs().columns)
    assert Store(path).training("nothing") is None  # the training tables exist now
    upgraded = Store(path).leaderboard()
    assert upgraded["in_domain"].isna().all()  # none of them was trained
    columns = LEADERBOARD_COLUMNS[:-3]
    pd.testing.assert_frame_equal(upgraded[columns], board[columns])


def test_a_store_of_a_newer_schema_is_refused_naming_the_file_and_both_versions(tmp_path, capsys):
    path = copy_release_store(tmp_path)
    newer = SCHEMA_VERSION + 1
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(newer)])
    message = (f"{path}: written by a newer warpbench (store schema version {newer}; "
               f"this warpbench knows versions up to {SCHEMA_VERSION})")
    store = Store(path)
    for refused in (store.leaderboard, store.runs, store.check_file, store.initialise,
                    lambda: store.begin_run("key", PROVENANCE)):
        with pytest.raises(StoreFileError) as raised:
            refused()
        assert str(raised.value).startswith(message)
    assert stored_version(path) == str(newer)  # untouched
    assert main(["export", "--db", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_a_commit_that_fails_raises_its_own_error_not_the_rollbacks():
    """A full disk fails the COMMIT, which ends the transaction: what the user reads must be
    that failure, not "cannot rollback - no transaction is active" chained after it."""
    import duckdb

    from warpbench.store.connection import transaction

    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(duckdb.TransactionException, match="cannot commit") as caught:
        with transaction(con):
            con.execute("INSERT INTO t VALUES (1)")
            con.execute("COMMIT")  # the transaction ends early, as a failed commit leaves it
    assert caught.value.__context__ is None
