"""Adam's per-voxel step normalisation for dense displacement fields, shared by greedy and syn,
and the parameters of their compositive steps."""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, PositiveFloat
from warpbench.search_space import Choice, FloatRange
from warpbench.spatial import compose

from warpbench_classical.dense import DenseParams
from warpbench_classical.filters import gaussian_blur
from warpbench_classical.losses import Loss
from warpbench_classical.units import VoxelLengths

# Adam's moment decay rates (the usual ones).
ADAM_BETAS = (0.9, 0.999)
# Adam's guard, in units of the per-voxel gradient (the change of a voxel's own loss term per mm
# of displacement, on any grid: about 0.1 to 3 where edges are misaligned). Weaker gradients
# get proportionally shorter steps instead of being normalised up to full ones, so the float32
# rounding noise of a pair of identical images leaves them (almost) still.
ADAM_EPS = 0.3


class CompositiveParams(DenseParams):
    """The parameters of greedy and syn: a loss, and Adam-normalised steps that are smoothed and
    composed onto the field (:meth:`FieldAdam.compose_step`). Lengths are mm of the full grid,
    read s times as long on a level shrunk s-fold (:mod:`warpbench_classical.units`): on a 1 mm
    grid, voxels of each level."""

    learning_rate: PositiveFloat
    """mm per step and component, at most (times the level's shrink factor)."""
    loss: Loss
    lncc_window: PositiveFloat | list[PositiveFloat]
    """mm per side of the LNCC window on every axis (a voxel it covers in part counts in part);
    a list gives one per scale."""
    gradient_sigma: NonNegativeFloat
    """mm; smooths each update (fluid regularisation)."""
    warp_sigma: NonNegativeFloat
    """mm; smooths the field after each update (elastic regularisation)."""


#: What `warpbench tune` searches for greedy and syn: the step, the LNCC window and both
#: regularisers, one value for every scale. The schedule stays the default one, which stops each
#: scale on convergence, so a trial's cost is not a parameter the search could buy Dice with.
COMPOSITIVE_SEARCH_SPACE = {
    "learning_rate": FloatRange(0.05, 2.0, log=True),
    "lncc_window": Choice(3, 5, 7, 9),
    "gradient_sigma": FloatRange(0.0, 3.0),
    "warp_sigma": FloatRange(0.0, 2.0),
}


class FieldAdam:
    """Adam's moment estimates over a displacement field, returning a normalised direction
    rather than applying it, so the caller can smooth it and compose it instead of adding."""

    def __init__(self, like: torch.Tensor):
        self.first = torch.zeros_like(like)
        self.second = torch.zeros_like(like)
        self.steps = 0

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        beta1, beta2 = ADAM_BETAS
        self.steps += 1
        self.first.mul_(beta1).add_(gradient, alpha=1 - beta1)
        self.second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        # Bias corrections folded into scalars: first / c1 / (sqrt(second / c2) + eps).
        root_c2 = (1 - beta2**self.steps) ** 0.5
        denominator = self.second.sqrt().add_(ADAM_EPS * root_c2)
        return self.first.div(denominator).mul_(root_c2 / (1 - beta1**self.steps))

    def compose_step(self, field: torch.Tensor, gradient: torch.Tensor,
                     level: CompositiveParams, lengths: VoxelLengths) -> torch.Tensor:
        """The compositive update greedy and syn share: the Adam direction of ``gradient`` (per
        voxel of displacement, taken per unit of length, so that a long voxel's component is
        not favoured), smoothed over ``gradient_sigma`` (fluid), ``learning_rate`` long in each
        component, composed onto ``field`` as voxels, which is then smoothed over
        ``warp_sigma`` (elastic); ``level`` is one level's settings and ``lengths`` its voxels'
        lengths."""
        direction = self.direction(lengths.per_length(gradient))
        step = gaussian_blur(direction, lengths.sigma(level.gradient_sigma))
        step = lengths.to_voxels(step.mul_(-level.learning_rate))
        return gaussian_blur(compose(field, step), lengths.sigma(level.warp_sigma))
