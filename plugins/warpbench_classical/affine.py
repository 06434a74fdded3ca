"""A global affine registration: coarse-to-fine Adam over the 12 entries of a 3x4 matrix."""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt

from warpbench import Method
from warpbench.spatial import as_tensor, identity_grid, warp_tensor
from warpbench_classical.filters import shrink_image
from warpbench_classical.losses import Loss, make_loss, to_unit_range
from warpbench_classical.schedule import Convergence, ScheduleParams, per_scale


class AffineParams(ScheduleParams):
    """The parameters of :class:`AffineMethod`."""

    learning_rate: PositiveFloat
    """Adam's step, in normalised units (0.01 is about 0.3 voxel on a 64-voxel axis)."""
    loss: Loss
    lncc_window: PositiveInt
    """Voxels per side of the LNCC window, used when the loss is "lncc"."""


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


def fit_affine(fixed: torch.Tensor, moving: torch.Tensor, settings: AffineParams) -> torch.Tensor:
    """The 3x4 matrix (normalised coordinates) that best aligns ``moving`` to ``fixed``, both
    (1, 1, D, H, W) on one device; ``settings`` is a resolved :class:`AffineMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    scales = settings.scales
    iterations = per_scale(settings.iterations, scales)
    # Optimise the offset from the identity, so that zero means "no transform".
    offset = torch.zeros(3, 4, device=fixed.device, requires_grad=True)
    identity = torch.eye(3, 4, device=fixed.device)
    optimiser = torch.optim.Adam([offset], lr=settings.learning_rate)
    for scale, steps in zip(scales, iterations):
        fixed_s, moving_s = shrink_image(fixed, scale), shrink_image(moving, scale)
        loss_fn = make_loss(settings.loss, fixed_s, settings.lncc_window)
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
    version = "1"
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
            "lncc_window": 7,  # voxels, used when loss is "lncc"
            "check_every": 10,  # iterations between convergence checks
            "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
        },
    }

    def register(self, fixed, moving, params, device):
        """Fit the affine and return it as the dense voxel displacement it induces."""
        settings = self.resolve(params)
        fixed_t = as_tensor(fixed, device)[None, None]
        moving_t = as_tensor(moving, device)[None, None]
        matrix = fit_affine(fixed_t, moving_t, settings)
        with torch.no_grad():
            return affine_displacement(matrix, fixed_t.shape[2:])[0]
