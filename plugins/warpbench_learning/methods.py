"""The learning methods and their presets: VoxelMorph, LKU-Net and TransMorph.

All predict a stationary velocity field integrated by scaling and squaring (LKU-Net's paper has
a direct-displacement variant too; one output type keeps the architecture the only difference
between them, and all diffeomorphic), except TransMorph's published configuration, which
predicts the displacement itself as its paper does.

Presets: ``default`` trains unsupervised (local NCC + diffusion, VoxelMorph's weight for NCC);
``labels`` adds a Dice loss on the moving labels warped by the predicted field; ``*-long`` spend
four times the training steps (the training budget as an axis); ``io`` registers with
``default``'s network and then refines each pair's velocity by a few optimisation steps;
``labels-augment`` is ``labels`` with random transforms of the training subjects.

The recipe (version 2 of VoxelMorph and LKU-Net; issue 16): full resolution on small grids
(``downsize: auto``), the velocity integrated at half resolution as VoxelMorph does, a linear
warm-up then a cosine decay of the learning rate, the weights of the best validation
(not of the last step), early stopping after ``patience`` validations without a better one, and
on CUDA mixed precision with ``cuda_batch_size`` pairs per step. ``default``'s budget, 1,500
steps of one pair, is about half an hour on two CPU cores at full resolution on the 48x64x48
hippocampus grid.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from warpbench import Grid, LearningMethod
from warpbench.search_space import Choice, FloatRange
from warpbench.spatial import as_tensor
from warpbench.training import TrainingJob
from warpbench_learning import training
from warpbench_learning.checkpoint import load_weights
from warpbench_learning.data import normalise
from warpbench_learning.instance import instance_optimise
from warpbench_learning.integrate import displacement
from warpbench_learning.model import build_network
from warpbench_learning.params import TransMorphParams, UNetParams

#: Keys that act at registration only: weights trained under one value serve every value.
TEST_TIME_KEYS = ("io_steps", "io_learning_rate")
#: Networks kept loaded per process (method, weights file, version on disk, device and trained
#: parameters).
CACHED_NETWORKS = 8

#: Every training subject's random transforms (:mod:`warpbench_learning.augmentation`), preset
#: ``labels-augment``: mild, as the subjects of one dataset already differ. Not in the other
#: presets: at CPU budgets a network sees each training pair about once, and on the hippocampus
#: data (label-supervised VoxelMorph, 20 minutes, about 300 steps) they cost 0.05 Dice on the
#: validation pairs and on the test pairs (benchmarks/measured/learning/hippocampus.jsonl).
AUGMENTATION = {
    "rotation": 10.0,  # degrees
    "scaling": 0.1,
    "translation": 3.0,  # voxels
    "elastic": 1.0,  # voxels of velocity at the control points
    "elastic_spacing": 8,  # voxels
    "gamma": 0.2,
    "bias": 0.1,
    "noise": 0.01,
}

TRAINING = {
    "supervision": "none",  # or "labels": adds the Dice loss of the warped moving labels
    "steps": 1500,  # optimiser steps; the budget
    "minutes": None,  # a wall-clock budget too, when set (counts time spent before a resume)
    "batch_size": 1,
    "cuda_batch_size": 4,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 50,
    "lncc_window": 9,  # voxels per side of the local NCC window (VoxelMorph's)
    "smoothness_weight": 1.0,  # diffusion weight; VoxelMorph's lambda for NCC
    "dice_weight": 1.0,  # Dice loss weight, used when supervision is "labels"
    "integration_steps": 7,  # scaling-and-squaring steps
    "integration_downsize": 2,  # ... on the image grid halved, as VoxelMorph integrates
    "downsize": "auto",  # full resolution up to 2**20 voxels, half above
    "augment": None,  # or AUGMENTATION
    "log_every": 10,  # steps between train-loss points (each the mean since the last)
    "val_every": 100,  # steps between validations
    "val_pairs": 16,  # validation pairs drawn when the dataset names none
    "patience": 5,  # validations without a better Dice before training stops
    "checkpoint_every": 50,  # steps between checkpoints
    "io_steps": 0,  # test-time optimisation steps per pair
    "io_learning_rate": 0.1,  # voxels of velocity per Adam step
}

#: What ``warpbench tune`` searches for every network: the optimiser's step, the smoothness
#: weight and the local NCC window; the rest keeps ``default``'s values. Each trial trains at
#: most TUNING_BUDGET (a fifth of ``default``'s steps), so 30 trials cost about six default
#: trainings; the tuned preset then trains under ``default``'s budget.
SEARCH_SPACE = {
    "learning_rate": FloatRange(1e-4, 1e-2, log=True),
    "smoothness_weight": FloatRange(0.1, 10.0, log=True),
    "lncc_window": Choice(5, 7, 9),
}
TUNING_BUDGET = {"steps": 300}


def make_presets(network: dict[str, Any]) -> dict[str, dict[str, Any]]:
    default = {**TRAINING, **network}
    labels = {**default, "supervision": "labels"}
    return {
        "default": default,
        "labels": labels,
        "default-long": {**default, "steps": 4 * default["steps"]},
        "labels-long": {**labels, "steps": 4 * labels["steps"]},
        "io": {**default, "io_steps": 50},
        "labels-augment": {**labels, "augment": AUGMENTATION},
        # An hour of the clock (6,000 steps at most): what 2 CPU cores train in one sitting.
        "labels-60min": {**labels, "steps": 4 * labels["steps"], "minutes": 60},
    }


@functools.lru_cache(maxsize=CACHED_NETWORKS)
def _load_network(method: NetworkMethod, path: str, mtime_ns: int, device: str, trained: str):
    """``method``'s network in ``path``, trained under ``trained`` (the JSON of its
    :meth:`~NetworkMethod.trained_params`), on ``device`` in eval mode; cached, so that registering
    many pairs with one weights file loads it once (``mtime_ns`` makes a rewritten file
    reload)."""
    params = json.loads(trained)
    state = load_weights(Path(path), method.name, method.version, params)
    settings = method.resolve({k: v for k, v in params.items() if k != "architecture"})
    net = build_network(method.architecture, settings)
    net.load_state_dict(state)
    return net.to(device).eval()


class NetworkMethod(LearningMethod):
    """A learning method defined by its network; subclasses set ``architecture``, ``Params``
    and presets."""

    architecture: ClassVar[str]
    supervision = "none"
    test_time_keys = TEST_TIME_KEYS  # `io` shares `default`'s training
    search_space = SEARCH_SPACE
    tuning_budget = TUNING_BUDGET

    def trained_params(self, settings) -> dict[str, Any]:
        """What decides the weights, recorded with them: every setting but the test-time ones,
        and the architecture."""
        kept = settings.model_dump(exclude=set(self.test_time_keys))
        return {**kept, "architecture": self.architecture}

    def train(self, job: TrainingJob) -> Path:
        return training.train(job, self, self.resolve(job.params))

    def register(self, fixed, moving, params, device, *, weights: Path, grid: Grid = Grid()):
        """Predict the velocity, refine it on the pair when the preset says so, integrate it.
        The network reads the two images alone, in voxels, as it was trained: ``grid`` is not
        used."""
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
            return displacement(velocity, settings.integration_steps, fixed_t.shape[2:],
                                settings.integration_downsize)[0]


class VoxelMorph(NetworkMethod):
    name = "voxelmorph"
    architecture = "voxelmorph"
    version = "2"  # 2: issue 16's recipe
    Params = UNetParams
    description = (
        "VoxelMorph (Balakrishnan et al. 2019), diffeomorphic: a U-Net of strided convolutions "
        "predicts a stationary velocity field, integrated by scaling and squaring."
    )
    # VoxelMorph-2's widths.
    presets = make_presets({"encoder": [16, 32, 32, 32], "decoder": [32, 32, 32, 32, 32, 16, 16]})


class LKUNet(NetworkMethod):
    name = "lkunet"
    architecture = "lkunet"
    version = "2"  # 2: issue 16's recipe
    Params = UNetParams
    description = (
        "LKU-Net (Jia et al. 2022), compact: a U-Net whose encoder blocks sum a 5^3 and a 3^3 "
        "convolution and the identity; velocity field integrated by scaling and squaring."
    )
    # Compact: LKU-Net's smaller variant starts at 8 channels; widths stop growing at 16.
    presets = make_presets({"encoder": [8, 16, 16, 16], "decoder": [16, 16, 16, 16, 8]})


#: TransMorph's published configuration (Chen et al. 2022, TransMorph on 160x192x224).
TRANSMORPH_PUBLISHED = {"patch_size": 4, "embed_dim": 96, "depths": [2, 2, 4, 2],
                        "heads": [4, 4, 8, 8], "window": [5, 6, 7], "mlp_ratio": 4.0,
                        "drop_path": 0.3}
#: Small enough to train on a CPU on a 48x64x48 grid: patches of 2 voxels, so that the first
#: stage there has 24x32x24 tokens (patches of 4 would leave it 12x16x12), three stages of two
#: blocks, a third of the published channels.
TRANSMORPH_SMALL = {"patch_size": 2, "embed_dim": 32, "depths": [2, 2, 2], "heads": [2, 4, 8],
                    "window": [4, 4, 4], "mlp_ratio": 4.0, "drop_path": 0.0}
#: How the published network trains here: its paper's learning rate and batch of one, the
#: displacement itself (no integration) at full resolution; the steps are a budget for one GPU,
#: far short of the paper's 500 epochs.
TRANSMORPH_PUBLISHED_TRAINING = {"learning_rate": 1e-4, "cuda_batch_size": 1,
                                 "integration_steps": 0, "downsize": 1, "steps": 10000}


class TransMorph(NetworkMethod):
    name = "transmorph"
    architecture = "transmorph"
    version = "1"
    description = (
        "TransMorph (Chen et al. 2022): a Swin-transformer encoder (windowed self-attention, "
        "shifted windows, relative position bias, patch merging) with a convolutional decoder "
        "and skip connections; velocity field integrated by scaling and squaring, or (preset "
        "published) the displacement itself."
    )
    Params = TransMorphParams
    presets = {
        **make_presets(TRANSMORPH_SMALL),
        "published": {**TRAINING, **TRANSMORPH_PUBLISHED, **TRANSMORPH_PUBLISHED_TRAINING},
        "published-labels": {**TRAINING, **TRANSMORPH_PUBLISHED, **TRANSMORPH_PUBLISHED_TRAINING,
                             "supervision": "labels"},
    }
