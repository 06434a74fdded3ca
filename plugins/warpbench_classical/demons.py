"""Diffeomorphic demons (Vercauteren et al., NeuroImage 2009), coarse to fine.

Each iteration computes the demons force, a small correction ``v`` that linearises the intensity
difference away (with the symmetric, ESM, gradient: the mean of the fixed and moved images'
gradients), smooths it with a Gaussian (fluid-like regularisation), exponentiates it by scaling
and squaring so the update is itself a diffeomorphism, composes it onto the current map,
``phi <- phi o exp(v)``, and smooths the map (diffusion-like regularisation). It matches
intensities directly, so it suits pairs of one modality with comparable intensities.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat
from warpbench.search_space import FloatRange
from warpbench.spatial import compose, warp_tensor

from warpbench_classical.dense import DenseMethod, DenseParams, preset_family
from warpbench_classical.diffeomorphisms import exponentiate
from warpbench_classical.filters import gaussian_blur, spatial_gradient
from warpbench_classical.losses import per_pair_mean, to_unit_range
from warpbench_classical.pyramid import coarse_to_fine, initial_moving_displacement
from warpbench_classical.schedule import ActivePairs, Convergence

# Guards the force's denominator where both the gradient and the difference vanish.
FORCE_EPS = 1e-9


def demons_force(fixed, moved, fixed_gradient, max_step: float) -> torch.Tensor:
    """The demons correction (N, 3, d, h, w): ``diff * J / (|J|^2 + diff^2 / max_step^2)`` with
    ``diff = fixed - moved`` and ``J`` the symmetric gradient. The second term of the denominator
    bounds its length by ``max_step / 2`` voxels where the gradient is weak."""
    difference = fixed - moved
    gradient = 0.5 * (fixed_gradient + spatial_gradient(moved))
    denominator = (gradient * gradient).sum(1, keepdim=True) + difference**2 / max_step**2
    return difference * gradient / (denominator + FORCE_EPS)


class DemonsParams(DenseParams):
    """The parameters of :class:`DemonsMethod`."""

    per_scale = ("iterations", "fluid_sigma", "diffusion_sigma")

    max_step: PositiveFloat
    """Voxels; a force is at most half of it long."""
    fluid_sigma: NonNegativeFloat | list[NonNegativeFloat]
    """Voxels; smooths each update; a list gives one per scale."""
    diffusion_sigma: NonNegativeFloat | list[NonNegativeFloat]
    """Voxels; smooths the accumulated map; a list gives one per scale."""
    squarings: NonNegativeInt
    """Scaling and squaring steps exponentiating each update."""


def _refine_level(fixed, moving, disp, level: DemonsParams) -> torch.Tensor:
    """Refine ``disp`` (N, 3, d, h, w) on one level of the pyramid and return it."""
    fixed_gradient = spatial_gradient(fixed)
    convergence = Convergence(level.check_every, level.tolerance)
    pairs = ActivePairs(len(disp), disp.device)
    for iteration in range(1, level.iterations + 1):
        moved = warp_tensor(moving, disp)
        update = demons_force(fixed, moved, fixed_gradient, level.max_step)
        update = exponentiate(gaussian_blur(update, level.fluid_sigma), level.squarings)
        disp = pairs.update(gaussian_blur(compose(disp, update), level.diffusion_sigma), disp)
        if pairs.stop(convergence.converged(iteration, per_pair_mean((fixed - moved) ** 2))):
            break
    return disp


def demons_register(fixed: torch.Tensor, moving: torch.Tensor, settings: DemonsParams):
    """The pull-back voxel displacements (N, 3, D, H, W) aligning each ``moving`` image to its
    ``fixed`` one, both (N, 1, D, H, W) on one device; ``settings`` is a resolved
    :class:`DemonsMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    disp = initial_moving_displacement(fixed, moving, settings)
    return coarse_to_fine(fixed, moving, disp, settings, _refine_level)


class DemonsMethod(DenseMethod):
    name = "demons"
    version = "1"
    description = (
        "Diffeomorphic demons (Vercauteren et al. 2009): symmetric demons forces, Gaussian "
        "fluid and diffusion smoothing, updates exponentiated and composed, coarse to fine."
    )
    Params = DemonsParams
    presets = preset_family({
        "scales": [4, 2, 1],  # shrink factors, coarse to fine
        "iterations": [200, 100, 50],  # at most, per scale
        "max_step": 2.0,  # voxels; the force is at most half of it long
        "fluid_sigma": 1.0,  # voxels; smooths each update; a list gives one per scale
        "diffusion_sigma": 1.0,  # voxels; smooths the accumulated map; a list per scale
        "squarings": 4,  # scaling and squaring steps exponentiating each update
        "affine_init": False,  # start from the affine method's default fit
        "check_every": 10,  # iterations between convergence checks
        "tolerance": 1e-4,  # relative loss (mean squares) improvement per check to go on
    })
    # What `warpbench tune` searches: the force's step and both smoothings (one value for every
    # scale).
    search_space = {
        "max_step": FloatRange(0.25, 4.0, log=True),
        "fluid_sigma": FloatRange(0.0, 3.0),
        "diffusion_sigma": FloatRange(0.0, 3.0),
    }
    optimise = staticmethod(demons_register)
