"""A registration network as a whole: a pair on any grid in, a velocity (or displacement) out.

The pair is first shrunk by ``downsize`` (anti-aliased): VoxelMorph already integrates its field
at half resolution (``int_downsize``), and running the network there too costs about eight times
less. On a small grid that costs more than it saves: label-supervised VoxelMorph on the 48x64x48
hippocampus reached 0.760 mean Dice at full resolution against 0.630 at half (issue 16), so
``downsize: auto`` keeps full resolution up to :data:`FULL_RESOLUTION_VOXELS` and halves a larger
grid. The factor "auto" picks on the training grid is a buffer of the network, saved with its
weights, so a network always registers at the resolution it learnt at, whatever grid it is
evaluated on. Every network halves the grid a fixed number of times, so the shrunk pair is
zero-padded (centred) to the multiple it needs and the prediction cropped back: every grid works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from warpbench_classical.filters import shrink_image
from warpbench_learning.networks import UNet
from warpbench_learning.params import TrainingParams
from warpbench_learning.transmorph import TransMorph

ARCHITECTURES = ("voxelmorph", "lkunet", "transmorph")
#: ``downsize: auto`` keeps full resolution on grids of at most this many voxels (96x96x112 and
#: the half-size brain, 80x96x112, are under it; the full brain, 160x192x224, is not).
FULL_RESOLUTION_VOXELS = 2**20


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


def auto_downsize(shape) -> int:
    """The factor ``downsize: auto`` picks for a training grid of ``shape``."""
    return 1 if math.prod(shape) <= FULL_RESOLUTION_VOXELS else 2


class RegistrationNet(nn.Module):
    """``forward(fixed, moving)`` (N, 1, D, H, W) each -> field (N, 3, d, h, w) in voxels of
    the grid shrunk by the network's downsize factor. ``core`` maps a stacked pair (N, 2, ...)
    whose sides are multiples of ``core.multiple`` to a 3-channel field on the same grid."""

    def __init__(self, core: nn.Module, downsize: int | None):
        super().__init__()
        self.core = core
        # 0 until "auto" is resolved on a training grid; an untrained network resolves it on
        # whatever it is given.
        self.register_buffer("downsize", torch.tensor(downsize or 0))

    def factor(self, shape) -> int:
        return int(self.downsize) or auto_downsize(shape)

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        pair = shrink_image(torch.cat([fixed, moving], 1), self.factor(fixed.shape[2:]))
        padding = padding_for(pair.shape[2:], self.core.multiple)
        # Channels-last keeps CPU convolutions with few channels on oneDNN's fast path (up to
        # 10x faster there), and suits cuDNN under mixed precision.
        pair = F.pad(pair, padding).contiguous(memory_format=torch.channels_last_3d)
        return crop(self.core(pair), padding).float().contiguous()


def build_core(architecture: str, settings: TrainingParams) -> nn.Module:
    if architecture in ("voxelmorph", "lkunet"):
        return UNet(settings.encoder, settings.decoder, large_kernel=architecture == "lkunet")
    if architecture == "transmorph":
        return TransMorph(settings.patch_size, settings.embed_dim, settings.depths,
                          settings.heads, settings.window, settings.mlp_ratio, settings.drop_path)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")


def build_network(architecture: str, settings: TrainingParams, grid=None) -> RegistrationNet:
    """The ``architecture`` network a resolved preset describes, in channels-last memory;
    ``grid``, the training grid, resolves ``downsize: auto``."""
    downsize = settings.downsize
    if downsize == "auto":
        downsize = auto_downsize(grid) if grid is not None else None
    net = RegistrationNet(build_core(architecture, settings), downsize)
    return net.to(memory_format=torch.channels_last_3d)
