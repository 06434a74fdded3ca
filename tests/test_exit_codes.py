"""Exit statuses of the `warpbench` process itself, checked from a subprocess: 0 all ok, 1 failed
or set-aside work (a timed-out pair, a skipped dataset, a full disk), 2 a usage error, 130
interrupted (Ctrl-C or SIGTERM during a torch pair), and never an abort (134) from a method call
still running in its abandoned thread."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warpbench.cli.shared import INTERRUPTED
from warpbench.store import Store

WARPBENCH = [sys.executable, "-m", "warpbench.cli"]
ABORT = "terminate called"
CONFIG = """
datasets:
  slow:
    plugin: synthetic
    shape: [48, 56, 48]
    subjects: 4
    split: {train: 0, val: 0, test: 4}
    pairs: {test: 2}
  elsewhere:
    plugin: decathlon
    root: no/such/folder
    labels: {1: a}
"""
SLOW = ["--quiet", "--dataset", "slow", "--method", "identity", "--method", "greedy"]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    return tmp_path


def _interruptible() -> None:
    """SIGINT as a terminal gives it: a suite started in the background (``make test &``, a
    pytest-xdist worker) has it ignored, and an ignored SIGINT stays ignored in its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*WARPBENCH, *args], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.mark.slow
def test_a_pair_past_the_time_limit_is_stored_as_failed_and_exits_1_not_134(workdir):
    status, err = _finish(_start(workdir, "run", "--quiet", "--dataset", "slow", "--method",
                                 "greedy", "--time-limit", "0.2", "--db", "wb.duckdb"))
    assert ABORT not in err and status == 1, err
    assert "timed out after 0.2 s" in err
    assert set(Store(workdir / "wb.duckdb").pairs()["status"]) == {"failed"}


def _wait_for_identity(db: Path, process: subprocess.Popen) -> None:
    """Until identity's pairs are stored (greedy's first pair is then being registered)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            try:
                if len(Store(db).pairs()) >= 2:
                    return
            except Exception:  # the writer holds the file for a moment
                pass
        time.sleep(0.2)
    pytest.fail("identity's pairs were never stored")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_a_torch_pair_exits_130_with_what_finished_stored(workdir, signum):
    process = _start(workdir, "run", *SLOW, "--db", "wb.duckdb")
    _wait_for_identity(workdir / "wb.duckdb", process)
    time.sleep(0.5)  # inside greedy's first registration
    process.send_signal(signum)
    status, err = _finish(process)
    assert ABORT not in err and status == 130, err
    assert err.endswith(f"{INTERRUPTED}\n")
    runs = Store(workdir / "wb.duckdb").runs().set_index("method")
    assert runs.loc["identity", "status"] == "complete" and runs.loc["identity", "pairs_ok"] == 2
    assert runs.loc["greedy", "status"] == "interrupted"


def test_a_skipped_dataset_exits_1_while_all_ok_exits_0(workdir):
    ok = ["run", "--quiet", "--method", "identity", "--dataset", "slow", "--db", "wb.duckdb"]
    status, err = _finish(_start(workdir, *ok))
    assert status == 0, err
    status, err = _finish(_start(workdir, *ok, "--dataset", "elsewhere"))
    assert status == 1 and "skipping dataset elsewhere" in err, err


def test_a_usage_or_configuration_error_exits_2(workdir):
    assert _finish(_start(workdir, "leaderboard", "--format", "xml"))[0] == 2
    status, err = _finish(_start(workdir, "run", "--suite", "nightly"))
    assert status == 2 and err.startswith("error: datasets.yaml: no suite 'nightly'"), err


@pytest.fixture
def tiny_disk(tmp_path):
    """A 600 kB tmpfs (root only, where mount works); skipped elsewhere."""
    mount = shutil.which("mount")
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or not mount or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_says_so_in_one_line_naming_the_store(workdir, tiny_disk):
    db = tiny_disk / "wb.duckdb"
    status, err = _finish(_start(workdir, "run", "--quiet", "--method", "identity", "--dataset",
                                 "slow", "--db", str(db)))
    assert status == 1, err
    last = err.splitlines()[-1]
    assert last.startswith(f"error: {db}: no space left on device") and "Traceback" not in err
    assert "run the same command to resume" in last
