"""Image dissimilarities minimised by the classical methods; lower is better for all of them.

Each is built once per batch of fixed images (N, 1, D, H, W), precomputing what depends on them
alone, and returns a function of the moved images that gives one value per pair, shape (N,): pairs
registered together in one batch stay independent, and each stops on its own loss. Syn, whose two
images both move, builds one per iteration with gradients on, so that they flow into both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from warpbench_classical.filters import box_mean

# Windows whose local variance is below this (an intensity std of 1e-3 in images scaled to
# [0, 1], well above float32 rounding of E[x^2] - E[x]^2) count as flat and are left out, as ANTs
# does. An epsilon in the denominator instead would bias the optimum towards more contrast and
# drive a pair of identical images apart.
FLAT_VARIANCE = 1e-6
# Guards the global NCC's denominator against two constant images.
CORRELATION_EPS = 1e-10

# A Parzen window's standard deviation, in bins: wide enough that a voxel's weight changes
# smoothly as its intensity crosses a bin edge (which is where MI's gradient comes from).
PARZEN_WIDTH_IN_BINS = 0.5
# Guards the logarithm of empty histogram bins.
HISTOGRAM_EPS = 1e-10
# The most voxels MI reads: 2**20 fill a 32 x 32 histogram finely and cost 128 MiB of weights.
MI_MAX_VOXELS = 2**20

LossFn = Callable[[torch.Tensor], torch.Tensor]


def lncc_loss(fixed: torch.Tensor, window) -> LossFn:
    """Negative mean squared local normalised cross-correlation with ``fixed`` over boxes of
    ``window`` voxels (one width for a cube, or one per axis; see
    :func:`~warpbench_classical.filters.box_kernel`). Local statistics make it robust to slow
    intensity changes between the images; squared, it is 1 wherever they agree up to a local
    linear intensity map. Window means come from separable box filters, and the fixed image's
    are computed once, here."""
    mean_f, mean_ff = box_mean(torch.cat([fixed, fixed * fixed], 1), window).split(1, dim=1)
    var_f = mean_ff - mean_f * mean_f
    textured_f = var_f > FLAT_VARIANCE

    def loss(moved: torch.Tensor) -> torch.Tensor:
        stats = box_mean(torch.cat([moved, moved * moved, fixed * moved], 1), window)
        mean_m, mean_mm, mean_fm = stats.split(1, dim=1)
        cross = mean_fm - mean_f * mean_m
        var_m = mean_mm - mean_m * mean_m
        squared_cc = cross * cross / (var_f * var_m).clamp_min(FLAT_VARIANCE**2)
        textured = textured_f & (var_m > FLAT_VARIANCE)
        return -per_pair_mean(torch.where(textured, squared_cc, torch.zeros_like(squared_cc)))

    return loss


def ncc_loss(fixed: torch.Tensor) -> LossFn:
    """Negative global normalised cross-correlation with ``fixed``: one linear intensity relation
    for the whole image, which is enough (and smoother to optimise) for a global affine."""
    centred_f = fixed - per_pair_mean(fixed).view(-1, 1, 1, 1, 1)
    norm_f = torch.sqrt(per_pair_sum(centred_f * centred_f))

    def loss(moved: torch.Tensor) -> torch.Tensor:
        centred_m = moved - per_pair_mean(moved).view(-1, 1, 1, 1, 1)
        norm_m = torch.sqrt(per_pair_sum(centred_m * centred_m))
        return -per_pair_sum(centred_f * centred_m) / (norm_f * norm_m + CORRELATION_EPS)

    return loss


def mse_loss(fixed: torch.Tensor) -> LossFn:
    """Mean squared intensity difference from ``fixed``: right only when both images share one
    intensity scale."""
    return lambda moved: per_pair_mean((fixed - moved) ** 2)


def mi_loss(fixed: torch.Tensor, bins: int) -> LossFn:
    """Negative mutual information between ``fixed`` and the moved image, both in [0, 1], from a
    joint histogram of ``bins`` x ``bins`` Gaussian Parzen windows. It asks only that one image
    predict the other, not that intensities agree or correlate, so it suits multi-modal pairs.
    Large volumes are read on a regular subset of :data:`MI_MAX_VOXELS` voxels or fewer: the
    histogram needs no more, and the weights cost ``bins`` floats per voxel read."""
    stride = max(1, -(-fixed[0].numel() // MI_MAX_VOXELS))
    centres = torch.linspace(0.0, 1.0, bins, device=fixed.device, dtype=fixed.dtype)
    width = PARZEN_WIDTH_IN_BINS / (bins - 1)

    def parzen_weights(image: torch.Tensor) -> torch.Tensor:
        """(N, voxels, bins): each voxel's share of every bin, summing to 1."""
        values = image.reshape(image.shape[0], -1, 1)[:, ::stride].clamp(0.0, 1.0)
        weights = torch.exp(-0.5 * ((values - centres) / width) ** 2)
        return weights / weights.sum(2, keepdim=True)

    weights_f = parzen_weights(fixed)
    marginal_f = weights_f.mean(1)

    def loss(moved: torch.Tensor) -> torch.Tensor:
        weights_m = parzen_weights(moved)
        joint = weights_f.transpose(1, 2) @ weights_m / weights_m.shape[1]
        independent = marginal_f[:, :, None] * weights_m.mean(1)[:, None, :]
        information = joint * torch.log((joint + HISTOGRAM_EPS) / (independent + HISTOGRAM_EPS))
        return -information.sum((1, 2))

    return loss


def per_pair_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of each pair's values (N, ...) -> (N,)."""
    return values.flatten(1).mean(1)


def per_pair_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of each pair's values (N, ...) -> (N,)."""
    return values.flatten(1).sum(1)


def to_unit_range(fixed: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair's two images mapped by one linear map onto [0, 1]: :data:`FLAT_VARIANCE` then
    means the same for any input scale, and MSE still compares like with like."""
    low = torch.minimum(fixed.flatten(1).min(1).values, moving.flatten(1).min(1).values)
    high = torch.maximum(fixed.flatten(1).max(1).values, moving.flatten(1).max(1).values)
    low = low.view(-1, 1, 1, 1, 1)
    span = (high.view(-1, 1, 1, 1, 1) - low).clamp_min(CORRELATION_EPS)
    return (fixed - low) / span, (moving - low) / span


LOSSES = ("lncc", "ncc", "mse", "mi")
Loss = Literal[LOSSES]


def make_loss(name: str, fixed: torch.Tensor, window, bins: int = 32) -> LossFn:
    """The loss called ``name`` (one of :data:`LOSSES`) against ``fixed``, as a function of the
    moved image; ``window`` is LNCC's, in voxels (one width, or one per axis), and ``bins`` MI's
    histogram size. Built with gradients enabled, it is differentiable with respect to ``fixed``
    too (syn moves both)."""
    if name == "lncc":
        return lncc_loss(fixed, window)
    if name == "ncc":
        return ncc_loss(fixed)
    if name == "mse":
        return mse_loss(fixed)
    if name == "mi":
        return mi_loss(fixed, bins)
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
