"""The coarse-to-fine driver shared by the deformable methods: one set of displacement fields
carried from the coarsest grid to the full one, refined by a method-specific step on each level."""

from __future__ import annotations

from collections.abc import Callable

import torch

from warpbench_classical.affine import AffineMethod, affine_displacement, fit_affine
from warpbench_classical.dense import DenseParams
from warpbench_classical.filters import grid_shape_at, resize_field, shrink_image
from warpbench_classical.schedule import ScheduleParams, per_scale

# refine(fixed, moving, fields, level) -> fields, on one level's grid; ``level`` is the method's
# settings with every per-scale parameter reduced to that level's value.
Refine = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, ScheduleParams], torch.Tensor]


def level_settings(settings: ScheduleParams) -> list[tuple[int, ScheduleParams]]:
    """(scale, that level's settings) for each of ``settings.scales``, coarse to fine: each
    parameter of ``settings.per_scale`` reduced to the level's value."""
    keys = settings.per_scale
    values = {key: per_scale(getattr(settings, key), settings.scales) for key in keys}
    return [(scale, settings.model_copy(update={key: values[key][i] for key in keys}))
            for i, scale in enumerate(settings.scales)]


def initial_moving_displacement(fixed, moving, settings: DenseParams) -> torch.Tensor:
    """The displacements (N, 3, d, h, w) on the coarsest grid that a registration starts the
    moving images from: the affine method's default fit of each pair when
    ``settings.affine_init``, else zero. The images are (N, 1, D, H, W) on one device."""
    coarsest = grid_shape_at(fixed.shape[2:], settings.scales[0])
    if not settings.affine_init:
        return torch.zeros(len(fixed), 3, *coarsest, device=fixed.device)
    affine = AffineMethod()
    affine_settings = affine.resolve(affine.presets["default"])
    return torch.cat([affine_displacement(fit_affine(f[None], m[None], affine_settings), coarsest)
                      for f, m in zip(fixed, moving)])


def coarse_to_fine(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fields: torch.Tensor,
    settings: ScheduleParams,
    refine: Refine,
) -> torch.Tensor:
    """Run ``refine`` on each level of ``settings`` (:func:`level_settings`, coarse to fine) and
    return ``fields`` (N, 3, ...) resampled onto the full grid of ``fixed``."""
    for scale, level in level_settings(settings):
        fixed_s, moving_s = shrink_image(fixed, scale), shrink_image(moving, scale)
        fields = refine(fixed_s, moving_s, resize_field(fields, fixed_s.shape[2:]), level)
    return resize_field(fields, fixed.shape[2:])
