"""The coarse-to-fine driver shared by the deformable methods: one set of displacement fields
carried from the coarsest grid to the full one, refined by a method-specific step on each level."""

from __future__ import annotations

from collections.abc import Callable

import torch

from warpbench_classical.affine import AffineMethod, affine_displacement, fit_affine
from warpbench_classical.dense import DenseParams, starts_affine
from warpbench_classical.filters import grid_shape_at, resize_field, shrink_image
from warpbench_classical.schedule import ScheduleParams, per_scale
from warpbench_classical.units import VoxelLengths, axis_shrink, level_lengths

# refine(fixed, moving, fields, level, lengths, through) -> fields, on one level's grid; ``level``
# is the method's settings with every per-scale parameter reduced to that level's value,
# ``lengths`` how long that level's voxels are (:mod:`warpbench_classical.units`), ``through``
# None or what the fields stand for through an affine start (:meth:`AffineStart.composed`).
Refine = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, ScheduleParams, VoxelLengths,
                   Callable | None], torch.Tensor]


def level_settings(settings: ScheduleParams) -> list[tuple[int, ScheduleParams]]:
    """(scale, that level's settings) for each of ``settings.scales``, coarse to fine: each
    parameter of ``settings.per_scale`` reduced to the level's value."""
    keys = settings.per_scale
    values = {key: per_scale(getattr(settings, key), settings.scales) for key in keys}
    return [(scale, settings.model_copy(update={key: values[key][i] for key in keys}))
            for i, scale in enumerate(settings.scales)]


def initial_affines(fixed, moving, settings: DenseParams, spacing=None,
                    pre_aligned: bool = False) -> torch.Tensor | None:
    """The 3x4 matrices (N, 3, 4; :func:`~warpbench_classical.affine.fit_affine`'s normalised
    coordinates) that a registration starts the moving images from: the affine method's default
    fit of each pair (by MI where ``settings`` match by MI) where ``settings`` start from one
    (:func:`~warpbench_classical.dense.starts_affine`: ``affine_init`` true, or ``"auto"`` on
    a grid that is not ``pre_aligned``), else None. The images are (N, 1, D, H, W) on one
    device, on a grid of ``spacing`` mm per axis (None: lengths in voxels)."""
    if not starts_affine(settings.affine_init, pre_aligned):
        return None
    affine = AffineMethod()
    affine_settings = affine.resolve(affine.presets["default"])
    if getattr(settings, "loss", None) == "mi":
        # A method that matches by mutual information expects the pair's intensities to differ
        # beyond a linear map (another contrast), which the affine default's NCC would align
        # the wrong way round; its affine start matches by MI too.
        affine_settings = affine_settings.model_copy(update={"loss": "mi"})
    return torch.stack([fit_affine(f[None], m[None], affine_settings, spacing)
                        for f, m in zip(fixed, moving)])


class AffineStart:
    """The affine maps a registration starts from, one per field (``matrices``: (N, 3, 4), in
    :func:`~warpbench_classical.affine.fit_affine`'s normalised coordinates), kept apart from
    the dense field that is optimised: a field ``u`` stands for the map ``x -> A(x + u(x))``, as
    ANTs and FireANTs keep their initial affine, so the smoothing regularises the deformation
    alone. Smoothing the affine's own large displacement would bend it near the grid's faces
    (the border is replicated), and the deformable steps would go to undoing that."""

    def __init__(self, matrices: torch.Tensor):
        self.matrices = matrices

    def displacement(self, shape) -> torch.Tensor:
        """The affine maps' voxel displacements (N, 3, *shape) on a grid of ``shape``."""
        return torch.cat([affine_displacement(matrix, shape) for matrix in self.matrices])

    def composed(self, shape) -> Callable[[torch.Tensor], torch.Tensor]:
        """On a grid of ``shape``: the function from fields ``u`` (N, 3, *shape) to the
        displacements of ``x -> A(x + u(x))``, ``a(x) + L u(x)`` with ``L`` the maps' linear
        parts in voxels (exact: an affine map of a displaced point needs no interpolation)."""
        offsets = self.displacement(shape)
        half = torch.tensor([max(n - 1, 1) / 2.0 for n in shape], device=self.matrices.device)
        linear = half.view(1, 3, 1) * self.matrices[:, :, :3] / half.view(1, 1, 3)
        return lambda fields: offsets + torch.einsum("nij,njdhw->nidhw", linear, fields)


def affine_start(fixed, moving, settings: DenseParams, spacing=None,
                 pre_aligned: bool = False) -> AffineStart | None:
    """The :class:`AffineStart` of :func:`initial_affines`, or None."""
    matrices = initial_affines(fixed, moving, settings, spacing, pre_aligned)
    return None if matrices is None else AffineStart(matrices)


def zero_fields(fixed, settings: ScheduleParams, spacing=None, copies: int = 1) -> torch.Tensor:
    """Zero displacements (copies N, 3, d, h, w) on the coarsest grid of ``settings`` for the
    images ``fixed`` (N, 1, D, H, W) of ``spacing``: where a registration starts."""
    coarsest = grid_shape_at(fixed.shape[2:], axis_shrink(settings.scales[0], spacing))
    return torch.zeros(copies * len(fixed), 3, *coarsest, device=fixed.device)


def coarse_to_fine(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fields: torch.Tensor,
    settings: ScheduleParams,
    refine: Refine,
    spacing=None,
    start: AffineStart | None = None,
) -> torch.Tensor:
    """Run ``refine`` on each level of ``settings`` (:func:`level_settings`, coarse to fine) and
    return ``fields`` (N, 3, ...) resampled onto the full grid of ``fixed``, whose voxels are
    ``spacing`` mm along each axis (None: the settings' lengths are voxels of each level, and
    every axis shrinks alike; :mod:`warpbench_classical.units`), from the affine ``start`` if
    there is one (the fields are then the deformation after it)."""
    for scale, level in level_settings(settings):
        shrink = axis_shrink(scale, spacing)
        fixed_s, moving_s = shrink_image(fixed, shrink), shrink_image(moving, shrink)
        lengths = level_lengths(spacing, fixed.shape[2:], fixed_s.shape[2:], scale)
        through = None if start is None else start.composed(fixed_s.shape[2:])
        fields = refine(fixed_s, moving_s, resize_field(fields, fixed_s.shape[2:]), level,
                        lengths, through)
    return resize_field(fields, fixed.shape[2:])
