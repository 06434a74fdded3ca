"""Random spatial and intensity transforms of training subjects, in torch on the training device.

Each volume of a training batch gets its own random map: an affine part (rotation, scaling,
translation about the grid's centre) plus a smooth elastic part (a random velocity on a coarse
grid of control points, integrated by scaling and squaring, so it cannot fold). The image and its
one-hot labels are pulled back through the same map, so they stay in correspondence. Then the
image's intensities change: a gamma curve, a smooth multiplicative bias field and noise.

Why not TorchIO's transforms: they resample each subject on the CPU (SimpleITK), about 0.9 s per
48x64x48 subject for an affine, an elastic, a gamma, a bias field and noise on this project's
CPU, more than a whole training step there, and on a GPU they would be the bottleneck of every
batch. Here a batch is transformed where it already lies, with the platform's own warp.

Every random number is drawn from the trainer's seeded CPU generator (the full-size noise from a
device generator seeded from it), so a training draws the same transforms whatever its device
and a resumed training draws what the uninterrupted one would have.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from warpbench.spatial import identity_grid, warp_tensor
from warpbench_classical.filters import resize_field
from warpbench_learning.integrate import integrate_velocity
from warpbench_learning.params import Augmentation

#: Squarings of the elastic velocity: enough for displacements of a few voxels to stay invertible.
ELASTIC_SQUARINGS = 4
#: Control points per axis of the bias field: a slow intensity change across the volume.
BIAS_POINTS = 4


def _uniform(generator: torch.Generator, shape, bound: float) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotations by ``angles`` (N, 3) radians about the three axes, in turn."""
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(angles[:, 0]), torch.zeros_like(angles[:, 0])

    def about(axis: int) -> torch.Tensor:
        c, s = cos[:, axis], sin[:, axis]
        i, j = [a for a in range(3) if a != axis]
        rows = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
        rows[i][i], rows[i][j], rows[j][i], rows[j][j] = c, -s, s, c
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    return about(0) @ about(1) @ about(2)


def affine_displacement(generator: torch.Generator, count: int, shape, settings: Augmentation,
                        device: torch.device) -> torch.Tensor:
    """(count, 3, D, H, W) voxel displacements of random affine maps about the grid's centre."""
    angles = torch.deg2rad(_uniform(generator, (count, 3), settings.rotation))
    scales = 1 + _uniform(generator, (count, 3), settings.scaling)
    shifts = _uniform(generator, (count, 3), settings.translation)
    linear = rotation_matrices(angles) @ torch.diag_embed(scales) - torch.eye(3, dtype=torch.float64)
    centre = torch.tensor([(n - 1) / 2 for n in shape], device=device).view(3, 1, 1, 1)
    offset = identity_grid(shape, device) - centre
    linear, shifts = linear.float().to(device), shifts.float().to(device)
    return torch.einsum("nij,jdhw->nidhw", linear, offset) + shifts.view(count, 3, 1, 1, 1)


def elastic_displacement(generator: torch.Generator, count: int, shape, settings: Augmentation,
                         device: torch.device) -> torch.Tensor:
    """(count, 3, D, H, W) displacements of random smooth diffeomorphisms: a velocity on the
    control points, integrated there (cheap on so few points) and resampled onto the grid."""
    points = [math.ceil((n - 1) / settings.elastic_spacing) + 1 for n in shape]
    velocity = torch.randn((count, 3, *points), generator=generator) * settings.elastic
    to_points = torch.tensor([(p - 1) / (n - 1) for p, n in zip(points, shape)])
    coarse = integrate_velocity(velocity.to(device) * to_points.to(device).view(1, 3, 1, 1, 1),
                                ELASTIC_SQUARINGS)
    return resize_field(coarse, shape)


def bias_fields(generator: torch.Generator, count: int, shape, settings: Augmentation,
                device: torch.device) -> torch.Tensor:
    """(count, 1, D, H, W) smooth positive multiplicative fields."""
    coarse = torch.randn((count, 1, *[BIAS_POINTS] * 3), generator=generator) * settings.bias
    field = F.interpolate(coarse.to(device), size=tuple(shape), mode="trilinear", align_corners=True)
    return field.exp()


def augment(generator: torch.Generator, images: torch.Tensor, labels: torch.Tensor | None,
            settings: Augmentation) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``images`` (N, 1, D, H, W) in [0, 1] and their one-hot ``labels`` (N, L, D, H, W) or
    None, each volume moved by its own random map (image and labels by the same one) and its
    image's intensities changed."""
    count, shape, device = images.shape[0], images.shape[2:], images.device
    disp = affine_displacement(generator, count, shape, settings, device)
    disp = disp + elastic_displacement(generator, count, shape, settings, device)
    volumes = images if labels is None else torch.cat([images, labels], 1)
    moved = warp_tensor(volumes, disp)
    images, labels = moved[:, :1], (None if labels is None else moved[:, 1:])
    gamma = (torch.randn(count, generator=generator) * settings.gamma).exp().to(device)
    images = images.clamp_min(0) ** gamma.view(count, 1, 1, 1, 1)
    images = images * bias_fields(generator, count, shape, settings, device)
    noise_seed = int(torch.randint(2**62, (), generator=generator))
    noise = torch.Generator(device).manual_seed(noise_seed)
    images = images + settings.noise * torch.randn(images.shape, generator=noise, device=device)
    return images, labels
