"""Greedy diffeomorphic registration: a coarse-to-fine sequence of small, smooth, compositive
updates of a dense displacement, driven by local normalised cross-correlation.

Each iteration turns the loss gradient into an Adam-normalised step, smooths it with a Gaussian
(the fluid-like regulariser) and composes it onto the current map, ``phi <- phi o (id + step)``;
the map itself is then lightly smoothed (the elastic-like regulariser). A step is at most about
``learning_rate`` voxels long per component and smooth over ``gradient_sigma`` voxels, so
``id + step`` has a positive Jacobian and is invertible; composing invertible maps keeps the
result a diffeomorphism up to interpolation error.
"""

from __future__ import annotations

from typing import Any

import torch

from warpbench import Method
from warpbench.spatial import as_tensor, compose, warp_tensor
from warpbench_classical.affine import AffineMethod, affine_displacement, fit_affine
from warpbench_classical.filters import gaussian_blur, grid_shape_at, resize_field, shrink_image
from warpbench_classical.losses import LossFn, make_loss, to_unit_range
from warpbench_classical.schedule import Convergence, per_scale, resolve_params

# Adam's moment decay rates (the usual ones).
ADAM_BETAS = (0.9, 0.999)
# Adam's guard, in units of the per-voxel gradient (the change of a voxel's own loss term per
# voxel of displacement: about 0.1 to 3 where edges are misaligned). Weaker gradients get
# proportionally shorter steps instead of being normalised up to full ones, so the float32
# rounding noise of a pair of identical images leaves them (almost) still.
ADAM_EPS = 0.3


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
        # Bias corrections folded into scalars: first / c1 / (sqrt(second / c2) + eps).
        root_c2 = (1 - beta2**self.steps) ** 0.5
        denominator = self.second.sqrt().add_(ADAM_EPS * root_c2)
        return self.first.div(denominator).mul_(root_c2 / (1 - beta1**self.steps))


def _optimise_scale(
    moving: torch.Tensor,
    disp: torch.Tensor,
    loss_fn: LossFn,
    iterations: int,
    settings: dict[str, Any],
) -> torch.Tensor:
    """Refine ``disp`` (1, 3, d, h, w) on one level of the pyramid and return it."""
    adam = _FieldAdam(disp)
    convergence = Convergence(settings["check_every"], settings["tolerance"])
    # The loss is a mean over voxels; undoing the 1 / voxels keeps ADAM_EPS's meaning per level.
    voxels = moving[0, 0].numel()
    for iteration in range(1, iterations + 1):
        current = disp.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(warp_tensor(moving, current))
            (gradient,) = torch.autograd.grad(loss, current)
        step = gaussian_blur(adam.direction(gradient.mul_(voxels)), settings["gradient_sigma"])
        step.mul_(-settings["learning_rate"])
        disp = gaussian_blur(compose(disp, step), settings["warp_sigma"])
        if convergence.converged(iteration, loss.detach()):
            break
    return disp


def greedy_register(fixed: torch.Tensor, moving: torch.Tensor, settings: dict[str, Any]):
    """The pull-back voxel displacement (1, 3, D, H, W) aligning ``moving`` to ``fixed``, both
    (1, 1, D, H, W) on one device; ``settings`` is a resolved :class:`GreedyMethod` preset."""
    fixed, moving = to_unit_range(fixed, moving)
    scales = settings["scales"]
    iterations = per_scale(settings["iterations"], scales, "iterations")
    windows = per_scale(settings["lncc_window"], scales, "lncc_window")
    full_shape = fixed.shape[2:]
    coarsest = grid_shape_at(full_shape, scales[0])
    if settings["affine_init"]:
        affine_settings = resolve_params(AffineMethod.presets["default"], {}, AffineMethod.name)
        disp = affine_displacement(fit_affine(fixed, moving, affine_settings), coarsest)
    else:
        disp = torch.zeros(1, 3, *coarsest, device=fixed.device)
    for scale, steps, window in zip(scales, iterations, windows):
        fixed_s, moving_s = shrink_image(fixed, scale), shrink_image(moving, scale)
        disp = resize_field(disp, fixed_s.shape[2:])
        loss_fn = make_loss(settings["loss"], fixed_s, window)
        disp = _optimise_scale(moving_s, disp, loss_fn, steps, settings)
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
            "iterations": [200, 100, 30],  # at most, per scale
            "learning_rate": 0.5,  # voxels of the current scale per step and component, at most
            "loss": "lncc",  # or "mse"; "ncc" (global) is there but suits affine better
            "lncc_window": 5,  # voxels per side; a list gives one per scale
            "gradient_sigma": 1.0,  # voxels; smooths each update (fluid regularisation)
            "warp_sigma": 0.5,  # voxels; smooths the accumulated displacement (elastic)
            "affine_init": False,  # start from the affine method's default fit
            "check_every": 10,  # iterations between convergence checks
            "tolerance": 1e-4,  # relative loss improvement per check below which a scale stops
        },
    }
    presets["fast"] = {**presets["default"], "iterations": [100, 50, 15], "tolerance": 1e-3}

    def register(self, fixed, moving, params, device):
        """Run the schedule in ``params`` on ``device`` and return the (3, D, H, W) field."""
        settings = resolve_params(self.presets["default"], params, self.name)
        with torch.no_grad():
            fixed_t = as_tensor(fixed, device)[None, None]
            moving_t = as_tensor(moving, device)[None, None]
            return greedy_register(fixed_t, moving_t, settings)[0]
