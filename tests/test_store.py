"""The DuckDB store: provenance, resume bookkeeping, and reading while another process writes."""

import subprocess
import sys
import textwrap
import time

from warpbench.runner import PairResult
from warpbench.store import Store

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


WRITER = """
import sys
sys.path.insert(0, {tests!r})
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
    script = WRITER.format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(path))
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    reader = Store(path)
    reads = 0
    while writer.poll() is None:
        reader.leaderboard()
        reads += 1
        time.sleep(0.1)  # a page refresh, not a busy loop
    assert writer.returncode == 0
    assert reads > 0
    assert reader.leaderboard()["pairs"].tolist() == [20]
