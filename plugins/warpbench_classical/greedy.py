"""Greedy diffeomorphic registration: a coarse-to-fine sequence of small, smooth, compositive
updates of a dense displacement, driven by local normalised cross-correlation.

Each iteration turns the loss gradient into an Adam-normalised step, smooths it with a Gaussian
(the fluid-like regulariser) and composes it onto the current map, ``phi <- phi o (id + step)``;
the map itself is then lightly smoothed (the elastic-like regulariser). A step is at most
``learning_rate`` voxels long per component and smooth over ``gradient_sigma`` voxels, so
``id + step`` has a positive Jacobian and is invertible; composing invertible maps keeps the
result a diffeomorphism up to interpolation error.
"""

from __future__ import annotations

from typing import Any

import torch
import os
SHRINK=float(os.environ.get('SHRINK','0.5')); GROW=float(os.environ.get('GROW','1.1'))

from warpbench import Method
from warpbench.spatial import as_tensor, compose, warp_tensor
from warpbench_classical.affine import AffineMethod, affine_displacement, fit_affine
from warpbench_classical.filters import gaussian_blur, grid_shape_at, resize_field, shrink_image
from warpbench_classical.losses import LossFn, make_loss, to_unit_range
from warpbench_classical.schedule import Convergence, per_scale, resolve_params

# Adam's moment decay rates (the usual ones).
ADAM_BETAS = (0.9, 0.999)
# Adam's guard, in units of the per-voxel gradient (the change of a voxel's own loss term per
# voxel of displacement: ~0.1 to 1 at a misaligned edge). Gradients far below it, such as float32
# rounding on a pair of identical images, then give steps far below the learning rate instead of
# being normalised up to full ones.
ADAM_EPS = float(os.environ.get('EPS','1e-3'))


class _FieldAdam:
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
        first = self.first / (1 - beta1**self.steps)
        second = self.second / (1 - beta2**self.steps)
        return first / (second.sqrt() + ADAM_EPS)


def _optimise_scale(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    disp: torch.Tensor,
    loss_fn: LossFn,
    iterations: int,
    settings: dict[str, Any],
) -> torch.Tensor:
    """Refine ``disp`` (1, 3, d, h, w) on one level of the pyramid and return it."""
    adam = _FieldAdam(disp)
    convergence = Convergence(settings["check_every"], settings["tolerance"])
    step_scale = torch.ones((), device=disp.device)
    previous_loss = None
    for iteration in range(1, iterations + 1):
        current = disp.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(fixed, warp_tensor(moving, current))
            (gradient,) = torch.autograd.grad(loss, current)
        loss = loss.detach()
        if previous_loss is not None:
            step_scale = torch.where(loss > previous_loss, step_scale * SHRINK, (step_scale * GROW).clamp_max(1.0))
        previous_loss = loss
        # The loss is a mean over voxels; undo the 1 / voxels so ADAM_EPS means the same on
        # every level of the pyramid.
        direction = adam.direction(gradient * fixed[0, 0].numel())
        step = gaussian_blur(direction, settings["gradient_sigma"])
        disp = compose(disp, step * (-settings["learning_rate"] * step_scale))
        disp = gaussian_blur(disp, settings["warp_sigma"])
        if convergence.converged(iteration, loss):
            break
    return disp


def greedy_register(fixed: torch.Tensor, moving: torch.Tensor, settings: dict[str, Any]) -> torch.Tensor:
    """The pull-back voxel displacement (1, 3, D, H, W) aligning ``moving`` to ``fixed``, both
    (1, 1, D, H, W) on one device; ``settings`` is a resolved :class:`GreedyMethod` preset."""
    scales = settings["scales"]
    iterations = per_scale(settings["iterations"], scales, "iterations")
    windows = per_scale(settings["lncc_window"], scales, "lncc_window")
    fixed, moving = to_unit_range(fixed, moving)
    full_shape = fixed.shape[2:]
    coarsest = grid_shape_at(full_shape, scales[0])
    if settings["affine_init"]:
        affine_settings = resolve_params(AffineMethod.presets["default"], {}, AffineMethod.name)
        matrix = fit_affine(fixed, moving, affine_settings)
        disp = affine_displacement(matrix, coarsest)
    else:
        disp = torch.zeros(1, 3, *coarsest, device=fixed.device)
    for scale, steps, window in zip(scales, iterations, windows):
        fixed_s, moving_s = shrink_image(fixed, scale), shrink_image(moving, scale)
        disp = resize_field(disp, fixed_s.shape[2:])
        loss_fn = make_loss(settings["loss"], window)
        disp = _optimise_scale(fixed_s, moving_s, disp, loss_fn, steps, settings)
    return resize_field(disp, full_shape)


class GreedyMethod(Method):
    name = "greedy"
    family = "classical"
    version = "1"
    description = (
        "Greedy diffeomorphic registration (compositive Adam updates, Gaussian-smoothed) with "
        "local normalised cross-correlation, coarse to fine; a FireANTs-style classical baseline."
    )
    presets = {
        "default": {
            "scales": [4, 2, 1],  # shrink factors, coarse to fine
            "iterations": [200, 100, 50],  # at most, per scale
            "learning_rate": 0.5,  # voxels of the current scale per step and component, at most
            "loss": "lncc",
            "lncc_window": 5,  # voxels per side; a list gives one per scale
            "gradient_sigma": 1.0,  # voxels; smooths each update (fluid regularisation)
            "warp_sigma": 0.5,  # voxels; smooths the accumulated displacement (elastic)
            "affine_init": False,
            "check_every": 10,  # iterations between convergence checks
            "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
        },
    }
    presets["fast"] = {**presets["default"], "iterations": [100, 50, 20]}

    def register(self, fixed, moving, params, device):
        """Run the schedule in ``params`` on ``device`` and return the (3, D, H, W) field."""
        settings = resolve_params(self.presets["default"], params, self.name)
        with torch.no_grad():
            fixed_t = as_tensor(fixed, device)[None, None]
            moving_t = as_tensor(moving, device)[None, None]
            return greedy_register(fixed_t, moving_t, settings)[0]
