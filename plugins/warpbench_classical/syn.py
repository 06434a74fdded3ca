"""Symmetric diffeomorphic registration (SyN-style): both images move half way, to a middle
space, so neither is privileged and the result does not depend on which one is called fixed.

Two half-warps are kept per pair, ``phi_f`` (middle -> fixed) and ``phi_m`` (middle -> moving),
as one batch of pull-back displacements: every pair's ``phi_f``, then every pair's ``phi_m``.
Each iteration warps both images into the middle, takes the gradient of their dissimilarity with
respect to both half-warps, and updates each as greedy does: an Adam-normalised step,
Gaussian-smoothed (fluid), composed on, ``phi <- phi o (id + step)``, then the half-warp lightly
smoothed (elastic). The answer, moving -> fixed, is
``phi_m o phi_f^-1``, with the inverse found by fixed-point iteration once at the end. An affine
start ``A`` is split half each way, ``B`` with ``B o B = A``, and kept apart from the half-warps,
which deform after it: ``phi_f = B^-1 o (id + u_f)`` and ``phi_m = B o (id + u_m)``. Lengths are
mm, per axis of the grid (:mod:`warpbench_classical.units`).
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveFloat
from warpbench.spatial import compose, warp_tensor

from warpbench_classical.affine import half_affines
from warpbench_classical.dense import DenseMethod, preset_family
from warpbench_classical.diffeomorphisms import invert
from warpbench_classical.field_adam import COMPOSITIVE_SEARCH_SPACE, CompositiveParams, FieldAdam
from warpbench_classical.losses import make_loss, to_unit_range
from warpbench_classical.pyramid import AffineStart, coarse_to_fine, initial_affines, zero_fields
from warpbench_classical.schedule import ActivePairs, Convergence


class SynParams(CompositiveParams):
    """The parameters of :class:`SynMethod`."""

    per_scale = ("iterations", "lncc_window", "learning_rate")

    learning_rate: PositiveFloat | list[PositiveFloat]
    """mm per step and component per half-warp, at most (times the level's shrink factor); a
    list gives one per scale."""
    inverse_iterations: NonNegativeInt
    """Fixed-point iterations inverting the fixed half-warp."""


def _refine_level(fixed, moving, halves, level: SynParams, lengths, through) -> torch.Tensor:
    """Refine the half-warps ``halves`` (2 N, 3, d, h, w: the fixed images', then the moving
    images') of the N pairs on one level, whose voxels' lengths are ``lengths``; the images are
    sampled through ``through(halves)`` where there is an affine start."""
    count = len(fixed)
    images = torch.cat([fixed, moving])
    adam = FieldAdam(halves)
    convergence = Convergence(level.check_every, level.tolerance)
    pairs = ActivePairs(count, halves.device)
    # The loss is a mean over voxels; undoing the 1 / voxels keeps ADAM_EPS's meaning per level.
    voxels = fixed[0, 0].numel()
    window = lengths.window(level.lncc_window)
    for iteration in range(1, level.iterations + 1):
        current = halves.detach().requires_grad_(True)
        with torch.enable_grad():
            sampled = current if through is None else through(current)
            fixed_mid, moving_mid = warp_tensor(images, sampled).split(count)
            loss = make_loss(level.loss, fixed_mid, window)(moving_mid)
            (gradient,) = torch.autograd.grad(loss.sum(), current)  # each pair its own
        step = adam.compose_step(halves, gradient.mul_(voxels), level, lengths)
        halves = pairs.update(step, halves)
        if pairs.stop(convergence.converged(iteration, loss)):
            break
    return halves


def half_starts(matrices: torch.Tensor | None) -> tuple[AffineStart, AffineStart] | None:
    """For an affine start of each pair (N, 3, 4), half of it each way (:func:`half_affines`):
    the start of both half-warps (the fixed images' ``B^-1``, then the moving images' ``B``), so
    that the middle space starts half way between the images and the answer does not depend on
    which one is called fixed; and the moving half ``B`` alone."""
    if matrices is None:
        return None
    roots, inverse_roots = zip(*[half_affines(matrix) for matrix in matrices])
    return (AffineStart(torch.stack([*inverse_roots, *roots])), AffineStart(torch.stack(roots)))


def syn_register(fixed: torch.Tensor, moving: torch.Tensor, settings: SynParams,
                 spacing=(1.0, 1.0, 1.0), pre_aligned: bool = False):
    """The pull-back voxel displacements (N, 3, D, H, W) aligning each ``moving`` image to its
    ``fixed`` one, both (N, 1, D, H, W) on one device, on a grid of ``spacing`` mm per axis
    (None: the settings' lengths are voxels) that is ``pre_aligned`` or not; ``settings`` is a
    resolved :class:`SynMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    matrices = initial_affines(fixed, moving, settings, spacing, pre_aligned)
    starts = half_starts(matrices)
    halves = coarse_to_fine(fixed, moving, zero_fields(fixed, settings, spacing, copies=2),
                            settings, _refine_level, spacing, starts and starts[0])
    to_fixed, to_moving = halves.split(len(fixed))
    deformation = compose(to_moving, invert(to_fixed, settings.inverse_iterations))
    if starts is None:
        return deformation
    # B o (id + u_m) o (id + u_f)^-1 o B, with w the deformation (id + u_m) o (id + u_f)^-1 and
    # A = B o B: at y, A(y) - y + L w(B(y)), L being B's linear part (in voxels).
    half, shape = starts[1], deformation.shape[2:]
    to_half = half.displacement(shape)
    deformed = half.composed(shape)(warp_tensor(deformation, to_half)) - to_half
    return AffineStart(matrices).displacement(shape) + deformed


class SynMethod(DenseMethod):
    name = "syn"
    version = "3"
    description = (
        "Symmetric diffeomorphic registration: two half-warps to a middle space, compositive "
        "Adam updates, Gaussian-smoothed, coarse to fine; a FireANTs-style SyN."
    )
    Params = SynParams
    presets = preset_family({
        "scales": [4, 2, 1],  # shrink factors, coarse to fine
        "iterations": [200, 100, 50],  # at most, per scale
        # Lengths are mm of the full grid, s times as long on a level shrunk s-fold: on a 1 mm
        # grid, voxels of each level.
        "learning_rate": 0.5,  # mm per step and component per half-warp; list per scale
        "loss": "lncc",  # or "mse", "mi"
        "lncc_window": 5,  # mm per side of the window on every axis; a list per scale
        "gradient_sigma": 1.0,  # mm; smooths each update (fluid regularisation)
        "warp_sigma": 0.75,  # mm; smooths each half-warp after each update (elastic)
        "affine_init": "auto",  # the moving half starts from the affine fit unless pre-aligned
        "inverse_iterations": 30,  # fixed-point iterations inverting the fixed half-warp
        "check_every": 10,  # iterations between convergence checks
        "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
    })
    search_space = COMPOSITIVE_SEARCH_SPACE
    optimise = staticmethod(syn_register)
