"""Separable filters and resampling shared by the classical methods.

Every filter runs as three 1-D convolutions, one along each axis, so a window of k voxels costs
O(k) per voxel rather than the O(k^3) of a dense 3-D kernel. Tensors are (N, C, D, H, W).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F

# A Gaussian is cut at this many standard deviations; the tails beyond hold 0.3 % of its weight.
GAUSSIAN_TRUNCATE = 3.0
# Blur before shrinking by a factor s, in voxels of the fine grid: 0.5 * (s - 1), i.e. 0.5 voxel
# for a factor of 2 and 1.5 for a factor of 4, keeps the coarse grid from aliasing.
ANTI_ALIAS_SIGMA_PER_SCALE = 0.5
# A coarse grid keeps at least this many voxels per axis, enough for an LNCC window to fit.
MIN_COARSE_SIZE = 8


def _filter_separable(volume: torch.Tensor, kernels, padding_mode: str):
    """Convolve every channel of ``volume`` along each axis with that axis's odd-length 1-D
    kernel (``kernels``: one per axis, None leaving that axis alone)."""
    channels = volume.shape[1]
    for axis, kernel in enumerate(kernels):
        if kernel is None:
            continue
        radius = kernel.numel() // 2
        shape = [1, 1, 1]
        shape[axis] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        # F.pad lists the last axis first: (W before, W after, H before, H after, D before, ...).
        padding = [0] * 6
        padding[2 * (2 - axis)] = padding[2 * (2 - axis) + 1] = radius
        volume = F.conv3d(F.pad(volume, padding, mode=padding_mode), weight, groups=channels)
    return volume


def per_axis(value) -> tuple:
    """``value`` for each of the three axes: a number applies to all three, a sequence of three
    gives each its own (an anisotropic grid's lengths in voxels)."""
    if isinstance(value, Real):
        return (value,) * 3
    values = tuple(value)
    if len(values) != 3:
        raise ValueError(f"expected one value or three (one per axis), got {values}")
    return values


def box_kernel(width: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised 1-D box ``width`` voxels wide (at least 1) centred on a voxel: an odd whole
    width averages that many voxels alike; any other width also covers the two voxels at its
    ends, each in part (a box 1.5 voxels wide weighs its centre 1 and its neighbours 0.25 each,
    before normalising), so that a window given in mm keeps its extent on any voxel size."""
    if width < 1:
        raise ValueError(f"a window is at least one voxel wide, got {width}")
    if float(width).is_integer() and int(width) % 2 == 1:
        return torch.full((int(width),), 1.0 / width, device=device, dtype=dtype)
    whole = 2 * math.floor((width - 1) / 2) + 1  # the voxels it covers entirely, an odd number
    kernel = torch.ones(whole + 2, device=device, dtype=torch.float64)
    kernel[0] = kernel[-1] = (width - whole) / 2
    return (kernel / width).to(dtype)


def box_mean(volume: torch.Tensor, window) -> torch.Tensor:
    """Mean over a box of ``window`` voxels (:func:`box_kernel`: one width for a cube, or one
    per axis) around each voxel; the border is replicated so edge voxels average real
    intensities rather than zeros. An axis whose window is 1 is left as it is."""
    widths = per_axis(window)
    kernels = [None if width == 1 else box_kernel(width, volume.device, volume.dtype)
               for width in widths]
    return _filter_separable(volume, kernels, "replicate")


def gaussian_kernel(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``sigma`` voxels."""
    radius = max(1, math.ceil(GAUSSIAN_TRUNCATE * sigma))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(volume: torch.Tensor, sigma) -> torch.Tensor:
    """Blur every channel with a Gaussian of ``sigma`` voxels: one number (isotropic) or one per
    axis (an anisotropic grid's). An axis whose ``sigma <= 0`` is left as it is, so a schedule
    can switch smoothing off."""
    sigmas = per_axis(sigma)
    if all(s <= 0 for s in sigmas):
        return volume
    made = {s: gaussian_kernel(s, device=volume.device, dtype=volume.dtype)
            for s in set(sigmas) if s > 0}
    kernels = [made.get(s) for s in sigmas]
    return _filter_separable(volume, kernels, "replicate")


def grid_shape_at(shape, scale) -> tuple[int, int, int]:
    """The grid a volume of ``shape`` has when shrunk by ``scale`` (one factor, or one per
    axis)."""
    return tuple(max(min(n, MIN_COARSE_SIZE), round(n / s)) for n, s in zip(shape, per_axis(scale)))


def shrink_image(image: torch.Tensor, scale) -> torch.Tensor:
    """``image`` shrunk by ``scale`` (one factor, or one per axis; 1 returns it unchanged),
    blurred first against aliasing."""
    shape = grid_shape_at(image.shape[2:], scale)
    if tuple(image.shape[2:]) == shape:
        return image
    blurred = gaussian_blur(image, tuple(ANTI_ALIAS_SIGMA_PER_SCALE * (s - 1)
                                         for s in per_axis(scale)))
    return F.interpolate(blurred, size=shape, mode="trilinear", align_corners=True)


def resize_field(disp: torch.Tensor, shape) -> torch.Tensor:
    """Resample a voxel displacement (N, 3, D, H, W) onto a grid of ``shape`` covering the same
    extent, rescaling each component to the new voxel size (corner-aligned, as the warps are)."""
    old_shape = disp.shape[2:]
    if tuple(old_shape) == tuple(shape):
        return disp
    factors = [(new - 1) / max(old - 1, 1) for new, old in zip(shape, old_shape)]
    resized = F.interpolate(disp, size=tuple(shape), mode="trilinear", align_corners=True)
    return resized * torch.tensor(factors, device=disp.device, dtype=disp.dtype).view(1, 3, 1, 1, 1)


def spatial_gradient(volume: torch.Tensor) -> torch.Tensor:
    """The gradient (N, 3, D, H, W) of a single-channel ``volume`` (N, 1, D, H, W), per voxel,
    by central differences (one-sided at the border)."""
    return torch.cat(torch.gradient(volume, dim=(2, 3, 4)), dim=1)
