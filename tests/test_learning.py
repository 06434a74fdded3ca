"""The learning methods (warpbench_learning): training, checkpoints, weights, registration.

Everything runs tiny networks on tiny grids, so the whole file takes seconds on a busy CPU.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from warpbench import Dataset, Subject, TrainingJob
from warpbench.metrics import dice
from warpbench.plugins import load_registry
from warpbench.spatial import warp_labels
from warpbench_learning.checkpoint import CHECKPOINT_NAME, WeightsMismatch
from warpbench_learning.methods import LKUNet, VoxelMorph

CPU = torch.device("cpu")
# A network of two levels and a handful of channels at full resolution (instance normalisation
# needs more than a few voxels at the coarsest level): enough to learn a shift of a few voxels.
TINY = {
    "downsize": 1,
    "encoder": [8, 8],
    "decoder": [8, 8],
    "lncc_window": 5,
    "learning_rate": 1e-2,
    "integration_steps": 4,
    "log_every": 1,
    "val_every": 5,
    "checkpoint_every": 5,
}


class BlobDataset(Dataset):
    """A ball and a slab, the ball moved by up to three voxels per subject (every subject by a
    different amount), on a small grid. Options:
    ``shape``; ``drop_slab`` leaves the slab out of the label maps (the images stay the same)."""

    kind = "test-blobs"
    labels = {1: "ball", 2: "slab"}

    def __init__(self, name, options, base_dir=Path(".")):
        super().__init__(name, {k: options[k] for k in ("split", "pairs") if k in options}, base_dir)
        self.shape = tuple(options.get("shape", (16, 16, 16)))
        self.drop_slab = options.get("drop_slab", False)
        self.count = sum(v for k, v in options["split"].items() if k != "seed")

    def all_subjects(self):
        return [f"s{i}" for i in range(self.count)]

    def load(self, subject_id):
        index = int(subject_id[1:])
        shift = 6 * index / max(self.count - 1, 1) - 3
        grid = np.indices(self.shape).astype(np.float32)
        centre = np.array(self.shape, np.float32)[:, None, None, None] / 2
        centre[0] += shift
        centre[1] -= shift / 2
        labels = np.zeros(self.shape, np.int16)
        labels[((grid - centre) ** 2).sum(0) < 4.5**2] = 1
        labels[(np.abs(grid[2] - centre[2] - 4) < 1.5) & (labels == 0)] = 2
        image = gaussian_filter(np.choose(labels, [0.1, 0.9, 0.5]).astype(np.float32), 0.7)
        image += np.random.default_rng(index).normal(0, 0.02, self.shape).astype(np.float32)
        if self.drop_slab:
            labels[labels == 2] = 0
        return Subject(subject_id, image, labels, np.eye(4))


def blobs(train=2, val=2, **options):
    return BlobDataset("blobs", {"split": {"train": train, "val": val, "test": 2}, **options})


def job(folder, dataset=None, seed=0, **params):
    logged = []
    made = TrainingJob(
        dataset or blobs(), {**TINY, **params}, CPU, seed, Path(folder),
        log=lambda step, split, name, value: logged.append((step, split, name, value)),
    )
    return made, logged


def mean_dice(dataset, fixed_id, moving_id, disp):
    fixed, moving = dataset.load(fixed_id), dataset.load(moving_id)
    moved = warp_labels(moving.labels, disp)
    return float(np.nanmean(dice(fixed.labels, moved, sorted(dataset.labels))))


def test_plugin_registers_both_methods_with_the_suite_presets():
    methods = load_registry().methods
    for name in ("voxelmorph", "lkunet"):
        method = methods[name]
        assert method.family == "learning" and method.check() == []
        assert {"default", "labels", "default-long", "labels-long", "io"} <= set(method.presets)
        assert method.supervision_of("default") == "none"
        assert method.supervision_of("labels") == "labels"
        assert method.presets["default-long"]["steps"] == 4 * method.presets["default"]["steps"]


@pytest.mark.parametrize("method", [VoxelMorph(), LKUNet()], ids=lambda m: m.name)
def test_presets_resolve_typed_and_the_weights_record_is_the_preset_without_test_time_keys(method):
    default, io = method.presets["default"], method.presets["io"]
    settings = method.resolve(io)
    assert settings.io_steps == 50 and settings.encoder == default["encoder"]
    # What weights are stored with and checked against: the preset over the default one, with
    # the architecture, without the keys that act at registration only.
    trained = {k: v for k, v in {**default, **io}.items() if k not in method.test_time_keys}
    assert method.trained_params(settings) == {**trained, "architecture": method.architecture}
    assert method.training_params("io") == method.training_params("default")  # one training
    with pytest.raises(ValueError, match=rf"method '{method.name}': unknown parameter 'stepz'"):
        method.resolve({"stepz": 10})


@pytest.mark.parametrize("method", [VoxelMorph(), LKUNet()], ids=lambda m: m.name)
def test_a_tiny_network_overfits_one_pair(tmp_path, method):
    dataset = blobs(val=0)  # two training subjects: one pair, both ways
    # Plain Adam on the pair as it is: augmentation and a decaying rate work against overfitting.
    training, logged = job(tmp_path, dataset, steps=100, learning_rate=3e-3, augment=None,
                           lr_schedule="constant", warmup_steps=0)
    weights = method.train(training)
    losses = [value for _, split, name, value in logged if (split, name) == ("train", "loss")]
    assert len(losses) == 100 and np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.1
    fixed, moving = dataset.subjects("train")
    disp = method.register(
        dataset.load(fixed).image, dataset.load(moving).image, training.params, CPU, weights=weights
    )
    identity = mean_dice(dataset, fixed, moving, np.zeros((3, *dataset.shape), np.float32))
    assert mean_dice(dataset, fixed, moving, disp) > identity + 0.15


def test_validation_is_logged_on_pairs_of_validation_subjects(tmp_path):
    training, logged = job(tmp_path, steps=10)
    VoxelMorph().train(training)
    val = {(step, name) for step, split, name, _ in logged if split == "val"}
    assert {(5, "loss"), (5, "dice"), (10, "loss"), (10, "dice")} <= val


def test_an_interrupted_training_resumes_to_the_uninterrupted_weights(tmp_path):
    method = VoxelMorph()
    straight, _ = job(tmp_path / "straight", steps=10)
    expected = torch.load(method.train(straight))["state_dict"]

    interrupted, _ = job(tmp_path / "resumed", steps=10)

    def stop_at_step_5(step, split, name, value):
        if step == 5:
            raise KeyboardInterrupt

    interrupted.log = stop_at_step_5
    with pytest.raises(KeyboardInterrupt):
        method.train(interrupted)
    assert torch.load(tmp_path / "resumed" / CHECKPOINT_NAME)["step"] == 5
    interrupted.log = lambda *args: None
    resumed = torch.load(method.train(interrupted))["state_dict"]
    for key, value in expected.items():
        assert torch.allclose(resumed[key], value, atol=1e-6), key
    # A different seed draws other pairs and starts from other weights.
    other, _ = job(tmp_path / "other-seed", steps=10, seed=1)
    different = torch.load(method.train(other))["state_dict"]
    assert not torch.allclose(different["core.head.weight"], expected["core.head.weight"])


def test_a_minutes_budget_stops_training_early_and_still_saves_weights(tmp_path):
    training, _ = job(tmp_path, steps=1000, minutes=1e-6)
    assert VoxelMorph().train(training).exists()
    assert torch.load(tmp_path / CHECKPOINT_NAME)["step"] < 1000


def test_weights_are_refused_for_another_preset_method_or_version(tmp_path):
    dataset = blobs()
    training, _ = job(tmp_path, dataset, steps=2)
    method = VoxelMorph()
    weights = method.train(training)
    image = dataset.load("s0").image
    with pytest.raises(WeightsMismatch, match="supervision"):
        method.register(image, image, {**training.params, "supervision": "labels"}, CPU, weights=weights)
    with pytest.raises(WeightsMismatch, match="voxelmorph"):
        LKUNet().register(image, image, training.params, CPU, weights=weights)

    class NewerVoxelMorph(VoxelMorph):
        version = "999"

    with pytest.raises(WeightsMismatch, match="version"):
        NewerVoxelMorph().register(image, image, training.params, CPU, weights=weights)
    # Test-time settings do not change what the weights are: the io preset uses them.
    io = {**training.params, "io_steps": 2}
    assert method.register(image, image, io, CPU, weights=weights).shape == (3, *image.shape)


@pytest.mark.parametrize("method", [VoxelMorph(), LKUNet()], ids=lambda m: m.name)
def test_register_returns_a_field_on_a_grid_the_network_cannot_halve(tmp_path, method):
    dataset = blobs(shape=(13, 18, 11))
    # Three levels: the network needs multiples of 8.
    training, _ = job(tmp_path, dataset, steps=2, encoder=[4, 4, 4], decoder=[4, 4, 4])
    weights = method.train(training)
    fixed, moving = dataset.load("s0").image, dataset.load("s1").image
    for params in (training.params, {**training.params, "io_steps": 2}):
        disp = method.register(fixed, moving, params, CPU, weights=weights)
        assert disp.shape == (3, 13, 18, 11) and disp.dtype == torch.float32
        assert torch.isfinite(disp).all()


@pytest.mark.parametrize("supervision", ["none", "labels"])
def test_only_the_supervised_preset_trains_on_the_labels(tmp_path, supervision):
    losses = []
    for drop in (False, True):
        dataset = blobs(drop_slab=drop)
        training, logged = job(tmp_path / str(drop), dataset, steps=1, supervision=supervision)
        VoxelMorph().train(training)
        losses += [value for _, split, name, value in logged if (split, name) == ("train", "loss")]
    if supervision == "labels":
        assert losses[0] != pytest.approx(losses[1], abs=1e-4)
    else:
        assert losses[0] == losses[1]
