"""Shared fixtures. Only the built-in plugins load, so plugins installed on a developer's machine
stay out of the test run."""

import os
import threading
from pathlib import Path

import pytest

# Registrations run in worker threads (the runner's time limit, the app's script thread), each
# with its own OpenMP team; with OpenMP's default active waiting, idle teams spin and starve the
# working one (a 0.5 s greedy pair took 40 s on 2 busy cores). Passive waiting must be chosen
# before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BUILTIN_PLUGINS = "executors,synthetic,decathlon,files,shifted,classical,literature,precomputed,learning,ants,fireants"
os.environ.setdefault("WARPBENCH_LOAD_PLUGINS", BUILTIN_PLUGINS)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def hippocampus_root() -> Path:
    root = SHARED_DATA / "hippocampus"
    if not (root / "imagesTr").is_dir():
        pytest.skip(f"real hippocampus data not found at {root}")
    return root


# --- a store filled by real small runs, shared by the app, figure and browser tests ------------
APP_STORE_CONFIG = """
datasets:
  tiny-a:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    intensity: distinct
    split: {train: 2, val: 1, test: 3}
    pairs: {test: 3}
  tiny-b:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    intensity: grouped
    split: {train: 2, val: 1, test: 3}
    pairs: {test: 3}
  tiny-c:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    intensity: grouped
    noise: 0.1
    blur: 1.0
    split: {train: 2, val: 1, test: 3}
    pairs: {test: 3}
  tiny-d:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 6
    split: {train: 2, val: 1, test: 3}
    pairs: {test: 3}
suites:
  default:
    methods: [identity, affine, greedy:fast]
    datasets: [tiny-a, tiny-b, tiny-c]
"""


@pytest.fixture(scope="session")
def app_store(tmp_path_factory) -> Path:
    """A results store filled by ``warpbench run``: identity, affine and greedy:fast on three
    small synthetic datasets (3 test pairs each), greedy's default preset too on tiny-a (a preset
    spread), and affine on tiny-d under a time limit no registration meets (a run whose every
    pair failed). Its ``datasets.yaml`` sits next to it, for the pair viewer."""
    from warpbench.cli import main

    folder = tmp_path_factory.mktemp("app_store")
    config = folder / "datasets.yaml"
    config.write_text(APP_STORE_CONFIG)
    db = folder / "warpbench.duckdb"
    common = ["--config", str(config), "--db", str(db), "--quiet"]
    assert main(["run", *common]) == 0
    assert main(["run", *common, "--method", "greedy:default", "--dataset", "tiny-a"]) == 0
    assert main(["run", *common, "--method", "affine", "--dataset", "tiny-d",
                 "--time-limit", "0.001"]) == 1  # every pair times out
    # The runner abandons a timed-out pair's thread, which goes on computing; let those finish,
    # or a short test session could exit while torch runs in them (and abort).
    for thread in threading.enumerate():
        if thread.name == "warpbench-pair":
            thread.join(timeout=120)
    return db
