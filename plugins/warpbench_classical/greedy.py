"""Greedy diffeomorphic registration: a coarse-to-fine sequence of small, smooth, compositive
updates of a dense displacement, driven by local normalised cross-correlation.

Each iteration turns the loss gradient into an Adam-normalised step, smooths it with a Gaussian
(the fluid-like regulariser) and composes it onto the current map, ``phi <- phi o (id + step)``;
the map itself is then lightly smoothed (the elastic-like regulariser). A step is at most about
``learning_rate`` long per component and smooth over ``gradient_sigma``, so ``id + step`` has a
positive Jacobian and is invertible; composing invertible maps keeps the result a diffeomorphism
up to interpolation error. Lengths are mm, per axis of the grid (:mod:`warpbench_classical.units`).
"""

from __future__ import annotations

import torch
from warpbench.spatial import warp_tensor

from warpbench_classical.dense import DenseMethod, preset_family
from warpbench_classical.field_adam import COMPOSITIVE_SEARCH_SPACE, CompositiveParams, FieldAdam
from warpbench_classical.losses import make_loss, to_unit_range
from warpbench_classical.pyramid import affine_start, coarse_to_fine, zero_fields
from warpbench_classical.schedule import ActivePairs, Convergence


class GreedyParams(CompositiveParams):
    """The parameters of :class:`GreedyMethod`."""

    per_scale = ("iterations", "lncc_window")


def _refine_level(fixed, moving, disp, level: GreedyParams, lengths, through) -> torch.Tensor:
    """Refine ``disp`` (N, 3, d, h, w) on one level of the pyramid, whose voxels' lengths are
    ``lengths``, and return it; the moving images are sampled through ``through(disp)`` where
    there is an affine start."""
    loss_fn = make_loss(level.loss, fixed, lengths.window(level.lncc_window))
    adam = FieldAdam(disp)
    convergence = Convergence(level.check_every, level.tolerance)
    pairs = ActivePairs(len(disp), disp.device)
    # The loss is a mean over voxels; undoing the 1 / voxels keeps ADAM_EPS's meaning per level.
    voxels = moving[0, 0].numel()
    for iteration in range(1, level.iterations + 1):
        current = disp.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(warp_tensor(moving, current if through is None else through(current)))
            (gradient,) = torch.autograd.grad(loss.sum(), current)  # each pair its own
        disp = pairs.update(adam.compose_step(disp, gradient.mul_(voxels), level, lengths), disp)
        if pairs.stop(convergence.converged(iteration, loss)):
            break
    return disp


def greedy_register(fixed: torch.Tensor, moving: torch.Tensor, settings: GreedyParams,
                    spacing=(1.0, 1.0, 1.0), pre_aligned: bool = False):
    """The pull-back voxel displacements (N, 3, D, H, W) aligning each ``moving`` image to its
    ``fixed`` one, both (N, 1, D, H, W) on one device, on a grid of ``spacing`` mm per axis
    (None: the settings' lengths are voxels) that is ``pre_aligned`` or not; ``settings`` is a
    resolved :class:`GreedyMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    start = affine_start(fixed, moving, settings, spacing, pre_aligned)
    disp = coarse_to_fine(fixed, moving, zero_fields(fixed, settings, spacing), settings,
                          _refine_level, spacing, start)
    return disp if start is None else start.composed(disp.shape[2:])(disp)


class GreedyMethod(DenseMethod):
    name = "greedy"
    version = "2"
    description = (
        "Greedy diffeomorphic registration (compositive Adam updates, Gaussian-smoothed) with "
        "local normalised cross-correlation, coarse to fine; a FireANTs-style classical baseline."
    )
    Params = GreedyParams
    presets = preset_family({
        "scales": [4, 2, 1],  # shrink factors, coarse to fine
        "iterations": [200, 100, 30],  # at most, per scale
        # Lengths are mm of the full grid, s times as long on a level shrunk s-fold: on a 1 mm
        # grid, voxels of each level.
        "learning_rate": 0.5,  # mm per step and component, at most
        "loss": "lncc",  # or "mse", "mi"; "ncc" (global) is there but suits affine better
        "lncc_window": 5,  # mm per side of the window on every axis; a list per scale
        "gradient_sigma": 1.0,  # mm; smooths each update (fluid regularisation)
        "warp_sigma": 0.5,  # mm; smooths the accumulated displacement (elastic)
        "affine_init": "auto",  # start from the affine fit unless the data is pre-aligned
        "check_every": 10,  # iterations between convergence checks
        "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
    })
    search_space = COMPOSITIVE_SEARCH_SPACE
    optimise = staticmethod(greedy_register)
