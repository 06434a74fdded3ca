"""What greedy, syn and demons share as methods: one preset family, the parameters of a dense
field's schedule, and one way into torch.

Each keeps its own ``default`` (tuned for accuracy); ``fast`` and ``literature`` are derived from
it the same way for all three, so the instrumentation-bias axis means the same thing for each.
Every preset of the family starts from the affine method's fit unless the dataset declares its
subjects affinely aligned already (``affine_init: "auto"``), and reads its lengths in mm of the
pair's grid (:mod:`warpbench_classical.units`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from warpbench import Grid, Method
from warpbench.methods import grid_keyword
from warpbench.spatial import as_tensor

from warpbench_classical.schedule import ScheduleParams

#: The weak settings of earlier comparisons: a short schedule and a loose stop (and mean squares,
#: for a method whose default loss is another).
LITERATURE = {"iterations": [40, 20, 10], "tolerance": 1e-2}
FAST = {"iterations": [100, 50, 15], "tolerance": 1e-3}
#: Pairs batched on a GPU at most, the share of its free memory a batch may take, and a bound on
#: what one pair holds at once: about 40 float32 tensors of its grid (images, fields, Adam's
#: moments, the LNCC statistics and the sampler's gradients, for syn's two half-warps), doubled.
MAX_BATCH = 8
BATCH_MEMORY_SHARE = 0.5
BYTES_PER_VOXEL = 2 * 40 * 4


def preset_family(default: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``default``, ``fast`` (about half the schedule, a looser stop) and ``literature``."""
    literature = {**default, **LITERATURE}
    if "loss" in default:
        literature["loss"] = "mse"
    return {"default": default, "fast": {**default, **FAST}, "literature": literature}


#: What ``affine_init`` may say: always, never, or "auto": unless the grid is pre-aligned.
AffineInit = Literal["auto"] | bool


def starts_affine(affine_init: AffineInit, pre_aligned: bool) -> bool:
    """Whether a registration starts from the affine fit: ``affine_init`` true, or ``"auto"``
    for a pair whose dataset does not declare itself affinely aligned (``pre_aligned``)."""
    return not pre_aligned if affine_init == "auto" else bool(affine_init)


class DenseParams(ScheduleParams):
    """The parameters every dense deformable method has."""

    affine_init: AffineInit
    """Start from the affine method's default fit instead of the identity: true, false, or
    "auto", unless the dataset is pre-aligned (``Grid.pre_aligned``)."""


class DenseMethod(Method):
    """A dense deformable method whose ``optimise(fixed, moving, settings)`` takes images
    (N, 1, D, H, W) and its resolved ``Params`` (a :class:`DenseParams`) and returns fields
    (N, 3, D, H, W), each pair optimised on its own."""

    family = "classical"
    #: ``optimise(fixed, moving, settings, spacing=..., pre_aligned=...)``: the grid's spacing
    #: in mm per axis (None: the settings' lengths are voxels) and whether it is pre-aligned.
    optimise: Callable[..., torch.Tensor]

    def register(self, fixed, moving, params, device, *, grid: Grid = Grid()):
        """Run the schedule in ``params`` on ``device`` and return the (3, D, H, W) field; the
        settings' lengths are mm of ``grid.spacing``, and ``affine_init: "auto"`` starts from
        the affine fit unless ``grid.pre_aligned``."""
        # A subclass whose register_batch predates the grid is called without one.
        extra = grid_keyword(self.register_batch, grid)
        return self.register_batch([(fixed, moving)], params, device, **extra)[0]

    def register_batch(self, pairs, params, device, *, grid: Grid = Grid()):
        """Register the pairs (of one ``grid``) as one batch: the same fields as one by one (a
        pair that converges first is frozen), in one pass of the GPU's kernels instead of
        several."""
        settings = self.resolve(params)
        with torch.no_grad():
            fixed_t = torch.stack([as_tensor(fixed, device) for fixed, _ in pairs])[:, None]
            moving_t = torch.stack([as_tensor(moving, device) for _, moving in pairs])[:, None]
            return list(self.optimise(fixed_t, moving_t, settings, spacing=tuple(grid.spacing),
                                      pre_aligned=grid.pre_aligned))

    def max_batch(self, shape, params, device) -> int:
        """On CUDA, as many pairs as :data:`BATCH_MEMORY_SHARE` of the free memory holds at
        :data:`BYTES_PER_VOXEL` per pair, at most :data:`MAX_BATCH`; one elsewhere, so that a pair's
        time stays its own (though a batch is faster on a CPU too: benchmarks/batching.py)."""
        device = torch.device(device)
        if device.type != "cuda":
            return 1
        free, _ = torch.cuda.mem_get_info(device)
        per_pair = BYTES_PER_VOXEL * math.prod(shape)
        return max(1, min(MAX_BATCH, int(BATCH_MEMORY_SHARE * free // per_pair)))
