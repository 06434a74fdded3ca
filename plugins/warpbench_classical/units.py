"""Lengths in millimetres as voxels of each level of a coarse-to-fine pyramid, and a pyramid
that coarsens an anisotropic grid towards isotropic voxels.

The classical methods' settings that are lengths (smoothing sigmas, the LNCC window, the step) are
millimetres of the full-resolution grid. A pyramid level shrunk by a factor ``s`` reads them ``s``
times as long, as the pyramid coarsens everything with its grid, so that on a 1 mm isotropic
grid whose axes divide by ``s`` a length of L mm is L voxels of every level: what these settings
meant when they were given in voxels. On another grid each axis gets its own number of voxels:
one voxel of a level is ``spacing[k] * n[k] / (m[k] * s)`` of these units along axis ``k``, for
``n[k]`` voxels of the full grid and ``m[k]`` of the level's (more than ``n[k] / s`` where the
level keeps a minimum size, so there a length takes fewer of its voxels).

A level ``s`` shrinks each axis so that its voxels come near ``s`` times the finest spacing
(:func:`axis_shrink`, as ANTs adjusts its shrink factors for anisotropic voxels): an axis of
3 mm voxels beside axes of 1 mm is not shrunk at level 2, and by 4/3 at level 4, so the levels
of a 1x1x3 mm grid have about the voxels of a 1 mm grid's levels, 4 mm and 2 mm, where shrinking
every axis alike would make them 4x4x12 and 2x2x6 mm.

:class:`VoxelLengths` without lengths (``None``) reads every length as voxels of the level, as
the settings were read before they were millimetres: the field of a 1 mm grid is the same either
way, bit for bit, which a test checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VoxelLengths:
    """How long one voxel of a pyramid level is along each array axis, in the settings' length
    unit (see the module's docstring); ``None``: lengths are voxels of the level."""

    per_axis: tuple[float, float, float] | None = None

    def sigma(self, length: float) -> float | tuple[float, float, float]:
        """A Gaussian's standard deviation of ``length`` as voxels along each axis."""
        if self.per_axis is None:
            return length
        return tuple(length / v for v in self.per_axis)

    def window(self, length: float) -> float | tuple[float, float, float]:
        """A window ``length`` wide as voxels along each axis, at least one
        (:func:`~warpbench_classical.filters.box_kernel` covers a voxel at each end in part
        where that is not an odd whole number)."""
        if self.per_axis is None:
            return length
        return tuple(max(1.0, length / v) for v in self.per_axis)

    def per_length(self, field: torch.Tensor) -> torch.Tensor:
        """A derivative with respect to a displacement in voxels (N, 3, ...), such as the
        loss's gradient or an image's, as one with respect to a displacement in length units:
        each component divided by its axis's voxel length."""
        return field if self.per_axis is None else field / self._column(field)

    def to_voxels(self, field: torch.Tensor) -> torch.Tensor:
        """A displacement in length units (N, 3, ...) as one in voxels of the level."""
        return field if self.per_axis is None else field / self._column(field)

    def _column(self, field: torch.Tensor) -> torch.Tensor:
        values = torch.tensor(self.per_axis, device=field.device, dtype=field.dtype)
        return values.view(1, 3, *[1] * (field.dim() - 2))


#: Lengths read as voxels of every level.
IN_VOXELS = VoxelLengths()


#: Spacings that differ by less than this fraction count as one.
SAME_SPACING = 1e-6


def axis_shrink(scale: float, spacing) -> float | tuple[float, float, float]:
    """The factor by which pyramid level ``scale`` shrinks each axis of a grid of ``spacing``
    mm: ``scale`` along the axes of the finest spacing, and along another only as far as makes
    its voxels ``scale`` times that spacing (no shrinking where they are that long already);
    ``spacing`` None: ``scale`` along every axis."""
    if spacing is None:
        return scale
    finest = min(spacing)
    # Within a millionth of the finest (an affine's rounding) counts as the finest itself.
    return tuple(scale if mm <= finest * (1 + SAME_SPACING) else max(1.0, scale * finest / mm)
                 for mm in spacing)


def level_lengths(spacing, full_shape, level_shape, scale: float) -> VoxelLengths:
    """The :class:`VoxelLengths` of the level of shape ``level_shape`` that shrinks a grid of
    ``full_shape`` voxels of ``spacing`` mm by ``scale``; ``spacing`` None: :data:`IN_VOXELS`."""
    if spacing is None:
        return IN_VOXELS
    return VoxelLengths(tuple(float(mm) * n / (m * scale)
                              for mm, n, m in zip(spacing, full_shape, level_shape)))
