"""Test-time instance optimisation: refine a network's prediction on the one pair at hand.

The velocity (not the displacement) is optimised, so the refined map stays a diffeomorphism, and
the loss is the unsupervised training loss, since the pair's labels are not known at test time.
"""

from __future__ import annotations

import torch

from warpbench_learning.integrate import displacement
from warpbench_learning.losses import registration_loss
from warpbench_learning.params import UNetParams


def instance_optimise(
    velocity: torch.Tensor, fixed: torch.Tensor, moving: torch.Tensor, settings: UNetParams
) -> torch.Tensor:
    """``velocity`` (1, 3, D, H, W) after ``io_steps`` Adam steps of ``io_learning_rate`` voxels
    on the unsupervised loss of ``fixed`` and ``moving``."""
    velocity = velocity.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([velocity], lr=settings.io_learning_rate)
    with torch.enable_grad():
        for _ in range(settings.io_steps):
            disp = displacement(velocity, settings.integration_steps, fixed.shape[2:],
                                settings.integration_downsize)
            loss, _ = registration_loss(fixed, moving, disp, settings)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return velocity.detach()
