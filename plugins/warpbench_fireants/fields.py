"""FireANTs' warp as warpbench's voxel pull-back field.

FireANTs gives the coordinates at which to sample the moving image for every fixed voxel, as
``grid_sample`` takes them: shape (1, D, H, W, 3), components ordered (x, y, z) = (W, H, D), each
in [-1, 1] with -1 and +1 at the centres of the first and last voxels (``align_corners=True``).
Fixed and moving images share one grid in warpbench, so these are also coordinates of that grid.
"""

from __future__ import annotations

import torch

from warpbench.spatial import identity_grid


def pullback_from_coordinates(coords: torch.Tensor) -> torch.Tensor:
    """The (3, D, H, W) float32 voxel displacement whose sampling points are ``coords``."""
    shape = tuple(coords.shape[1:4])
    half_extent = torch.tensor([max(n - 1, 1) / 2.0 for n in shape], device=coords.device,
                               dtype=torch.float64)
    voxels = (coords[0].to(torch.float64).flip(-1) + 1.0) * half_extent  # (D, H, W, 3) in D, H, W
    disp = voxels.permute(3, 0, 1, 2) - identity_grid(shape, coords.device, torch.float64)
    return disp.to(torch.float32)
