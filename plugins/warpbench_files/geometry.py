"""Bringing one subject onto the dataset's grid through its affine, with nibabel's own tools.

The order is the spatial contract's: reorient the image to the dataset's orientation (an exact
permutation and flip of the voxels, ``nibabel.orientations``), resample it linearly to the target
spacing when it does not have it already (``nibabel.processing.resample_to_output``, which covers
the whole field of view on an axis-aligned grid), then bring the label map and the mask onto that
same grid by nearest neighbour in world coordinates (``resample_from_to``), so they land where the
image is even when their files' affines differ from the image's. Then the intensities are
normalised per volume (the Decathlon reader's rule), the mask applied, and everything centred on
the grid: padded with zeros, or cropped, with the affine shifted so every voxel keeps its world
position. The returned affine is each voxel's real world position.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel import orientations
from nibabel.processing import resample_from_to, resample_to_output

from warpbench.volumes import centre_offset, normalise_intensity, place, shift_affine

#: How far (mm) an affine's column may differ from the target spacing and still count as on it.
SPACING_TOLERANCE = 1e-4


@dataclass
class OnGrid:
    """A subject on the grid, and how many of its labelled voxels the grid cut off."""

    image: np.ndarray  # float32 (D, H, W), normalised; 0 outside the mask
    labels: np.ndarray  # integer (D, H, W)
    affine: np.ndarray  # 4x4 voxel-to-world of the grid
    labelled: int  # labelled voxels before the crop
    lost: int  # of those, how many the crop cut off


def reorient(image: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """``image`` with its axes permuted and flipped to point along ``codes`` (e.g. "RAS")."""
    current = orientations.io_orientation(image.affine)
    target = orientations.axcodes2ornt(codes)
    return image.as_reoriented(orientations.ornt_transform(current, target))


def has_spacing(affine: np.ndarray, spacing) -> bool:
    """Whether the grid of ``affine`` runs along the world axes with exactly this spacing."""
    return np.allclose(np.abs(affine[:3, :3]), np.diag(spacing), atol=SPACING_TOLERANCE)


def onto_spacing(image: nib.Nifti1Image, codes: str, spacing) -> nib.Nifti1Image:
    """``image`` reoriented to ``codes`` and, unless it has it already or ``spacing`` is None,
    resampled linearly to ``spacing`` (mm per axis)."""
    oriented = reorient(image, codes)
    if spacing is None or has_spacing(oriented.affine, spacing):
        return oriented
    return reorient(resample_to_output(image, tuple(float(s) for s in spacing), order=1), codes)


def nearest(volume: nib.Nifti1Image, reference: nib.Nifti1Image) -> np.ndarray:
    """``volume`` sampled by nearest neighbour at the voxels of ``reference`` (0 outside it)."""
    return np.asarray(resample_from_to(volume, reference, order=0).dataobj)


def label_dtype(labels: np.ndarray):
    """int16 where the label values fit it (half the memory), else int32."""
    info = np.iinfo(np.int16)
    fits = labels.size == 0 or (labels.min() >= info.min and labels.max() <= info.max)
    return np.int16 if fits else np.int32


def to_grid(image: nib.Nifti1Image, labels: nib.Nifti1Image, mask: nib.Nifti1Image | None,
            codes: str, spacing, grid, mask_labels: bool = False) -> OnGrid:
    """The subject of these volumes on the grid (see the module docstring): orientation
    ``codes``, voxel ``spacing`` (None: the image's own), shape ``grid``. With a ``mask`` the
    image is 0 outside it, and so are the labels when ``mask_labels``."""
    reference = onto_spacing(image, codes, spacing)
    data = np.asarray(reference.dataobj, dtype=np.float32)
    label_map = np.rint(nearest(labels, reference))
    label_map = label_map.astype(label_dtype(label_map))
    inside = None if mask is None else nearest(mask, reference) > 0
    if inside is not None:
        data = np.where(inside, data, np.float32(0))
        if mask_labels:
            label_map[~inside] = 0
    data = normalise_intensity(data)
    if inside is not None:  # a negative low percentile maps 0 above 0: keep the outside at 0
        data[~inside] = 0
    offset = centre_offset(data.shape, grid)
    on_grid = place(label_map, grid, offset)
    labelled = int(np.count_nonzero(label_map))
    return OnGrid(place(data, grid, offset), on_grid, shift_affine(reference.affine, offset),
                  labelled, labelled - int(np.count_nonzero(on_grid)))
