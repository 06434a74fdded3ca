"""The two convolutional networks: VoxelMorph's U-Net and a compact LKU-Net. Both map a stacked (fixed, moving)
pair (N, 2, D, H, W), D, H and W divisible by ``2 ** len(encoder)``, to a 3-channel field on the
same grid (a velocity, integrated by the caller).

They share one encoder-decoder skeleton and differ in their encoder blocks: VoxelMorph
(Balakrishnan et al. 2019) uses one strided 3^3 convolution per level; LKU-Net (Jia et al. 2022)
follows each strided convolution with a block that sums a large (5^3) and a small (3^3) kernel and
the identity, which widens the receptive field at little extra depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# VoxelMorph's activation, kept for both networks.
NEGATIVE_SLOPE = 0.2
# The field head starts near zero (the identity map) so that early training is not dominated by
# a random deformation; VoxelMorph initialises it the same way.
HEAD_INIT_STD = 1e-5


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=kernel // 2)


class ConvAct(nn.Sequential):
    """Convolution, instance normalisation, activation. The normalisation is not in VoxelMorph:
    without it a network trained for a few hundred steps (the CPU budgets here) still predicts
    about the same field for a pair in either direction; with it, it learns a pair in 100."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(
            conv(cin, cout, 3, stride), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(NEGATIVE_SLOPE)
        )


class LargeKernelBlock(nn.Module):
    """LKU-Net's encoder block: ``act(conv5(x) + conv3(x) + x)``."""

    def __init__(self, channels: int, large: int = 5):
        super().__init__()
        self.large = conv(channels, channels, large)
        self.small = conv(channels, channels, 3)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x):
        return self.act(self.large(x) + self.small(x) + x)


class UNet(nn.Module):
    """Encoder of ``len(encoder)`` stride-2 levels, decoder back up with skip connections.

    ``decoder`` lists one width per encoder level (the convolutions on the way up, coarsest
    first, the last at full resolution) followed by the widths of extra full-resolution
    convolutions. ``large_kernel`` adds a :class:`LargeKernelBlock` after every strided
    convolution (LKU-Net).
    """

    def __init__(self, encoder: list[int], decoder: list[int], large_kernel: bool = False):
        super().__init__()
        levels = len(encoder)
        self.multiple = 2**levels  # the sides its input needs
        if len(decoder) < levels:
            raise ValueError(f"decoder needs at least {levels} widths (one per level), got {decoder}")
        self.down = nn.ModuleList()
        cin = 2
        for width in encoder:
            block = [ConvAct(cin, width, stride=2)]
            if large_kernel:
                block.append(LargeKernelBlock(width))
            self.down.append(nn.Sequential(*block))
            cin = width
        # Skip sources, finest first: the input itself, then every encoder level but the last.
        skips = [2, *encoder[:-1]]
        self.up = nn.ModuleList()
        for level, width in enumerate(decoder[:levels]):
            self.up.append(ConvAct(cin + skips[levels - 1 - level], width))
            cin = width
        widths = [cin, *decoder[levels:]]
        self.extra = nn.Sequential(*(ConvAct(c, w) for c, w in zip(widths, widths[1:])))
        self.head = conv(widths[-1], 3)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        skips = [pair]
        x = pair
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        for block in self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skips.pop()], 1))
        return self.head(self.extra(x))
