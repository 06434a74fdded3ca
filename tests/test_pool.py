"""The pool executor, the default: a method that segfaults, exits, eats memory or hangs costs
only its own pairs, stored with the cause, and everything else of the run is stored; a worker or
the whole command killed with -9 loses nothing that a re-run does not complete, and duplicates
nothing; trainings run on two workers at once; a result that arrives twice is stored once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import torch

import hostile_plugins
from toy_plugins import ToyPlugin
from warpbench import plugins as plugin_loading
from warpbench.cli import main
from warpbench.config import load_config
from warpbench.executors import ExecutorError, InProcessExecutor, PairDone, PoolExecutor, pool
from warpbench.executors.pool import plan_slots
from warpbench.scheduler import Scheduler, make_plan
from warpbench.store import Store

WARPBENCH = [sys.executable, "-m", "warpbench.cli"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with the hostile plugin installed, its datasets.yaml, and a notes folder."""
    hostile_plugins.install(tmp_path / "site", monkeypatch)
    (tmp_path / "datasets.yaml").write_text(hostile_plugins.CONFIG)
    notes = tmp_path / "notes"
    notes.mkdir()
    monkeypatch.setenv(hostile_plugins.NOTES, str(notes))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def outcomes(db) -> dict[str, dict[tuple[str, str], tuple[str, str | None]]]:
    """method -> (fixed, moving) -> (status, error) of each pair's latest attempt."""
    found: dict = {}
    for method, fixed, moving, status, error in rows(db, """
            SELECT r.method, p.fixed, p.moving, p.status, p.error
            FROM latest_pairs p JOIN runs r USING (run_id)"""):
        found.setdefault(method, {})[(fixed, moving)] = (status, error)
    return found


def run(*args: str) -> int:
    return main(["run", "--quiet", "--db", "wb.duckdb", *args])


def test_a_crash_or_an_exit_costs_only_the_pairs_it_was_registering(workdir, capsys):
    status = run("--dataset", "toy-b", "--method", "hostile-segfault", "--method",
                 "hostile-exit", "--method", "toy-shift")
    err = capsys.readouterr().err
    assert status == 1, err
    found = outcomes(workdir / "wb.duckdb")
    crashed = {("s0", "s3"), ("s3", "s0")}  # the fixed subject's boxes are not shifted
    for pair, (outcome, error) in found["hostile-segfault"].items():
        if pair in crashed:
            assert outcome == "failed"
            assert error == f"worker killed by SIGSEGV while registering {pair[0]} <- {pair[1]}"
        else:
            assert (outcome, error) == ("ok", None)
    assert {error for _, error in found["hostile-exit"].values()} == {
        f"worker exited with status 3 while registering {f} <- {m}"
        for f, m in found["hostile-exit"]}
    assert len(found["hostile-exit"]) == 4
    assert set(found["toy-shift"].values()) == {("ok", None)} and len(found["toy-shift"]) == 4
    assert "hostile-segfault:default on toy-b: s0 <- s3: worker killed by SIGSEGV" in err
    assert {s for (s,) in rows(workdir / "wb.duckdb", "SELECT status FROM runs")} == {"complete"}


def test_a_worker_past_its_memory_limit_is_killed_and_its_pair_failed(workdir):
    assert run("--dataset", "train-a", "--method", "hostile-allocates", "--method", "toy-shift",
               "--memory-limit", "1200") == 1
    found = outcomes(workdir / "wb.duckdb")
    ((outcome, error),) = found["hostile-allocates"].values()
    assert outcome == "failed" and error.startswith("worker killed: its memory reached ")
    assert error.endswith("over the limit of 1200 MB while registering s3 <- s1")
    assert list(found["toy-shift"].values()) == [("ok", None)]


def test_a_hang_costs_its_pair_and_the_next_method_is_not_blamed(workdir, monkeypatch):
    """A Python loop is stopped by the worker's own limit, a call that holds the interpreter by
    killing its worker (1 s past twice its limit here); either way the worker is replaced, so
    toy-shift's pairs after them are scored, not timed out."""
    monkeypatch.setattr(pool, "GRACE_SECONDS", 1.0)
    assert run("--dataset", "toy-b", "--method", "hostile-spins", "--method",
               "hostile-holds-gil", "--method", "toy-shift", "--time-limit", "0.5") == 1
    found = outcomes(workdir / "wb.duckdb")
    assert {e for _, e in found["hostile-spins"].values()} == {"timed out after 0.5 s"}
    assert {e for _, e in found["hostile-holds-gil"].values()} == {
        f"timed out after 0.5 s (the call did not stop, so its worker was killed) while "
        f"registering {f} <- {m}" for f, m in found["hostile-holds-gil"]}
    assert set(found["toy-shift"].values()) == {("ok", None)} and len(found["toy-shift"]) == 4


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([*WARPBENCH, "run", "--quiet", "--db", "wb.duckdb", *args],
                            cwd=workdir, env=environment, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _calls(workdir: Path, count: int, process: subprocess.Popen) -> list[int]:
    """The pids of hostile-slow's first ``count`` calls, once they have begun."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        calls = sorted((workdir / "notes").iterdir(), key=lambda p: int(p.name.split("-")[1]))
        if len(calls) >= count:
            return [int(p.name.split("-")[0]) for p in calls]
        time.sleep(0.05)
    pytest.fail(f"hostile-slow was not called {count} times: {process.stderr.read()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _stored_once_each(db: Path, pairs: int) -> None:
    """Every pair of the one run is stored ok, and no attempt of any pair twice."""
    assert rows(db, "SELECT count(*), count(DISTINCT (fixed, moving)) FROM latest_pairs "
                    "WHERE status = 'ok'") == [(pairs, pairs)]
    assert rows(db, "SELECT count(*) FROM (SELECT fixed, moving, attempt FROM pairs "
                    "GROUP BY ALL HAVING count(*) > 1)") == [(0,)]
    assert rows(db, "SELECT count(*), min(status) FROM runs") == [(1, "complete")]


def _stored(db: Path, count: int, process: subprocess.Popen) -> None:
    """Until ``count`` pair rows are stored (read while the command writes)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if db.exists() and rows(db, "SELECT count(*) FROM pairs")[0][0] >= count:
                return
        except duckdb.Error:  # the writer holds the file for a moment
            pass
        time.sleep(0.25)  # a reader holds off the writer while it has the file open
    pytest.fail(f"{count} pairs were never stored: {process.stderr.read()}")


def test_kill_9_of_a_worker_and_then_of_the_command_lose_nothing_a_rerun_does_not_redo(workdir):
    db = workdir / "wb.duckdb"
    process = _start(workdir, "--dataset", "toy-a", "--method", "hostile-slow")
    (first,) = _calls(workdir, 1, process)
    os.kill(first, signal.SIGKILL)  # mid-pair: that pair fails, a new worker takes the rest
    _stored(db, 3, process)
    failed = rows(db, "SELECT fixed, moving, error FROM pairs WHERE status = 'failed'")
    assert [error for *_, error in failed] == [(
        "worker killed by SIGKILL (the kernel's out-of-memory killer, or kill -9) while "
        f"registering {failed[0][0]} <- {failed[0][1]}")]
    workers = set(_calls(workdir, 1, process))
    process.kill()  # the command itself, mid-pair
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "a worker outlived the command"
    assert rows(db, "SELECT count(*), count(*) FILTER (status = 'ok') FROM pairs")[0][1] >= 2

    process = _start(workdir, "--dataset", "toy-a", "--method", "hostile-slow")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    _stored_once_each(db, 6)
    assert rows(db, "SELECT fixed, moving, max(attempt) FROM pairs WHERE attempt > 1 "
                    "GROUP BY ALL") == [(failed[0][0], failed[0][1], 2)]  # retried once


def test_two_trainings_run_on_two_workers_at_once_and_then_their_evaluations(workdir, capsys):
    assert run("--method", "hostile-learner", "--dataset", "train-a", "--dataset", "train-b",
               "--workers", "2") == 0
    notes = [json.loads((workdir / "notes" / f"training-{d}.json").read_text())
             for d in ("train-a", "train-b")]
    assert max(n["started"] for n in notes) < min(n["ended"] for n in notes)  # they overlap
    trained_by = {json.loads(Path(w).read_text())["pid"]
                  for (w,) in rows(workdir / "wb.duckdb", "SELECT weights FROM trainings")}
    assert len(trained_by) == 2
    # Each network is evaluated on both datasets, every run begun after its training ended.
    assert rows(workdir / "wb.duckdb", """
        SELECT count(*), bool_and(r.started_at >= t.ended_at) FROM runs r
        JOIN trainings t USING (training_key)""") == [(4, True)]
    assert "2 trainings run" in capsys.readouterr().err


def test_a_result_that_arrives_twice_is_stored_once(tmp_path):
    """A retried task whose first attempt also finished: the second result is left out."""

    class Twice(InProcessExecutor):
        def execute(self, feed):
            for event in super().execute(feed):
                yield event
                if isinstance(event, PairDone):
                    yield event

    (tmp_path / "datasets.yaml").write_text(hostile_plugins.CONFIG)
    registry = plugin_loading.load_registry(extra_plugins=[ToyPlugin()])
    plan = make_plan(registry, load_config(tmp_path / "datasets.yaml"), ["toy-shift"], ["toy-a"])
    store = Store(tmp_path / "wb.duckdb")
    summary = Scheduler(registry, store, Twice("cpu"), progress=False).run(plan)
    assert summary.pairs_ok == 6 and summary.runs_done == 1
    assert rows(store.path, "SELECT count(*), max(attempt) FROM pairs") == [(6, 1)]


def test_a_method_only_this_process_knows_fails_in_a_worker_saying_so(tmp_path):
    (tmp_path / "datasets.yaml").write_text(hostile_plugins.CONFIG)
    registry = plugin_loading.load_registry(extra_plugins=[ToyPlugin()])
    plan = make_plan(registry, load_config(tmp_path / "datasets.yaml"), ["toy-shift"], ["toy-b"])
    summary = Scheduler(registry, Store(tmp_path / "wb.duckdb"), PoolExecutor("cpu"),
                        progress=False).run(plan)
    assert summary.pairs_failed == 4
    assert "method 'toy-shift' is not registered in the worker process" in summary.failures[0]
    assert "--executor inprocess" in summary.failures[0]


def test_the_default_executor_is_the_pool_with_one_worker_here(workdir, capsys, monkeypatch):
    monkeypatch.delenv("WARPBENCH_EXECUTOR", raising=False)
    assert run("--dataset", "train-a", "--method", "toy-shift") == 0
    assert "device cpu (1 worker process on cpu" in capsys.readouterr().err
    assert main(["run", "--executor", "inprocess", "--workers", "2", "--dataset", "train-a",
                 "--method", "toy-shift"]) == 2
    assert "executor 'inprocess' does not take --workers" in capsys.readouterr().err


def test_each_gpu_gets_workers_of_its_own(monkeypatch):
    """Worker i sees only its GPU (as cuda:0) and its pairs name it as this process does."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # this process's cuda:0 and cuda:1
    every = plan_slots(torch.device("cuda"), None)
    assert [(s.device, s.label, s.gpu) for s in every] == [("cuda:0", "cuda:0", "4"),
                                                          ("cuda:0", "cuda:1", "6")]
    assert [(s.label, s.gpu) for s in plan_slots(torch.device("cuda"), 3)] == [
        ("cuda:0", "4"), ("cuda:1", "6"), ("cuda:0", "4")]
    one = plan_slots(torch.device("cuda:1"), 2)
    assert [(s.label, s.gpu) for s in one] == [("cuda:1", "6")] * 2
    with pytest.raises(ExecutorError, match="device cuda:2 does not exist: 2 GPU"):
        plan_slots(torch.device("cuda:2"), None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ExecutorError, match="no GPU is visible"):
        plan_slots(torch.device("cuda"), None)
    with pytest.raises(ExecutorError, match="--workers must be at least 1"):
        plan_slots(torch.device("cpu"), 0)
