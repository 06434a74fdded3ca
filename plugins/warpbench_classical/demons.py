"""Diffeomorphic demons (Vercauteren et al., NeuroImage 2009), coarse to fine.

Each iteration computes the demons force, a small correction ``v`` that linearises the intensity
difference away (with the symmetric, ESM, gradient: the mean of the fixed and moved images'
gradients), smooths it with a Gaussian (fluid-like regularisation), exponentiates it by scaling
and squaring so the update is itself a diffeomorphism, composes it onto the current map,
``phi <- phi o exp(v)``, and smooths the map (diffusion-like regularisation). It matches
intensities directly, so it suits pairs of one modality with comparable intensities. Lengths
(the step, both smoothings) are mm, per axis of the grid (:mod:`warpbench_classical.units`), and
the force is computed in them: on an anisotropic grid a long voxel's gradient is per mm too.
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
from warpbench_classical.pyramid import affine_start, coarse_to_fine, zero_fields
from warpbench_classical.schedule import ActivePairs, Convergence
from warpbench_classical.units import IN_VOXELS, VoxelLengths

# Guards the force's denominator where both the gradient and the difference vanish.
FORCE_EPS = 1e-9


def demons_force(fixed, moved, fixed_gradient, max_step: float,
                 lengths: VoxelLengths = IN_VOXELS) -> torch.Tensor:
    """The demons correction (N, 3, d, h, w) in voxels: ``diff * J / (|J|^2 + diff^2 /
    max_step^2)`` with ``diff = fixed - moved`` and ``J`` the symmetric gradient per unit of
    ``lengths`` (the level's voxels' lengths; by default voxels). The second term of the
    denominator bounds its length by ``max_step / 2`` where the gradient is weak."""
    difference = fixed - moved
    gradient = lengths.per_length(0.5 * (fixed_gradient + spatial_gradient(moved)))
    denominator = (gradient * gradient).sum(1, keepdim=True) + difference**2 / max_step**2
    return lengths.to_voxels(difference * gradient / (denominator + FORCE_EPS))


class DemonsParams(DenseParams):
    """The parameters of :class:`DemonsMethod`. Lengths are mm of the full grid, read s times as
    long on a level shrunk s-fold (:mod:`warpbench_classical.units`): on a 1 mm grid, voxels of
    each level."""

    per_scale = ("iterations", "fluid_sigma", "diffusion_sigma")

    max_step: PositiveFloat
    """mm; a force is at most half of it long."""
    fluid_sigma: NonNegativeFloat | list[NonNegativeFloat]
    """mm; smooths each update; a list gives one per scale."""
    diffusion_sigma: NonNegativeFloat | list[NonNegativeFloat]
    """mm; smooths the accumulated map; a list gives one per scale."""
    squarings: NonNegativeInt
    """Scaling and squaring steps exponentiating each update."""


def _refine_level(fixed, moving, disp, level: DemonsParams, lengths, through) -> torch.Tensor:
    """Refine ``disp`` (N, 3, d, h, w) on one level of the pyramid, whose voxels' lengths are
    ``lengths``, and return it; the moving images are sampled through ``through(disp)`` where
    there is an affine start (the update composes onto the deformation after it)."""
    fixed_gradient = spatial_gradient(fixed)
    fluid, diffusion = lengths.sigma(level.fluid_sigma), lengths.sigma(level.diffusion_sigma)
    convergence = Convergence(level.check_every, level.tolerance)
    pairs = ActivePairs(len(disp), disp.device)
    for iteration in range(1, level.iterations + 1):
        moved = warp_tensor(moving, disp if through is None else through(disp))
        update = demons_force(fixed, moved, fixed_gradient, level.max_step, lengths)
        update = exponentiate(gaussian_blur(update, fluid), level.squarings)
        disp = pairs.update(gaussian_blur(compose(disp, update), diffusion), disp)
        if pairs.stop(convergence.converged(iteration, per_pair_mean((fixed - moved) ** 2))):
            break
    return disp


def demons_register(fixed: torch.Tensor, moving: torch.Tensor, settings: DemonsParams,
                    spacing=(1.0, 1.0, 1.0), pre_aligned: bool = False):
    """The pull-back voxel displacements (N, 3, D, H, W) aligning each ``moving`` image to its
    ``fixed`` one, both (N, 1, D, H, W) on one device, on a grid of ``spacing`` mm per axis
    (None: the settings' lengths are voxels) that is ``pre_aligned`` or not; ``settings`` is a
    resolved :class:`DemonsMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    start = affine_start(fixed, moving, settings, spacing, pre_aligned)
    disp = coarse_to_fine(fixed, moving, zero_fields(fixed, settings, spacing), settings,
                          _refine_level, spacing, start)
    return disp if start is None else start.composed(disp.shape[2:])(disp)


class DemonsMethod(DenseMethod):
    name = "demons"
    version = "2"
    description = (
        "Diffeomorphic demons (Vercauteren et al. 2009): symmetric demons forces, Gaussian "
        "fluid and diffusion smoothing, updates exponentiated and composed, coarse to fine."
    )
    Params = DemonsParams
    presets = preset_family({
        "scales": [4, 2, 1],  # shrink factors, coarse to fine
        "iterations": [200, 100, 50],  # at most, per scale
        # Lengths are mm of the full grid, s times as long on a level shrunk s-fold: on a 1 mm
        # grid, voxels of each level.
        "max_step": 2.0,  # mm; the force is at most half of it long
        "fluid_sigma": 1.0,  # mm; smooths each update; a list gives one per scale
        "diffusion_sigma": 1.0,  # mm; smooths the accumulated map; a list per scale
        "squarings": 4,  # scaling and squaring steps exponentiating each update
        "affine_init": "auto",  # start from the affine fit unless the data is pre-aligned
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
