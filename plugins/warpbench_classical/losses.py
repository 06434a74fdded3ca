"""Image dissimilarities minimised by the classical methods; lower is better for all of them.

Each takes the fixed and the moved image as (N, 1, D, H, W) tensors and returns a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from warpbench_classical.filters import box_mean

# Windows whose local variance is below this (an intensity std of 1e-3 in images scaled to
# [0, 1], well above float32 rounding of E[x^2] - E[x]^2) count as flat and are left out, as ANTs
# does. An epsilon in the denominator instead would bias the optimum towards more contrast and
# drive a pair of identical images apart.
FLAT_VARIANCE = 1e-6
# Guards the global NCC's denominator against two constant images.
CORRELATION_EPS = 1e-10

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def lncc_loss(fixed: torch.Tensor, moved: torch.Tensor, window: int) -> torch.Tensor:
    """Negative mean squared local normalised cross-correlation over cubic windows of ``window``
    voxels. Local statistics make it robust to slow intensity changes between the images; the
    window means come from separable box filters, so the cost does not grow with window**3.
    Squared, so it is 1 wherever the images agree up to a local linear intensity map."""
    stats = box_mean(torch.cat([fixed, moved, fixed * fixed, moved * moved, fixed * moved], 1), window)
    mean_f, mean_m, mean_ff, mean_mm, mean_fm = stats.split(1, dim=1)
    cross = mean_fm - mean_f * mean_m
    var_f = mean_ff - mean_f * mean_f
    var_m = mean_mm - mean_m * mean_m
    textured = (var_f > FLAT_VARIANCE) & (var_m > FLAT_VARIANCE)
    squared_cc = cross * cross / (var_f * var_m).clamp_min(FLAT_VARIANCE**2)
    return -torch.where(textured, squared_cc, torch.zeros_like(squared_cc)).mean()


def ncc_loss(fixed: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Negative global normalised cross-correlation: one linear intensity relation for the whole
    image, which is enough (and smoother to optimise) for a global affine."""
    f = fixed - fixed.mean()
    m = moved - moved.mean()
    return -(f * m).sum() / torch.sqrt((f * f).sum() * (m * m).sum() + CORRELATION_EPS)


def mse_loss(fixed: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Mean squared intensity difference: right only when both images share one intensity scale."""
    return ((fixed - moved) ** 2).mean()


def to_unit_range(fixed: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images mapped by one linear map onto [0, 1]: :data:`FLAT_VARIANCE` then means the
    same for any input scale, and MSE still compares like with like."""
    low = torch.minimum(fixed.min(), moving.min())
    span = (torch.maximum(fixed.max(), moving.max()) - low).clamp_min(CORRELATION_EPS)
    return (fixed - low) / span, (moving - low) / span


LOSSES = ("lncc", "ncc", "mse")


def make_loss(name: str, window: int) -> LossFn:
    """The loss called ``name`` (one of :data:`LOSSES`); ``window`` is LNCC's, in voxels."""
    if name == "lncc":
        return lambda fixed, moved: lncc_loss(fixed, moved, window)
    if name == "ncc":
        return ncc_loss
    if name == "mse":
        return mse_loss
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
