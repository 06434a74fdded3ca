"""Symmetric diffeomorphic registration (SyN-style): both images move half way, to a middle
space, so neither is privileged and the result does not depend on which one is called fixed.

Two half-warps are kept per pair, ``phi_f`` (middle -> fixed) and ``phi_m`` (middle -> moving),
as one batch of pull-back displacements: every pair's ``phi_f``, then every pair's ``phi_m``.
Each iteration warps both images into the middle, takes the gradient of their dissimilarity with
respect to both half-warps, and updates each as greedy does: an Adam-normalised step,
Gaussian-smoothed (fluid), composed on, ``phi <- phi o (id + step)``, then the half-warp lightly
smoothed (elastic). The answer, moving -> fixed, is
``phi_m o phi_f^-1``, with the inverse found by fixed-point iteration once at the end.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveFloat
from warpbench.spatial import compose, warp_tensor

from warpbench_classical.dense import DenseMethod, preset_family
from warpbench_classical.diffeomorphisms import invert
from warpbench_classical.field_adam import COMPOSITIVE_SEARCH_SPACE, CompositiveParams, FieldAdam
from warpbench_classical.losses import make_loss, to_unit_range
from warpbench_classical.pyramid import coarse_to_fine, initial_moving_displacement
from warpbench_classical.schedule import ActivePairs, Convergence


class SynParams(CompositiveParams):
    """The parameters of :class:`SynMethod`."""

    per_scale = ("iterations", "lncc_window", "learning_rate")

    learning_rate: PositiveFloat | list[PositiveFloat]
    """Voxels per step and component per half-warp, at most; a list gives one per scale."""
    inverse_iterations: NonNegativeInt
    """Fixed-point iterations inverting the fixed half-warp."""


def _refine_level(fixed, moving, halves, level: SynParams) -> torch.Tensor:
    """Refine the half-warps ``halves`` (2 N, 3, d, h, w: the fixed images', then the moving
    images') of the N pairs on one level."""
    count = len(fixed)
    images = torch.cat([fixed, moving])
    adam = FieldAdam(halves)
    convergence = Convergence(level.check_every, level.tolerance)
    pairs = ActivePairs(count, halves.device)
    # The loss is a mean over voxels; undoing the 1 / voxels keeps ADAM_EPS's meaning per level.
    voxels = fixed[0, 0].numel()
    for iteration in range(1, level.iterations + 1):
        current = halves.detach().requires_grad_(True)
        with torch.enable_grad():
            fixed_mid, moving_mid = warp_tensor(images, current).split(count)
            loss = make_loss(level.loss, fixed_mid, level.lncc_window)(moving_mid)
            (gradient,) = torch.autograd.grad(loss.sum(), current)  # each pair its own
        halves = pairs.update(adam.compose_step(halves, gradient.mul_(voxels), level), halves)
        if pairs.stop(convergence.converged(iteration, loss)):
            break
    return halves


def syn_register(fixed: torch.Tensor, moving: torch.Tensor, settings: SynParams):
    """The pull-back voxel displacements (N, 3, D, H, W) aligning each ``moving`` image to its
    ``fixed`` one, both (N, 1, D, H, W) on one device; ``settings`` is a resolved
    :class:`SynMethod` preset. An affine start goes into the moving half-warp, so the middle
    space starts at the fixed one."""
    fixed, moving = to_unit_range(fixed, moving)
    start = initial_moving_displacement(fixed, moving, settings)
    halves = torch.cat([torch.zeros_like(start), start])
    halves = coarse_to_fine(fixed, moving, halves, settings, _refine_level)
    to_fixed, to_moving = halves.split(len(fixed))
    return compose(to_moving, invert(to_fixed, settings.inverse_iterations))


class SynMethod(DenseMethod):
    name = "syn"
    version = "2"
    description = (
        "Symmetric diffeomorphic registration: two half-warps to a middle space, compositive "
        "Adam updates, Gaussian-smoothed, coarse to fine; a FireANTs-style SyN."
    )
    Params = SynParams
    presets = preset_family({
        "scales": [4, 2, 1],  # shrink factors, coarse to fine
        "iterations": [200, 100, 50],  # at most, per scale
        "learning_rate": 0.5,  # voxels per step and component per half-warp; list per scale
        "loss": "lncc",  # or "mse", "mi"
        "lncc_window": 5,  # voxels per side; a list gives one per scale
        "gradient_sigma": 1.0,  # voxels; smooths each update (fluid regularisation)
        "warp_sigma": 0.75,  # voxels; smooths each half-warp after each update (elastic)
        "affine_init": False,  # start the moving half from the affine method's default fit
        "inverse_iterations": 30,  # fixed-point iterations inverting the fixed half-warp
        "check_every": 10,  # iterations between convergence checks
        "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
    })
    search_space = COMPOSITIVE_SEARCH_SPACE
    optimise = staticmethod(syn_register)
