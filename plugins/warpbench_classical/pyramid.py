"""The coarse-to-fine driver shared by the deformable methods: one set of displacement fields
carried from the coarsest grid to the full one, refined by a method-specific step on each level."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from warpbench_classical.affine import AffineMethod, affine_displacement, fit_affine
from warpbench_classical.filters import grid_shape_at, resize_field, shrink_image
from warpbench_classical.schedule import per_scale, resolve_params

# refine(fixed, moving, fields, level) -> fields, on one level's grid; ``level`` is the method's
# settings with every per-scale entry reduced to that level's value.
Refine = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]


def level_settings(settings: dict[str, Any], per_scale_keys) -> list[dict[str, Any]]:
    """One settings dict per scale of ``settings["scales"]``: each key of ``per_scale_keys`` may
    be a scalar (the same on every level) or a list with one value per level."""
    scales = settings["scales"]
    values = {key: per_scale(settings[key], scales, key) for key in per_scale_keys}
    return [
        {**settings, "scale": scale, **{key: values[key][i] for key in per_scale_keys}}
        for i, scale in enumerate(scales)
    ]


def initial_moving_displacement(fixed, moving, settings: dict[str, Any]) -> torch.Tensor:
    """The displacements (N, 3, d, h, w) on the coarsest grid that a registration starts the
    moving images from: the affine method's default fit of each pair when
    ``settings["affine_init"]``, else zero. The images are (N, 1, D, H, W) on one device."""
    coarsest = grid_shape_at(fixed.shape[2:], settings["scales"][0])
    if not settings["affine_init"]:
        return torch.zeros(len(fixed), 3, *coarsest, device=fixed.device)
    affine_settings = resolve_params(AffineMethod.presets["default"], {}, AffineMethod.name)
    return torch.cat([affine_displacement(fit_affine(f[None], m[None], affine_settings), coarsest)
                      for f, m in zip(fixed, moving)])


def coarse_to_fine(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fields: torch.Tensor,
    levels: list[dict[str, Any]],
    refine: Refine,
) -> torch.Tensor:
    """Run ``refine`` on each level of ``levels`` (coarse to fine) and return ``fields``
    (N, 3, ...) resampled onto the full grid of ``fixed``."""
    for level in levels:
        scale = level["scale"]
        fixed_s, moving_s = shrink_image(fixed, scale), shrink_image(moving, scale)
        fields = refine(fixed_s, moving_s, resize_field(fields, fixed_s.shape[2:]), level)
    return resize_field(fields, fixed.shape[2:])
