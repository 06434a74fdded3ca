"""The training recipe of the learning methods (issue 16): the learning-rate schedule, the weights
of the best validation, early stopping, augmentation, and full resolution on small grids.

Tiny networks on tiny grids (test_learning's), so the file takes seconds."""

import math

import numpy as np
import pytest
import torch

from test_learning import CPU, blobs, job
from warpbench.metrics import dice, folding_percent
from warpbench.spatial import warp_labels
from warpbench_learning import augmentation, training
from warpbench_learning.checkpoint import CHECKPOINT_NAME
from warpbench_learning.methods import AUGMENTATION, VoxelMorph
from warpbench_learning.model import build_network
from warpbench_learning.params import Augmentation


def settings(**params):
    return VoxelMorph().resolve(params)


# --- the schedule --------------------------------------------------------------------------------
def test_the_learning_rate_rises_over_the_warmup_then_follows_half_a_cosine_to_zero():
    cosine = settings(learning_rate=1e-3, warmup_steps=10, steps=100, lr_schedule="cosine")
    rates = [training.learning_rate_at(step, step / 100, cosine) for step in range(100)]
    # The warm-up scales the cosine, which has barely begun to fall.
    assert rates[0] == pytest.approx(1e-4, rel=0.01) and rates[4] == pytest.approx(5e-4, rel=0.01)
    assert rates[9] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # decays from there
    assert rates[50] == pytest.approx(5e-4) and rates[-1] < 1e-6
    constant = settings(learning_rate=1e-3, warmup_steps=10, lr_schedule="constant")
    assert [training.learning_rate_at(s, s / 100, constant) for s in (0, 9, 50, 99)] == \
        pytest.approx([1e-4, 1e-3, 1e-3, 1e-3])


def test_under_a_wall_clock_budget_the_schedule_follows_whichever_budget_runs_out_first():
    timed = settings(steps=1000, minutes=10)
    assert training.budget_spent(100, 60.0, timed) == pytest.approx(0.1)  # steps, 6 s a step
    assert training.budget_spent(100, 300.0, timed) == pytest.approx(0.5)  # the clock, 3 s a step
    assert training.budget_spent(100, 1e6, settings(steps=1000)) == pytest.approx(0.1)


# --- model selection and early stopping ----------------------------------------------------------
def wrecked_after(monkeypatch, step: int):
    """From ``step`` on, the learning rate is absurd: the network gets worse, as a training past
    its best does."""
    schedule = training.learning_rate_at
    monkeypatch.setattr(training, "learning_rate_at",
                        lambda s, spent, params: 3.0 if s >= step else schedule(s, spent, params))


def validation_dice_of(weights, dataset, params) -> float:
    """Mean Dice over the training's validation pairs, registered with ``weights`` through the
    method as the platform registers."""
    scores = []
    for fixed_id, moving_id in training.validation_pairs(dataset, VoxelMorph().resolve(params).val_pairs, 0):
        fixed, moving = dataset.load(fixed_id), dataset.load(moving_id)
        disp = VoxelMorph().register(fixed.image, moving.image, params, CPU, weights=weights)
        scores.append(np.nanmean(dice(fixed.labels, warp_labels(moving.labels, disp),
                                      sorted(dataset.labels))))
    return float(np.mean(scores))


def val_dice(logged) -> dict[int, float]:
    return {step: value for step, split, name, value in logged if (split, name) == ("val", "dice")}


def test_the_weights_are_those_of_the_best_validation_not_of_the_last_step(tmp_path, monkeypatch):
    wrecked_after(monkeypatch, 6)
    dataset = blobs(train=3, val=3)
    run, logged = job(tmp_path, dataset, steps=12, val_every=1, patience=0,
                      learning_rate=3e-3, warmup_steps=0, lr_schedule="constant")
    weights = VoxelMorph().train(run)
    curve = val_dice(logged)
    best = max(curve, key=curve.get)
    assert sorted(curve) == list(range(1, 13)) and best <= 6
    assert curve[12] < curve[best] - 0.01  # the last step is clearly worse: the test can fail
    assert validation_dice_of(weights, dataset, run.params) == pytest.approx(curve[best], abs=1e-6)


def test_training_stops_once_patience_validations_have_not_beaten_the_best(tmp_path, monkeypatch):
    wrecked_after(monkeypatch, 6)
    dataset = blobs(train=3, val=3)
    run, logged = job(tmp_path, dataset, steps=40, val_every=1, patience=3,
                      learning_rate=3e-3, warmup_steps=0, lr_schedule="constant")
    weights = VoxelMorph().train(run)
    curve = val_dice(logged)
    best = max(curve, key=curve.get)
    assert max(curve) == best + 3  # three validations without a better one, then it stopped
    assert torch.load(tmp_path / CHECKPOINT_NAME)["step"] == best + 3 < 40
    assert validation_dice_of(weights, dataset, run.params) == pytest.approx(curve[best], abs=1e-6)


def test_a_training_interrupted_after_its_best_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """With augmentation too: a resumed training draws the transforms the straight one drew."""
    wrecked_after(monkeypatch, 4)
    dataset = blobs(train=3, val=3)
    params = {"steps": 10, "val_every": 2, "checkpoint_every": 2, "patience": 0, "warmup_steps": 0,
              "augment": AUGMENTATION}
    straight, _ = job(tmp_path / "straight", dataset, **params)
    expected = torch.load(VoxelMorph().train(straight))["state_dict"]
    interrupted, _ = job(tmp_path / "resumed", dataset, **params)
    record = interrupted.log

    def stop_at_step_8(step, split, name, value):
        record(step, split, name, value)
        if step == 8:
            raise KeyboardInterrupt

    interrupted.log = stop_at_step_8
    with pytest.raises(KeyboardInterrupt):
        VoxelMorph().train(interrupted)
    interrupted.log = record
    resumed = torch.load(VoxelMorph().train(interrupted))["state_dict"]
    for key, value in expected.items():
        assert torch.equal(resumed[key], value), key


# --- augmentation --------------------------------------------------------------------------------
SPATIAL_ONLY = {**AUGMENTATION, "gamma": 0.0, "bias": 0.0, "noise": 0.0}


def blob_batch():
    dataset = blobs(train=4, val=0)
    subjects = [dataset.load(s) for s in dataset.subjects("train")]
    images = torch.stack([torch.as_tensor(s.image)[None] for s in subjects])
    labels = torch.stack([torch.as_tensor(s.labels == 1, dtype=torch.float32)[None]
                          for s in subjects])
    return images, labels


def test_augmentation_moves_each_image_and_its_labels_by_one_map_drawn_from_the_seed():
    images, labels = blob_batch()
    spatial = Augmentation(**SPATIAL_ONLY)
    moved, moved_labels = augmentation.augment(torch.Generator().manual_seed(0), labels, labels,
                                               spatial)
    torch.testing.assert_close(moved, moved_labels)  # the same map for the image and its labels
    assert (moved - labels).abs().amax() > 0.5  # and it moved them
    first = augmentation.augment(torch.Generator().manual_seed(0), images, labels,
                                 Augmentation(**AUGMENTATION))
    again = augmentation.augment(torch.Generator().manual_seed(0), images, labels,
                                 Augmentation(**AUGMENTATION))
    other = augmentation.augment(torch.Generator().manual_seed(1), images, labels,
                                 Augmentation(**AUGMENTATION))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.allclose(first[0], other[0])
    # Each volume of the batch gets its own map.
    assert not torch.allclose(moved[0] - labels[0], moved[1] - labels[1])


def test_augmentation_with_every_bound_zero_changes_nothing():
    images, labels = blob_batch()
    none = Augmentation(**{key: 0.0 for key in AUGMENTATION} | {"elastic_spacing": 8})
    moved, moved_labels = augmentation.augment(torch.Generator().manual_seed(0), images, labels,
                                               none)
    torch.testing.assert_close(moved, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved_labels, labels, atol=1e-5, rtol=0)


def test_the_elastic_part_does_not_fold_even_at_three_times_the_presets_strength():
    strong = Augmentation(**{**AUGMENTATION, "elastic": 3 * AUGMENTATION["elastic"]})
    disp = augmentation.elastic_displacement(torch.Generator().manual_seed(0), 4, (48, 64, 48),
                                             strong, CPU)
    assert disp.abs().amax() > 2  # voxels: a real deformation
    assert all(folding_percent(d) == 0 for d in disp)


# --- resolution ----------------------------------------------------------------------------------
def test_auto_keeps_full_resolution_on_a_small_grid_and_the_weights_remember_it():
    auto = settings(downsize="auto")
    small = build_network("voxelmorph", auto, grid=(48, 64, 48))
    large = build_network("voxelmorph", auto, grid=(160, 192, 224))
    assert small.factor((48, 64, 48)) == 1 and large.factor((160, 192, 224)) == 2
    # A network trained on the small grid registers a large one at the resolution it learnt at.
    loaded = build_network("voxelmorph", auto)
    loaded.load_state_dict(small.state_dict())
    assert loaded.factor((160, 192, 224)) == 1
    assert build_network("voxelmorph", settings(downsize=2), grid=(48, 64, 48)).factor((8, 8, 8)) == 2


# --- CUDA ----------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_step_takes_cuda_batch_size_pairs_under_mixed_precision(tmp_path, monkeypatch):
    batches = []
    sample = training.sample_pairs
    monkeypatch.setattr(training, "sample_pairs",
                        lambda gen, n, batch: batches.append(batch) or sample(gen, n, batch))
    run, logged = job(tmp_path, blobs(train=4), steps=3, cuda_batch_size=3, batch_size=1)
    run.device = torch.device("cuda")
    weights = VoxelMorph().train(run)
    assert batches == [3, 3, 3] and weights.exists()
    assert all(np.isfinite(v) for *_, v in logged)
