"""Trained weights travel with their provenance: `warpbench export` writes each complete
training's weights file with its sha256 beside the tables, and `warpbench merge` of that folder
brings them into the other store's checkpoint folder, so the training is a cache hit on a machine
that never trained it (issue 16, item 4). A listed file that changed, or that lies outside the
folder, is refused before anything is merged."""

import json
import shutil

import pytest

from warpbench.cli import main
from warpbench.config import build_dataset, load_config
from warpbench.executors import InProcessExecutor
from warpbench.plugins import load_registry
from warpbench.scheduler import Scheduler, make_plan
from warpbench.store import Store
from warpbench.training import training_key

CONFIG = """datasets:
  tiny:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 5
    split: {train: 2, val: 0, test: 3}
    pairs: {test: 3}
"""
WEIGHTS = b"the trained state of a network"


@pytest.fixture
def trained(tmp_path):
    """A store in here/ holding a complete voxelmorph training of `tiny`, exported to export/."""
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    registry = load_registry()
    config = load_config(tmp_path / "datasets.yaml")
    method = registry.methods["voxelmorph"]
    key = training_key(method, "default", build_dataset(config, "tiny", registry.dataset_kinds), 0)
    weights = tmp_path / "here" / "checkpoints" / "voxelmorph" / key / "weights.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(WEIGHTS)
    store = Store(tmp_path / "here" / "wb.duckdb")
    store.begin_training(key, {"method": "voxelmorph", "preset": "default", "params": "{}",
                               "method_version": method.version, "train_dataset": "tiny",
                               "seed": 0}, str(weights.parent))
    store.end_training(key, "complete", seconds=60.0, weights=str(weights), steps=300)
    assert main(["export", "--db", str(store.path), "--out", str(tmp_path / "export")]) == 0
    return tmp_path, key, registry, config


def test_exported_weights_merge_into_a_fresh_store_as_a_cache_hit(trained, capsys):
    tmp_path, key, registry, config = trained
    manifest = json.loads((tmp_path / "export" / "weights.json").read_text())
    assert manifest[key]["file"] == f"weights/{key}.pt" and manifest[key]["bytes"] == len(WEIGHTS)

    shutil.rmtree(tmp_path / "here")  # a fresh clone of the repository has only the export
    fresh = tmp_path / "elsewhere" / "wb.duckdb"
    assert main(["merge", str(tmp_path / "export"), "-o", str(fresh)]) == 0
    assert "1 weights" in capsys.readouterr().out
    copied = tmp_path / "elsewhere" / "checkpoints" / "voxelmorph" / key / "weights.pt"
    assert copied.read_bytes() == WEIGHTS
    assert Store(fresh).training(key)["weights"] == str(copied.resolve())

    plan = make_plan(registry, config, ["voxelmorph"], ["tiny"], train_on=["tiny"])
    summary = Scheduler(registry, Store(fresh), InProcessExecutor("cpu"), progress=False,
                        checkpoints=fresh.parent / "checkpoints").train(plan)
    assert summary.trainings_cached == 1 and summary.trainings_done == 0

    # merged again: nothing new, and the store's own weights are kept
    assert main(["merge", str(tmp_path / "export"), "-o", str(fresh)]) == 0
    assert "0 weights" in capsys.readouterr().out


@pytest.mark.parametrize("tamper, says", [
    (lambda folder, key: (folder / "weights" / f"{key}.pt").write_bytes(b"other"),
     "does not have the listed sha256"),
    (lambda folder, key: (folder / "weights.json").write_text(json.dumps(
        {key: {"method": "voxelmorph", "file": "../here/wb.duckdb", "sha256": "0"}})),
     "outside the folder"),
    (lambda folder, key: (folder / "weights.json").write_text(json.dumps(
        {key: {"method": "../voxelmorph", "file": f"weights/{key}.pt", "sha256": "0"}})),
     "cannot be part of a path"),
])
def test_a_changed_or_escaping_weights_file_is_refused_before_anything_merges(
        trained, capsys, tamper, says):
    tmp_path, key, _, _ = trained
    tamper(tmp_path / "export", key)
    fresh = tmp_path / "elsewhere" / "wb.duckdb"
    assert main(["merge", str(tmp_path / "export"), "-o", str(fresh)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'export' / 'weights.json'}: training '{key}'")
    assert says in err and not fresh.exists()
    assert not (tmp_path / "elsewhere" / "checkpoints").exists()
