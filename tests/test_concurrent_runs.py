"""Two writers on one store (issue 18, defect 3): one writes at a time, the other waits or is
refused naming whom for, a crashed holder blocks nobody, and a result is stored once whatever
writes it twice (the schema's keys), including in an older store that holds duplicates."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from test_store import PROVENANCE, copy_release_store, everything, ok, stored_version
from warpbench.runner import PairResult
from warpbench.store import SCHEMA_VERSION, AlreadyStored, Store, StoreBusy, lease

TESTS = str(Path(__file__).parent)  # the subprocesses import test_store's helpers

# What a scheduler's run does: hold the lease, resume (or begin) the run, score what is left.
RUN = """
import sys, time
from test_store import PROVENANCE, ok
from warpbench.store import Store, lease
lease.LEASE_WAIT_SECONDS = 120.0  # a loaded machine must not turn this test's wait into a refusal
store = Store(sys.argv[1])
with store.writer_lease("warpbench run"):
    print("leased", flush=True)
    if sys.argv[2] == "wait-for-go":
        sys.stdin.readline()
    state = store.begin_run("key", PROVENANCE)
    for i in range(10):
        if (f"f{i}", "m") not in state.done:
            store.record_pair(state.run_id, state.attempts.get((f"f{i}", "m"), 0) + 1,
                              ok(f"f{i}", "m"))
    store.end_run(state.run_id, "complete")
"""


def start(script: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args],
                            env={**os.environ, "PYTHONPATH": TESTS}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def duplicated_keys(path: Path) -> dict[str, int]:
    """How many rows of pairs, labels and datasets repeat another's key."""
    keys = {"pairs": "run_id, fixed, moving, attempt",
            "labels": "run_id, fixed, moving, attempt, label", "datasets": "dataset, fingerprint"}
    return {table: stored(path, f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}")[0][0]
            for table, key in keys.items()}


def stored(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_second_run_on_a_store_waits_for_the_first_saying_whom_for_and_stores_nothing_twice(
        tmp_path):
    path = tmp_path / "s.duckdb"
    first = start(RUN, str(path), "wait-for-go", stdin=subprocess.PIPE)
    second = None
    try:
        assert first.stdout.readline().strip() == "leased"
        second = start(RUN, str(path), "go")
        waiting = next((line for line in second.stderr if "waiting" in line), "")
        assert waiting.startswith(f"{path}: waiting up to 120 s for pid {first.pid} on host "
                                  f"{socket.gethostname()} since ")
        assert waiting.rstrip().endswith("(warpbench run), which is writing it")
        first.stdin.write("go\n")
        first.stdin.close()
        assert first.wait(120) == 0
        assert second.wait(120) == 0, second.stderr.read()
        assert second.stdout.read().strip() == "leased"  # after the first let go
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    store = Store(path)
    assert len(store.runs()) == 1  # the second resumed the first's run: nothing left to do
    assert store.leaderboard()["pairs"].tolist() == [10]
    assert len(store.pairs()) == 10 and len(store.label_scores()) == 20
    assert duplicated_keys(path) == {"pairs": 0, "labels": 0, "datasets": 0}


HOLDER = """
import os, signal, sys, time
from warpbench.store import Store
with Store(sys.argv[1]).writer_lease("a long training"):
    print("held", flush=True)
    if sys.argv[2] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def test_a_writer_is_refused_after_a_bounded_wait_naming_the_store_and_its_holder(
        tmp_path, monkeypatch, caplog):
    path = tmp_path / "s.duckdb"
    Store(path).initialise()
    monkeypatch.setattr(lease, "LEASE_WAIT_SECONDS", 0.5)
    holder = start(HOLDER, str(path), "hold")
    try:
        assert holder.stdout.readline().strip() == "held"
        named = f"pid {holder.pid} on host {socket.gethostname()} since "
        start_time = time.monotonic()
        with pytest.raises(StoreBusy) as refused:
            Store(path).begin_run("key", PROVENANCE)
        assert time.monotonic() - start_time >= 0.5
        message = str(refused.value)
        assert message.startswith(f"{path}: being written by {named}")
        assert "(a long training); waited 0.5 s for it: try again once it has finished" in message
        assert f"{path}: waiting up to 0.5 s for {named}" in caplog.text
        with pytest.raises(StoreBusy, match="being written by"):
            with Store(path).writer_lease("warpbench run"):
                pass
        assert Store(path).leaderboard().empty  # readers take no lease
    finally:
        holder.kill()
        holder.wait()
    Store(path).begin_run("key", PROVENANCE)  # once it has gone the store is free again
    with Store(tmp_path / "new" / "s.duckdb").writer_lease("warpbench run"):  # in a new folder
        pass


def test_the_lease_of_a_holder_killed_while_holding_it_is_taken_over_at_once(
        tmp_path, monkeypatch, caplog):
    path = tmp_path / "s.duckdb"
    monkeypatch.setattr(lease, "LEASE_WAIT_SECONDS", 60.0)
    crashed = start(HOLDER, str(path), "crash")
    assert crashed.stdout.readline().strip() == "held"
    assert crashed.wait(60) == -signal.SIGKILL
    start_time = time.monotonic()
    Store(path).begin_run("key", PROVENANCE)
    assert time.monotonic() - start_time < 10  # no waiting on a process that is gone
    assert (f"{path}: taking over the writer lease of pid {crashed.pid} on host "
            f"{socket.gethostname()} since ") in caplog.text
    assert "(a long training), which ended without releasing it" in caplog.text
    caplog.clear()
    Store(path).begin_run("other", PROVENANCE)  # released cleanly: nothing to take over
    assert "taking over" not in caplog.text


def test_a_result_is_stored_once_whoever_writes_it_twice(tmp_path):
    """Two writers that skip the lease (an older warpbench, a script) on the same run: the
    schema's keys refuse the second copy of an attempt, and of a dataset's description."""
    path = tmp_path / "s.duckdb"
    mine, theirs = Store(path), Store(path)
    state = mine.begin_run("key", PROVENANCE)
    assert theirs.begin_run("key", PROVENANCE).run_id == state.run_id
    mine.record_pair(state.run_id, 1, ok("a", "b", 0.4))
    with pytest.raises(AlreadyStored, match=f"{path}: attempt 1 of pair a <- b of run "
                                            f"{state.run_id} is stored already"):
        theirs.record_pair(state.run_id, 1, ok("a", "b", 0.9))
    theirs.record_pair(state.run_id, 2, PairResult("a", "b", "failed", error="boom"))  # a retry
    assert stored(path, "SELECT attempt, mean_dice FROM pairs") == [(1, 0.4), (2, None)]
    assert stored(path, "SELECT dice FROM labels") == [(0.4,), (None,)]  # none of the refused

    description = {"dataset": "d", "fingerprint": "f1", "kind": "toy", "mi_bits": 1.0}
    mine.record_dataset(description)
    theirs.record_dataset({**description, "mi_bits": 2.0})
    assert mine.datasets()["mi_bits"].tolist() == [1.0]

    with pytest.raises(duckdb.ConstraintException):  # a bulk append cannot slip one in either
        theirs.append_frame("pairs", mine.pairs().head(1))
    with duckdb.connect(str(path)) as con, pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO labels SELECT * FROM labels LIMIT 1")
    assert duplicated_keys(path) == {"pairs": 0, "labels": 0, "datasets": 0}


def test_upgrading_a_store_that_holds_duplicates_keeps_one_row_per_key_and_says_how_many_went(
        tmp_path, caplog):
    path = copy_release_store(tmp_path)
    pristine = shutil.copy(path, tmp_path / "pristine.duckdb")
    with duckdb.connect(str(path)) as con:  # what two runs on one store left before version 4
        run_id = con.execute("SELECT run_id FROM pairs ORDER BY run_id LIMIT 1").fetchone()[0]
        con.execute("INSERT INTO pairs SELECT * FROM pairs WHERE run_id = ?", [run_id])
        con.execute("INSERT INTO labels SELECT * FROM labels WHERE run_id = ?", [run_id])
        con.execute("INSERT INTO datasets SELECT * REPLACE (computed_at - INTERVAL 1 DAY AS "
                    "computed_at, -1.0 AS mi_bits) FROM datasets")
    duplicated = duplicated_keys(path)
    assert duplicated["pairs"] > 0 and duplicated["labels"] > 0 and duplicated["datasets"] > 0

    Store(path).initialise()
    assert stored_version(path) == str(SCHEMA_VERSION)
    assert duplicated_keys(path) == {"pairs": 0, "labels": 0, "datasets": 0}
    assert (f"{path}: upgraded to schema version 4, which stores each result once: dropped the "
            f"duplicates of older writes ({duplicated['pairs']} pairs rows, "
            f"{duplicated['labels']} labels rows, {duplicated['datasets']} datasets rows)"
            in caplog.text)
    upgraded, clean = everything(Store(path)), everything(Store(pristine))
    for name, frame in clean.items():  # what a clean store of the same runs reads, row for row
        pd.testing.assert_frame_equal(upgraded[name], frame, obj=name)
    fixed, moving = Store(path).pairs(run_id).iloc[0][["fixed", "moving"]]
    with pytest.raises(AlreadyStored):  # and from now on a duplicate cannot be stored
        Store(path).record_pair(run_id, 1, ok(fixed, moving))
