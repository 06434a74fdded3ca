"""TransMorph (Chen et al., "TransMorph: Transformer for unsupervised medical image registration",
Medical Image Analysis 82, 2022): a Swin-transformer encoder with a convolutional decoder, mapping
a stacked (fixed, moving) pair (N, 2, D, H, W) to a 3-channel field on the same grid (sides
multiples of :attr:`TransMorph.multiple`).

Encoder (Liu et al.'s Swin transformer, in 3-D): the pair is cut into patches of ``patch_size``^3
voxels, each embedded linearly (a strided convolution) as a token. Stages of Swin blocks follow;
a block is multi-head self-attention among the tokens of one window, with a learnt bias for each
relative position in the window, then an MLP, each pre-normalised and residual. Every second
block shifts the windows by half a window, so information crosses window borders. Between
stages, patch merging concatenates each 2x2x2 group of tokens and maps it to twice the channels,
halving the grid.

Decoder (TransMorph's): from the last stage up, each level upsamples by two, concatenates the
encoder's features at that stride (a stage's normalised tokens; below the patch size,
convolutions of the pooled pair, TransMorph's "conv skips") and applies two convolutions; a head
with near-zero weights gives the field at full resolution.

Any grid, and the shift: each block pads its token grid to whole windows, and padded tokens are
masked out as keys, so they never change a real token. A shifted block pads half a window before
the grid (Swin's paper names this way of shifting; its code rolls the grid round instead, which
needs no more windows but a mask for the tokens the roll brings together; here the grid is padded
anyway, and a pad copies the tokens once where a roll and its undoing copy them twice). The window
is the same in every stage (a stage smaller than it pads up to one window), so the weights do not
depend on the grid and a network trained on one grid registers on another.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from warpbench_learning.networks import HEAD_INIT_STD, ConvAct, conv

#: Added to the attention logits of keys a query must not see: finite, so a window of padding
#: alone stays finite (its outputs are cropped away), and representable in float16.
MASKED = -1e4
#: Channels of the full-resolution decoder level (TransMorph's ``reg_head_chan``).
HEAD_CHANNELS = 16
#: Standard deviation of the initial weights of linear layers and position biases (Swin's).
INIT_STD = 0.02


def to_windows(x: torch.Tensor, window) -> torch.Tensor:
    """(N, D, H, W, C), sides multiples of ``window`` -> (N, windows, tokens per window, C)."""
    n, d, h, w, c = x.shape
    a, b, e = window
    x = x.view(n, d // a, a, h // b, b, w // e, e, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(n, -1, a * b * e, c)


def from_windows(windows: torch.Tensor, window, grid) -> torch.Tensor:
    """Undo :func:`to_windows` onto a token grid of ``grid`` (D, H, W)."""
    n, c = windows.shape[0], windows.shape[-1]
    (d, h, w), (a, b, e) = grid, window
    x = windows.view(n, d // a, h // b, w // e, a, b, e, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(n, d, h, w, c)


def relative_position_index(window) -> torch.Tensor:
    """(tokens, tokens): for each query and key of a window, the row of the bias table that
    holds the bias of their relative position."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in window), indexing="ij"))
    offsets = coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]  # (3, n, n)
    a, b, e = window
    offsets = offsets + torch.tensor([a - 1, b - 1, e - 1]).view(3, 1, 1)
    return (offsets[0] * (2 * b - 1) + offsets[1]) * (2 * e - 1) + offsets[2]


def key_mask(grid, window, shift, device) -> torch.Tensor | None:
    """(windows, tokens) logits to add to every query's: :data:`MASKED` for the padding of a
    token grid ``grid`` padded by ``shift`` before and to whole windows after; None where there
    is no padding."""
    padded = [s + n + -(n + s) % w for n, w, s in zip(grid, window, shift)]
    if tuple(padded) == tuple(grid):
        return None
    valid = torch.zeros(padded, dtype=torch.bool, device=device)
    valid[tuple(slice(s, s + n) for n, s in zip(grid, shift))] = True
    valid = to_windows(valid[None, ..., None], window)[0, :, :, 0]
    return torch.zeros(valid.shape, device=device).masked_fill(~valid, MASKED)


class WindowAttention(nn.Module):
    """Multi-head self-attention within each window, with a learnt relative position bias:
    ``qkv`` and ``proj`` are its linear maps, applied by the block around :meth:`forward`."""

    def __init__(self, dim: int, heads: int, window):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        table = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.bias_table = nn.Parameter(torch.zeros(table, heads))
        nn.init.trunc_normal_(self.bias_table, std=INIT_STD)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)

    def forward(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Windows of queries, keys and values (N, windows, tokens, 3C) -> the heads' outputs
        (N, windows, tokens, C), before ``proj``."""
        n, count, tokens, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3] // 3
        qkv = qkv.view(n * count, tokens, 3, self.heads, dim // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (N * windows, heads, tokens, c)
        logits = self.bias_table[self.bias_index].permute(2, 0, 1)  # (heads, tokens, tokens)
        if mask is not None:
            logits = (logits + mask[:, None, None, :]).repeat(n, 1, 1, 1)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=logits.to(query.dtype))
        return out.transpose(1, 2).reshape(n, count, tokens, dim)


class DropPath(nn.Module):
    """Stochastic depth: in training, a residual branch is dropped for a whole batch item with
    probability ``rate`` (and scaled up otherwise)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.rate
        return x * keep.to(x.dtype) / (1 - self.rate)


class SwinBlock(nn.Module):
    """Window attention (shifted when ``shifted``) and an MLP on tokens (N, D, H, W, C)."""

    def __init__(self, dim: int, heads: int, window, shifted: bool, mlp_ratio: float,
                 drop_path: float):
        super().__init__()
        self.window, self.shifted = tuple(window), shifted
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = WindowAttention(dim, heads, window)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def shift_for(self, grid) -> tuple[int, int, int]:
        """Half a window along each axis where the grid is larger than one window."""
        if not self.shifted:
            return (0, 0, 0)
        return tuple(w // 2 if n > w else 0 for n, w in zip(grid, self.window))

    def forward(self, x: torch.Tensor, masks: dict) -> torch.Tensor:
        grid = x.shape[1:4]
        shift = self.shift_for(grid)
        padding = [0, 0]  # F.pad's order: channels, then the last axis first
        for n, w, s in zip(reversed(grid), reversed(self.window), reversed(shift)):
            padding += [s, -(n + s) % w]
        qkv = F.pad(self.attention.qkv(self.norm1(x)), padding)
        if shift not in masks:
            masks[shift] = key_mask(grid, self.window, shift, x.device)
        attended = self.attention(to_windows(qkv, self.window), masks[shift])
        attended = from_windows(attended, self.window, qkv.shape[1:4])
        attended = attended[:, shift[0]: shift[0] + grid[0], shift[1]: shift[1] + grid[1],
                            shift[2]: shift[2] + grid[2]]
        x = x + self.drop_path(self.attention.proj(attended))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Each 2x2x2 group of tokens (N, D, H, W, C), even sides, to one of 2C channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(8 * dim)
        self.reduce = nn.Linear(8 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, i::2, j::2, k::2] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
        return self.reduce(self.norm(torch.cat(parts, -1)))


class Stage(nn.Module):
    """Swin blocks, alternately unshifted and shifted; returns its normalised tokens as a
    feature map (N, C, D, H, W) for the decoder, and the merged tokens for the next stage."""

    def __init__(self, dim: int, depth: int, heads: int, window, mlp_ratio: float,
                 drop_paths: list[float], merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, i % 2 == 1, mlp_ratio, drop_paths[i])
            for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.merge = PatchMerging(dim) if merge else None

    def forward(self, x: torch.Tensor):
        masks: dict = {}  # one per shift, shared by the blocks of this stage
        for block in self.blocks:
            x = block(x, masks)
        features = self.norm(x).permute(0, 4, 1, 2, 3)
        return features, (self.merge(x) if self.merge is not None else None)


class DecoderLevel(nn.Module):
    """Upsample by two, concatenate the skip features, two convolutions (TransMorph's
    DecoderBlock)."""

    def __init__(self, cin: int, skip: int, cout: int):
        super().__init__()
        self.convs = nn.Sequential(ConvAct(cin + skip, cout), ConvAct(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], 1))


class TransMorph(nn.Module):
    """The network; ``multiple`` is what the sides of its input must be multiples of."""

    def __init__(self, patch_size: int, embed_dim: int, depths: list[int], heads: list[int],
                 window: list[int], mlp_ratio: float, drop_path: float):
        super().__init__()
        stages = len(depths)
        self.multiple = patch_size * 2 ** (stages - 1)
        self.embed = nn.Conv3d(2, embed_dim, patch_size, stride=patch_size)
        self.embed_norm = nn.LayerNorm(embed_dim)
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, (depth, head_count) in enumerate(zip(depths, heads)):
            first = sum(depths[:i])
            self.stages.append(Stage(embed_dim * 2**i, depth, head_count, window, mlp_ratio,
                                     rates[first:first + depth], merge=i < stages - 1))
        # Below the patch size, TransMorph's conv skips: strides patch/2, ..., 2, 1.
        strides = [patch_size // 2**k for k in range(1, int(math.log2(patch_size)) + 1)]
        conv_widths = [HEAD_CHANNELS if s == 1 else embed_dim * s // patch_size for s in strides]
        self.conv_skips = nn.ModuleList(ConvAct(2, w) for w in conv_widths)
        widths = [embed_dim * 2**i for i in reversed(range(stages))] + conv_widths
        self.up = nn.ModuleList(DecoderLevel(cin, cout, cout)
                                for cin, cout in zip(widths, widths[1:]))
        self.head = conv(widths[-1], 3)
        self.apply(_init_linear)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        tokens = self.embed_norm(self.embed(pair).permute(0, 2, 3, 4, 1))
        features = []
        for stage in self.stages:
            stage_features, tokens = stage(tokens)
            features.append(stage_features)
        x = features.pop()  # the deepest stage's
        for level, skip in zip(self.up, features[::-1] + self._conv_skips(pair)):
            x = level(x, skip)
        return self.head(x)

    def _conv_skips(self, pair: torch.Tensor) -> list[torch.Tensor]:
        """The conv skips' features, coarsest first: each a convolution of the pair
        average-pooled to its stride, as TransMorph pools it."""
        features, pooled = [], pair
        for block in reversed(self.conv_skips):  # strides 1, 2, ...
            features.append(block(pooled))
            pooled = F.avg_pool3d(pooled, 3, stride=2, padding=1)
        return features[::-1]


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
