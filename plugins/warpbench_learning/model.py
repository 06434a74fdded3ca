"""A registration network as a whole: a pair on any grid in, a velocity out.

The pair is first shrunk by ``downsize`` (anti-aliased): VoxelMorph already integrates its field
at half resolution (``int_downsize``), and running the network there too costs about eight times
less, which is what lets it train within minutes on a CPU; a smooth field loses little. The
U-Nets halve the grid once per level, so the shrunk pair is zero-padded (centred) to a multiple
of ``2 ** levels`` and the predicted velocity cropped back: every dataset grid works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from warpbench_classical.filters import shrink_image
from warpbench_learning.networks import UNet
from warpbench_learning.params import UNetParams

ARCHITECTURES = ("voxelmorph", "lkunet")


def padding_for(shape, multiple: int) -> list[int]:
    """F.pad's argument (last axis first) that centres ``shape`` in the next multiple."""
    padding = []
    for size in reversed(tuple(shape)):
        extra = -size % multiple
        padding += [extra // 2, extra - extra // 2]
    return padding


def crop(volume: torch.Tensor, padding: list[int]) -> torch.Tensor:
    """Undo :func:`padding_for`'s padding of the last three axes of ``volume``."""
    slices = [slice(None), slice(None)]
    for axis in range(3):
        before, after = padding[2 * (2 - axis)], padding[2 * (2 - axis) + 1]
        slices.append(slice(before, volume.shape[2 + axis] - after))
    return volume[tuple(slices)]


class RegistrationNet(nn.Module):
    """``forward(fixed, moving)`` (N, 1, D, H, W) each -> velocity (N, 3, d, h, w) in voxels of
    the grid shrunk by ``downsize``."""

    def __init__(self, architecture: str, encoder: list[int], decoder: list[int], downsize: int):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
        self.unet = UNet(encoder, decoder, large_kernel=architecture == "lkunet")
        self.multiple = 2 ** len(encoder)
        self.downsize = downsize

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        pair = shrink_image(torch.cat([fixed, moving], 1), self.downsize)
        padding = padding_for(pair.shape[2:], self.multiple)
        # Channels-last keeps CPU convolutions with few channels on oneDNN's fast path (up to
        # 10x faster there), and suits cuDNN under mixed precision.
        pair = F.pad(pair, padding).contiguous(
            memory_format=torch.channels_last_3d
        )
        return crop(self.unet(pair), padding).float().contiguous()


def build_network(architecture: str, settings: UNetParams) -> RegistrationNet:
    """The ``architecture`` network a resolved preset describes, in channels-last memory."""
    net = RegistrationNet(architecture, settings.encoder, settings.decoder, settings.downsize)
    return net.to(memory_format=torch.channels_last_3d)
