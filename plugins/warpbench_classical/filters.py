"""Separable filters and resampling shared by the classical methods.

Every filter runs as three 1-D convolutions, one along each axis, so a window of k voxels costs
O(k) per voxel rather than the O(k^3) of a dense 3-D kernel. Tensors are (N, C, D, H, W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# A Gaussian is cut at this many standard deviations; the tails beyond hold 0.3 % of its weight.
GAUSSIAN_TRUNCATE = 3.0
# Blur before shrinking by a factor s, in voxels of the fine grid: 0.5 * (s - 1), i.e. 0.5 voxel
# for a factor of 2 and 1.5 for a factor of 4, keeps the coarse grid from aliasing.
ANTI_ALIAS_SIGMA_PER_SCALE = 0.5
# A coarse grid keeps at least this many voxels per axis, enough for an LNCC window to fit.
MIN_COARSE_SIZE = 8


def _filter_separable(volume: torch.Tensor, kernel: torch.Tensor, padding_mode: str):
    """Convolve every channel of ``volume`` with the odd-length 1-D ``kernel`` along each axis."""
    channels = volume.shape[1]
    radius = kernel.numel() // 2
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        # F.pad lists the last axis first: (W before, W after, H before, H after, D before, ...).
        padding = [0] * 6
        padding[2 * (2 - axis)] = padding[2 * (2 - axis) + 1] = radius
        volume = F.conv3d(F.pad(volume, padding, mode=padding_mode), weight, groups=channels)
    return volume


def box_mean(volume: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a cubic ``window`` (odd, voxels) around each voxel; the border is replicated so
    edge voxels average real intensities rather than zeros."""
    if window % 2 != 1:
        raise ValueError(f"the window must be an odd number of voxels, got {window}")
    kernel = torch.full((window,), 1.0 / window, device=volume.device, dtype=volume.dtype)
    return _filter_separable(volume, kernel, "replicate")


def gaussian_kernel(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``sigma`` voxels."""
    radius = max(1, math.ceil(GAUSSIAN_TRUNCATE * sigma))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every channel with an isotropic Gaussian of ``sigma`` voxels; ``sigma <= 0`` is a
    no-op, so a schedule can switch smoothing off."""
    if sigma <= 0:
        return volume
    kernel = gaussian_kernel(sigma, device=volume.device, dtype=volume.dtype)
    return _filter_separable(volume, kernel, "replicate")


def grid_shape_at(shape, scale: float) -> tuple[int, int, int]:
    """The grid a volume of ``shape`` has when shrunk by ``scale``."""
    return tuple(max(min(n, MIN_COARSE_SIZE), round(n / scale)) for n in shape)


def shrink_image(image: torch.Tensor, scale: float) -> torch.Tensor:
    """``image`` shrunk by ``scale`` (1 returns it unchanged), blurred first against aliasing."""
    shape = grid_shape_at(image.shape[2:], scale)
    if tuple(image.shape[2:]) == shape:
        return image
    blurred = gaussian_blur(image, ANTI_ALIAS_SIGMA_PER_SCALE * (scale - 1))
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
