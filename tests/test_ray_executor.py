"""The Ray executor against a local Ray cluster this module starts (2 CPUs): the quick suite
scored through Ray equals the same suite scored in-process, and a pair whose worker crashes
every time is tried again a bounded number of times and then stored as failed with the cause,
while the rest of its run is scored. Skipped where ray is not installed."""

import os
import shutil
import sys

import duckdb
import pytest
import torch

import hostile_plugins
from conftest import REPO
from fake_dist import add_distribution
from warpbench.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local cluster whose workers find the hostile plugin (the environment they start in)."""
    site = tmp_path_factory.mktemp("site")
    add_distribution(site, "hostile-plugins", {"hostile": "hostile_plugins:PLUGIN"})
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "WARPBENCH_LOAD_PLUGINS")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path])
    os.environ["WARPBENCH_LOAD_PLUGINS"] = f"{hostile_plugins.BUILTIN},hostile"
    sys.path.insert(0, str(site))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    yield
    ray.shutdown()
    sys.path.remove(str(site))
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def scores(db) -> dict:
    with duckdb.connect(str(db), read_only=True) as con:
        found = con.execute("""
            SELECT r.method, r.dataset, p.fixed, p.moving, p.status, p.mean_dice, p.mean_hd95,
                   p.sdlogj FROM latest_pairs p JOIN runs r USING (run_id)""").fetchall()
    return {row[:4]: row[4:] for row in found}


@pytest.mark.slow
def test_the_quick_suite_through_ray_stores_the_in_process_scores(cluster, tmp_path,
                                                                  monkeypatch):
    """The same scores to the last digits, with one torch thread on both sides (a Ray task
    gets one CPU; more threads would sum in another order)."""
    shutil.copy(REPO / "datasets.yaml", tmp_path / "datasets.yaml")
    monkeypatch.chdir(tmp_path)
    common = ["run", "--quiet", "--suite", "quick"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*common, "--executor", "inprocess", "--db", "inprocess.duckdb"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*common, "--executor", "ray", "--db", "ray.duckdb"]) == 0
    here, there = scores(tmp_path / "inprocess.duckdb"), scores(tmp_path / "ray.duckdb")
    assert len(here) == 24 and set(here) == set(there)
    for key, (status, *values) in here.items():
        assert status == "ok" and there[key][0] == "ok"
        assert there[key][1:] == pytest.approx(values, rel=1e-9, abs=1e-12), key


def test_a_pair_that_crashes_its_worker_is_retried_then_stored_failed(cluster, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setattr("warpbench.executors.ray.RETRIES", 1)
    (tmp_path / "datasets.yaml").write_text(hostile_plugins.CONFIG)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--quiet", "--executor", "ray", "--db", "wb.duckdb", "--dataset",
                 "toy-b", "--method", "hostile-segfault"]) == 1
    found = scores(tmp_path / "wb.duckdb")
    assert {(f, m): s[0] for (_, _, f, m), s in found.items()} == {
        ("s0", "s3"): "failed", ("s3", "s0"): "failed", ("s1", "s0"): "ok", ("s1", "s3"): "ok"}
    err = capsys.readouterr().err
    assert ("failed: hostile-segfault:default on toy-b: s0 <- s3: Ray worker lost while "
            "registering s0 <- s3, 2 times: WorkerCrashedError") in err
