"""Training losses; each returns a scalar tensor, lower is better.

Image similarity is the classical methods' local NCC (:func:`warpbench_classical.losses.lncc_loss`),
so that learned and classical methods optimise the same criterion.
"""

from __future__ import annotations

import torch

from warpbench.spatial import warp_tensor
from warpbench_classical.losses import lncc_loss
from warpbench_learning.params import UNetParams

# Keeps a label absent from both volumes of a batch item from dividing by zero; such a label then
# scores 1 and contributes no gradient.
DICE_EPS = 1e-5


def diffusion(disp: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of the displacement (N, 3, D, H, W) along each axis,
    averaged over the axes: VoxelMorph's diffusion regulariser on the field's gradient."""
    terms = [torch.diff(disp, dim=axis).square().mean() for axis in (2, 3, 4)]
    return sum(terms) / 3


def soft_dice_loss(fixed: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """One minus the mean soft Dice over channels of one-hot label volumes (N, L, D, H, W)."""
    dims = (2, 3, 4)
    overlap = (fixed * moved).sum(dims)
    total = fixed.sum(dims) + moved.sum(dims)
    return 1 - ((2 * overlap + DICE_EPS) / (total + DICE_EPS)).mean()


def registration_loss(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    disp: torch.Tensor,
    settings: UNetParams,
    fixed_onehot: torch.Tensor | None = None,
    moving_onehot: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted loss of a predicted displacement and its parts (detached, for logging): LNCC
    of the warped moving image, diffusion, and, when one-hot labels are given, the Dice loss of
    the moving labels warped by the same field."""
    similarity = lncc_loss(fixed, settings.lncc_window)(warp_tensor(moving, disp)).mean()
    smoothness = diffusion(disp)
    total = similarity + settings.smoothness_weight * smoothness
    parts = {"lncc": similarity.detach(), "diffusion": smoothness.detach()}
    if fixed_onehot is not None:
        dice = soft_dice_loss(fixed_onehot, warp_tensor(moving_onehot, disp))
        total = total + settings.dice_weight * dice
        parts["dice_loss"] = dice.detach()
    return total, parts
