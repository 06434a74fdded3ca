"""The acquisition changes a shifted dataset applies to its source's images, through TorchIO.

Each change is an options model (what a ``shift:`` list item of ``datasets.yaml`` says) that
knows how to apply itself to one image. Random changes (the bias field's coefficients, the
noise) draw from a numpy generator of their own, seeded by the block's seed, the subject and the
change's place in the list, never from torch's global one: a subject's shifted image is the same
on every load, on every machine, whatever else runs meanwhile, and one change's draw does not
depend on the others.

Only the image changes: the label map stays the source's, which is the point (the anatomy, and
so the ground truth, is the same; only what the scanner made of it differs). After the changes
the image is rescaled as a reader rescales a scan (the 1st..99th percentile of the head to
[0, 1]), so a bias field or noise changes the image's contrast, not its range.
"""

from __future__ import annotations

import hashlib
from math import comb
from typing import Annotated, Literal, Union

import numpy as np
import torch
import torchio as tio
from pydantic import Field, StrictInt
from scipy.ndimage import binary_fill_holes

from warpbench.options import Settings, must_be, number

Positive = Annotated[number(gt=0), must_be("a positive number")]
Millimetres = Annotated[tuple[number(gt=0), number(gt=0), number(gt=0)],
                        must_be("3 positive numbers (mm)")]
#: The percentiles of the head that the shifted image's 0 and 1 are, as readers normalise.
PERCENTILES = (1.0, 99.0)


class Change(Settings):
    """One acquisition change, applied to an image whose intensities are in [0, 1]."""

    def apply(self, image: tio.ScalarImage, head: torch.Tensor,
              rng: np.random.Generator) -> tio.ScalarImage:
        """``image`` changed; ``head`` is the source's head mask (1, D, H, W) and ``rng`` this
        change's generator for this subject."""
        raise NotImplementedError


class Invert(Change):
    """Contrast inversion (a T1-like image becomes T2-like): inside the head, intensity x
    becomes 1 - x; the background stays dark, as in a real scan of the other contrast."""

    transform: Literal["invert"]

    def apply(self, image, head, rng):
        return _with_data(image, torch.where(head, 1 - image.data, image.data))


class Gamma(Change):
    """A gamma curve on the intensities (TorchIO's Gamma): x becomes x ** gamma, so below 1
    brightens the dark tissue and above 1 darkens it."""

    transform: Literal["gamma"]
    gamma: Positive
    """The exponent."""

    def apply(self, image, head, rng):
        return tio.Gamma(self.gamma)(image)


class BiasField(Change):
    """A smooth multiplicative bias field (TorchIO's BiasField: the exponential of a polynomial
    of the voxel position), its coefficients drawn per subject uniformly in [-coefficients,
    coefficients], as TorchIO's RandomBiasField draws them."""

    transform: Literal["bias_field"]
    coefficients: Positive = 0.5
    """The largest magnitude of a polynomial coefficient (TorchIO's default 0.5)."""
    order: Annotated[StrictInt, Field(ge=0, le=6), must_be("an integer from 0 to 6")] = 3
    """The polynomial's order (TorchIO's default 3)."""

    def apply(self, image, head, rng):
        count = comb(self.order + 3, 3)  # the monomials x^i y^j z^k with i + j + k <= order
        drawn = rng.uniform(-self.coefficients, self.coefficients, count).tolist()
        return tio.BiasField(coefficients=drawn, order=self.order)(image)


class Noise(Change):
    """Gaussian noise of a fixed standard deviation, drawn per subject. Drawn here rather than
    by TorchIO's Noise, which seeds torch's global generators (the CPU's, restored after, and
    every GPU's, not restored): loading a subject must not change a training's random stream."""

    transform: Literal["noise"]
    std: Positive
    """The noise's standard deviation, in units of the [0, 1] intensity range."""

    def apply(self, image, head, rng):
        noise = torch.from_numpy(rng.normal(0.0, self.std, image.shape).astype(np.float32))
        return _with_data(image, image.data + noise)


class Blur(Change):
    """Gaussian blur (TorchIO's Blur), as a wider point-spread function would give."""

    transform: Literal["blur"]
    std: Positive
    """The Gaussian's standard deviation in mm, along every axis."""

    def apply(self, image, head, rng):
        return tio.Blur(std=(self.std,) * 3)(image)


class Resample(Change):
    """An anisotropic acquisition: resampled to ``spacing`` (smoothed first where that is
    coarser, as thick slices average what they cover) and back onto the grid, linearly both
    ways (TorchIO's Resample)."""

    transform: Literal["resample"]
    spacing: Millimetres
    """The acquired voxel size in mm along the array axes, such as [1, 1, 3]."""

    def apply(self, image, head, rng):
        coarse = tio.Resample(self.spacing, antialias=True)(image)
        return tio.Resample((image.spatial_shape, image.affine))(coarse)


#: One item of a ``shift:`` list: which change its ``transform`` names.
AnyChange = Annotated[Union[Invert, Gamma, BiasField, Noise, Blur, Resample],
                      Field(discriminator="transform")]


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head: the nonzero voxels with their holes filled (readers leave the zero padding
    around a scan, and clip its darkest voxels to 0 inside it)."""
    return binary_fill_holes(image > 0)


def change_rng(seed: int, subject_id: str, position: int) -> np.random.Generator:
    """The generator of the change at ``position`` for one subject under the block's ``seed``."""
    digest = hashlib.sha256(f"{seed}/{subject_id}/{position}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def shifted_image(image: np.ndarray, affine: np.ndarray, changes: list[Change], seed: int,
                  subject_id: str) -> np.ndarray:
    """``image`` (float32 (D, H, W) in [0, 1], on the grid of ``affine``) after ``changes`` in
    order, rescaled to [0, 1] by the percentiles of its head (:data:`PERCENTILES`)."""
    head = torch.from_numpy(head_mask(image))[None]
    shifted = tio.ScalarImage(tensor=torch.from_numpy(np.array(image, np.float32))[None],
                              affine=np.asarray(affine, np.float64))
    for position, change in enumerate(changes):
        shifted = change.apply(shifted, head, change_rng(seed, subject_id, position))
    if head.any():
        rescale = tio.RescaleIntensity((0, 1), percentiles=PERCENTILES,
                                       masking_method=lambda _: head)
        shifted = rescale(shifted)
    return shifted.data[0].numpy().astype(np.float32)


def _with_data(image: tio.ScalarImage, data: torch.Tensor) -> tio.ScalarImage:
    return tio.ScalarImage(tensor=data, affine=image.affine)
