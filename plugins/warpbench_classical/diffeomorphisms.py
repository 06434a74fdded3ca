"""Operations on diffeomorphic displacement fields (N, 3, D, H, W), in voxels, pull-back:
inversion, for syn's two half-warps, and exponentiation of a velocity, for demons' updates."""

from __future__ import annotations

import torch

from warpbench.spatial import compose, warp_tensor


def invert(disp: torch.Tensor, iterations: int) -> torch.Tensor:
    """The displacement ``v`` of the inverse map, ``(x + v(x)) + disp(x + v(x)) = x``, by the
    fixed-point iteration ``v <- -disp(x + v)``. It converges where the map is invertible and
    contracts, i.e. the displacement's Jacobian has norm below 1, as a smooth half-warp has; the
    error shrinks geometrically, so a few tens of iterations reach interpolation accuracy."""
    inverse = -disp
    for _ in range(iterations):
        inverse = -warp_tensor(disp, inverse)
    return inverse


def exponentiate(velocity: torch.Tensor, squarings: int) -> torch.Tensor:
    """The displacement of ``exp(velocity)`` (a stationary velocity field's flow at time 1), by
    scaling and squaring: ``velocity / 2**squarings`` is small enough to be its own exponential,
    and composing it with itself ``squarings`` times doubles the time each time."""
    disp = velocity / 2**squarings
    for _ in range(squarings):
        disp = compose(disp, disp)
    return disp
