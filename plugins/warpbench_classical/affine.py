"""A global affine registration: coarse-to-fine Adam over the 12 entries of a 3x4 matrix."""

from __future__ import annotations

import torch
from pydantic import PositiveFloat

from warpbench import Grid, Method
from warpbench.spatial import as_tensor, identity_grid, warp_tensor
from warpbench_classical.filters import shrink_image
from warpbench_classical.losses import Loss, make_loss, to_unit_range
from warpbench_classical.schedule import Convergence, ScheduleParams, per_scale
from warpbench_classical.units import axis_shrink, level_lengths


class AffineParams(ScheduleParams):
    """The parameters of :class:`AffineMethod`."""

    learning_rate: PositiveFloat
    """Adam's step, in normalised units (0.01 is about 0.3 voxel on a 64-voxel axis)."""
    loss: Loss
    lncc_window: PositiveFloat
    """mm per side of the LNCC window on every axis (s times as long on a level shrunk s-fold;
    :mod:`warpbench_classical.units`), used when the loss is "lncc"."""


def normalised_grid(shape, device=None) -> torch.Tensor:
    """Coordinates (3, D, H, W) running from -1 at the first voxel to +1 at the last on each axis.

    A matrix acting on these means the same transform on every grid of a pyramid, and its
    translation and linear entries have comparable magnitudes, which suits one learning rate.
    """
    sizes = torch.tensor([max(n - 1, 1) for n in shape], device=device, dtype=torch.float32)
    return identity_grid(shape, device) * (2.0 / sizes).view(3, 1, 1, 1) - 1.0


def affine_displacement(matrix: torch.Tensor, shape) -> torch.Tensor:
    """The voxel displacement (1, 3, D, H, W) of the 3x4 ``matrix`` acting on normalised
    coordinates (:func:`normalised_grid`), as a pull-back: ``x`` samples the moving image at
    ``matrix @ [x, 1]``."""
    grid = normalised_grid(shape, matrix.device)
    mapped = torch.einsum("ij,jdhw->idhw", matrix[:, :3], grid) + matrix[:, 3].view(3, 1, 1, 1)
    half_sizes = torch.tensor([max(n - 1, 1) / 2.0 for n in shape], device=matrix.device)
    return ((mapped - grid) * half_sizes.view(3, 1, 1, 1)).unsqueeze(0)


def half_affines(matrix: torch.Tensor, iterations: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3x4 ``root`` whose square is ``matrix`` (3x4, acting on homogeneous coordinates) and
    its inverse: half of the affine each way, ``root @ root = matrix``. By the Denman-Beavers
    iteration, which converges for any affine without a half-turn (no eigenvalue of its linear
    part on the negative real axis), quadratically near the identity."""
    row = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64, device=matrix.device)
    square = torch.cat([matrix.to(torch.float64), row])
    root, inverse_root = square, torch.eye(4, dtype=torch.float64, device=matrix.device)
    for _ in range(iterations):
        root, inverse_root = (0.5 * (root + torch.linalg.inv(inverse_root)),
                              0.5 * (inverse_root + torch.linalg.inv(root)))
    return root[:3].to(matrix.dtype), inverse_root[:3].to(matrix.dtype)


def fit_affine(fixed: torch.Tensor, moving: torch.Tensor, settings: AffineParams,
               spacing=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """The 3x4 matrix (normalised coordinates) that best aligns ``moving`` to ``fixed``, both
    (1, 1, D, H, W) on one device, on a grid of ``spacing`` mm per axis (None: lengths in
    voxels); ``settings`` is a resolved :class:`AffineMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    scales = settings.scales
    iterations = per_scale(settings.iterations, scales)
    # Optimise the offset from the identity, so that zero means "no transform".
    offset = torch.zeros(3, 4, device=fixed.device, requires_grad=True)
    identity = torch.eye(3, 4, device=fixed.device)
    optimiser = torch.optim.Adam([offset], lr=settings.learning_rate)
    for scale, steps in zip(scales, iterations):
        shrink = axis_shrink(scale, spacing)
        fixed_s, moving_s = shrink_image(fixed, shrink), shrink_image(moving, shrink)
        lengths = level_lengths(spacing, fixed.shape[2:], fixed_s.shape[2:], scale)
        loss_fn = make_loss(settings.loss, fixed_s, lengths.window(settings.lncc_window))
        convergence = Convergence(settings.check_every, settings.tolerance)
        for iteration in range(1, steps + 1):
            optimiser.zero_grad(set_to_none=True)
            with torch.enable_grad():  # callers may hold no_grad, e.g. greedy's initialisation
                disp = affine_displacement(identity + offset, fixed_s.shape[2:])
                (loss,) = loss_fn(warp_tensor(moving_s, disp))  # the one pair's
                loss.backward()
            optimiser.step()
            converged = convergence.converged(iteration, loss)
            if converged is not None and converged.all():
                break
    return (identity + offset).detach()


class AffineMethod(Method):
    name = "affine"
    family = "classical"
    version = "2"
    description = (
        "Global affine (12 parameters) by coarse-to-fine Adam on normalised cross-correlation; "
        "the linear baseline that deformable methods have to beat."
    )
    Params = AffineParams
    presets = {
        "default": {
            "scales": [2, 1],  # shrink factors, coarse to fine
            "iterations": [100, 50],  # at most, per scale
            "learning_rate": 0.01,  # in normalised units: 0.01 is ~0.3 voxel on a 64-voxel axis
            "loss": "ncc",
            "lncc_window": 7,  # mm, used when loss is "lncc"
            "check_every": 10,  # iterations between convergence checks
            "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
        },
    }

    def register(self, fixed, moving, params, device, *, grid: Grid = Grid()):
        """Fit the affine on the pair's ``grid`` and return it as the dense voxel displacement
        it induces."""
        settings = self.resolve(params)
        fixed_t = as_tensor(fixed, device)[None, None]
        moving_t = as_tensor(moving, device)[None, None]
        matrix = fit_affine(fixed_t, moving_t, settings, tuple(grid.spacing))
        with torch.no_grad():
            return affine_displacement(matrix, fixed_t.shape[2:])[0]
