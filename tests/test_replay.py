"""Replaying a stored run (``warpbench.replay``): the pair viewer and `warpbench export-fields`
refuse the same runs with the same message, naming what differs from what the run used, and a
run that can be replayed registers its pairs as they were scored."""

from __future__ import annotations

import json
import math

import pytest

from warpbench import replay
from warpbench.config import load_config
from warpbench.fields import ExportError, export_run_fields
from warpbench.plugins import load_registry
from warpbench.store import Store
from warpbench_leaderboard import pairview


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _run(store: Store, method: str, dataset: str) -> dict:
    runs = store.runs()
    return runs[(runs["method"] == method) & (runs["dataset"] == dataset)].iloc[0].to_dict()


def test_a_replayed_pair_scores_as_the_stored_one(app_store, registry):
    store = Store(app_store)
    run = _run(store, "identity", "tiny-c")
    again = replay.prepare(registry, load_config(app_store.parent / "datasets.yaml"), run)
    assert again.seed == run["seed"] and again.weights is None
    stored = store.pairs(run["run_id"]).iloc[0]
    pair = again.register(stored["fixed"], stored["moving"], "cpu")
    assert pair.result.status == "ok"
    assert pair.result.mean_dice == pytest.approx(stored["mean_dice"], abs=1e-9)
    assert pair.result.displacement.shape == (3, *pair.fixed.image.shape)
    assert pair.fixed.id == stored["fixed"] and pair.moving.id == stored["moving"]


@pytest.mark.parametrize("change, message", [
    ({"method_version": "0"}, r"used `affine` version 0; version \S+ is installed"),
    ({"params": json.dumps({"steps": 1})}, r"Preset `affine:default` now has other parameters"),
    ({"preset": "no-such-preset"}, "has no preset `no-such-preset` any more"),
    ({"dataset_fingerprint": "elsewhere"}, "is not the one run"),
    ({"method": "no-such-method"}, "which is not installed here"),
    ({"train_dataset": "tiny-b"}, "is a learning method's run: .* the run names none"),
    ({"train_dataset": "tiny-b", "weights": "deleted.pt"},
     r"are gone; `warpbench train` makes them again: `warpbench train --method affine:default "
     r"--dataset tiny-b --seed 0`"),
])
def test_a_run_that_differs_is_refused_alike_by_both_users(app_store, registry, tmp_path, change,
                                                           message):
    config = app_store.parent / "datasets.yaml"
    run = {**_run(Store(app_store), "affine", "tiny-a"), **change}
    if "weights" in change:  # a file that is not there
        run["weights"] = str(tmp_path / change["weights"])
    with pytest.raises(replay.ReplayError, match=message) as refused:
        replay.prepare(registry, load_config(config), run, run.get("weights"))
    with pytest.raises(pairview.PairViewError) as shown:
        pairview.recompute_pair(config, run, "subject_000", "subject_001", registry=registry)
    assert str(shown.value) == str(refused.value)  # the viewer tells the user the same reason


def test_export_fields_and_the_pair_viewer_refuse_a_changed_dataset_block(app_store, registry,
                                                                          tmp_path):
    store = Store(app_store)
    run = _run(store, "affine", "tiny-a")
    changed = tmp_path / "datasets.yaml"
    changed.write_text((app_store.parent / "datasets.yaml").read_text().replace(
        "intensity: distinct", "intensity: distinct\n    noise: 0.3", 1))
    with pytest.raises(ExportError, match="`tiny-a` in .* is not the one run") as exported:
        export_run_fields(store, registry, load_config(changed), run["run_id"], tmp_path / "out")
    with pytest.raises(pairview.PairViewError) as viewed:
        pairview.recompute_pair(changed, run, "subject_000", "subject_001", registry=registry)
    assert str(viewed.value) == str(exported.value)
    assert not (tmp_path / "out").exists()  # nothing written for a refused run


def test_a_run_without_a_seed_replays_with_the_runners_default():
    assert replay.run_seed({"seed": None}) == replay.run_seed({"seed": math.nan}) == 0
    assert replay.run_seed({}) == replay.DEFAULT_SEED
    assert replay.run_seed({"seed": 7.0}) == 7


def test_weights_are_found_through_the_training_key_or_their_loss_is_explained(app_store):
    store = Store(app_store)
    run = _run(store, "affine", "tiny-a")
    assert replay.run_weights(store, run) is None  # an untrained run needs none
    lost = {**run, "training_key": "gone", "train_dataset": "tiny-b"}
    with pytest.raises(replay.ReplayError, match=f"its training gone has no weights in "
                                                 f"{store.path}; .*`warpbench train --db "
                                                 f"{store.path} --method affine:default "
                                                 "--dataset tiny-b --seed 0`"):
        replay.run_weights(store, lost)
    with pytest.raises(pairview.PairViewError, match="its training gone has no weights"):
        pairview.with_weights(store.path, lost)


def test_a_run_is_found_by_a_unique_prefix_of_its_id(app_store):
    store = Store(app_store)
    run_id = store.runs()["run_id"].iloc[0]
    assert replay.find_run(store, run_id[:12])["run_id"] == run_id
    with pytest.raises(replay.ReplayError, match="no run ''"):
        replay.find_run(store, "")
    with pytest.raises(replay.ReplayError, match="no run 'zzz'"):
        replay.find_run(store, "zzz")
