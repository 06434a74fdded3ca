"""The two learning methods and their presets.

Both predict a stationary velocity field integrated by scaling and squaring (LKU-Net's paper has
a direct-displacement variant too; one output type for both keeps the architecture the only
difference between them, and both diffeomorphic).

Presets: ``default`` trains unsupervised (local NCC + diffusion, VoxelMorph's weight for NCC);
``labels`` adds a Dice loss on the moving labels warped by the predicted field; ``*-long`` spend
four times the training steps (the training budget as an axis); ``io`` registers with
``default``'s network and then refines each pair's velocity by a few optimisation steps.
The budget of ``default`` (300 steps of batch 1) is sized for the 48x56x48 synthetic datasets:
about 0.7 CPU-seconds a step, so a few minutes on two CPU cores. That is too short for a
network to generalise (on synth-distinct: mean Dice 0.70 for VoxelMorph, identity 0.66, while
``io`` reaches 0.94); it is the low end of the budget axis, and ``steps`` or ``minutes`` scale
it for real data.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from warpbench import LearningMethod
from warpbench.spatial import as_tensor
from warpbench.training import TrainingJob
from warpbench_learning import training
from warpbench_learning.checkpoint import load_weights
from warpbench_learning.data import normalise
from warpbench_learning.instance import instance_optimise
from warpbench_learning.integrate import displacement
from warpbench_learning.model import build_network
from warpbench_learning.params import UNetParams

#: Keys that act at registration only: weights trained under one value serve every value.
TEST_TIME_KEYS = ("io_steps", "io_learning_rate")
#: Networks kept loaded per process (method, weights file, version on disk, device and trained
#: parameters).
CACHED_NETWORKS = 8

TRAINING = {
    "supervision": "none",  # or "labels": adds the Dice loss of the warped moving labels
    "steps": 300,  # optimiser steps; the budget
    "minutes": None,  # a wall-clock budget too, when set (counts time spent before a resume)
    "batch_size": 1,
    "learning_rate": 1e-3,
    "lncc_window": 9,  # voxels per side of the local NCC window (VoxelMorph's)
    "smoothness_weight": 1.0,  # diffusion weight; VoxelMorph's lambda for NCC
    "dice_weight": 1.0,  # Dice loss weight, used when supervision is "labels"
    "integration_steps": 7,  # scaling-and-squaring steps
    "downsize": 2,  # the network and the integration work on the pair shrunk by this factor
    "augment": False,  # random flips of whole pairs
    "log_every": 10,  # steps between train-loss points (each the mean since the last)
    "val_every": 50,  # steps between validations
    "val_pairs": 4,  # validation pairs drawn when the dataset names none
    "checkpoint_every": 50,  # steps between checkpoints
    "io_steps": 0,  # test-time optimisation steps per pair
    "io_learning_rate": 0.1,  # voxels of velocity per Adam step
}


def make_presets(widths: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    default = {**TRAINING, **widths}
    labels = {**default, "supervision": "labels"}
    return {
        "default": default,
        "labels": labels,
        "default-long": {**default, "steps": 4 * default["steps"]},
        "labels-long": {**labels, "steps": 4 * labels["steps"]},
        "io": {**default, "io_steps": 50},
    }


@functools.lru_cache(maxsize=CACHED_NETWORKS)
def _load_network(method: UNetMethod, path: str, mtime_ns: int, device: str, trained: str):
    """``method``'s network in ``path``, trained under ``trained`` (the JSON of its
    :meth:`~UNetMethod.trained_params`), on ``device`` in eval mode; cached, so that registering
    many pairs with one weights file loads it once (``mtime_ns`` makes a rewritten file
    reload)."""
    params = json.loads(trained)
    state = load_weights(Path(path), method.name, method.version, params)
    settings = method.resolve({k: v for k, v in params.items() if k != "architecture"})
    net = build_network(method.architecture, settings)
    net.load_state_dict(state)
    return net.to(device).eval()


class UNetMethod(LearningMethod):
    """A learning method defined by its network; subclasses set ``architecture`` and presets."""

    architecture: ClassVar[str]
    supervision = "none"
    test_time_keys = TEST_TIME_KEYS  # `io` shares `default`'s training
    Params = UNetParams

    def trained_params(self, settings: UNetParams) -> dict[str, Any]:
        """What decides the weights, recorded with them: every setting but the test-time ones,
        and the architecture."""
        kept = settings.model_dump(exclude=set(self.test_time_keys))
        return {**kept, "architecture": self.architecture}

    def train(self, job: TrainingJob) -> Path:
        return training.train(job, self, self.resolve(job.params))

    def register(self, fixed, moving, params, device, *, weights: Path):
        """Predict the velocity, refine it on the pair when the preset says so, integrate it."""
        settings = self.resolve(params)
        trained = json.dumps(self.trained_params(settings), sort_keys=True)
        weights = Path(weights)
        net = _load_network(
            self, str(weights.resolve()), weights.stat().st_mtime_ns, str(device), trained
        )
        fixed_t = as_tensor(normalise(np.asarray(fixed)), device)[None, None]
        moving_t = as_tensor(normalise(np.asarray(moving)), device)[None, None]
        with torch.no_grad(), training.autocast_for(device):
            velocity = net(fixed_t, moving_t)
        if settings.io_steps:
            velocity = instance_optimise(velocity, fixed_t, moving_t, settings)
        with torch.no_grad():
            return displacement(velocity, settings.integration_steps, fixed_t.shape[2:])[0]


class VoxelMorph(UNetMethod):
    name = "voxelmorph"
    architecture = "voxelmorph"
    version = "1"
    description = (
        "VoxelMorph (Balakrishnan et al. 2019), diffeomorphic: a U-Net of strided convolutions "
        "predicts a stationary velocity field, integrated by scaling and squaring."
    )
    # VoxelMorph-2's widths.
    presets = make_presets({"encoder": [16, 32, 32, 32], "decoder": [32, 32, 32, 32, 32, 16, 16]})


class LKUNet(UNetMethod):
    name = "lkunet"
    architecture = "lkunet"
    version = "1"
    description = (
        "LKU-Net (Jia et al. 2022), compact: a U-Net whose encoder blocks sum a 5^3 and a 3^3 "
        "convolution and the identity; velocity field integrated by scaling and squaring."
    )
    # Compact: LKU-Net's smaller variant starts at 8 channels; widths stop growing at 16.
    presets = make_presets({"encoder": [8, 16, 16, 16], "decoder": [16, 16, 16, 16, 8]})
