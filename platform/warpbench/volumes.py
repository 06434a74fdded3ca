"""What every dataset reader does to its volumes: robust intensity normalisation, centring on a
common grid (keeping each voxel's world position), and NIfTI files written so that an interrupted
write never leaves a half file behind. In the core, so that a reader plugin depends only on it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

log = logging.getLogger(__name__)

#: Percentiles of the nonzero voxels that map to 0 and 1: robust to a few hot voxels, and the
#: zero background does not drag the low end down.
PERCENTILES = (1.0, 99.0)


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Clip to the 1st..99th percentile of the nonzero voxels and rescale to [0, 1], float32.

    Scanners and converters leave intensities on arbitrary scales (a maximum of 1e2 in one file and
    1.7e6 in the next), so every volume is brought to the same range on its own.
    """
    foreground = image[image != 0]
    if foreground.size == 0:
        return np.zeros(image.shape, dtype=np.float32)
    low, high = np.percentile(foreground, PERCENTILES)
    if high <= low:  # a flat foreground: show it as a mask
        return (image != 0).astype(np.float32)
    return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)


def centre_offset(shape, grid) -> np.ndarray:
    """Where a volume goes on a grid when centred: grid voxel ``j`` holds volume voxel ``j - offset``
    (a negative offset crops)."""
    return (np.asarray(grid) - np.asarray(shape)) // 2


def place(array: np.ndarray, grid, offset) -> np.ndarray:
    """``array`` moved by ``offset`` onto a zero-filled grid: padded where it is smaller, cropped
    where it is larger."""
    out = np.zeros(tuple(grid), dtype=array.dtype)
    source, target = [], []
    for n, g, o in zip(array.shape, grid, offset):
        start_in, start_out = max(-o, 0), max(o, 0)
        length = min(n - start_in, g - start_out)
        source.append(slice(start_in, start_in + length))
        target.append(slice(start_out, start_out + length))
    out[tuple(target)] = array[tuple(source)]
    return out


def shift_affine(affine: np.ndarray, offset) -> np.ndarray:
    """The affine of the grid that :func:`place` filled: same axes and spacing, origin moved by
    ``-offset`` voxels, so every voxel keeps its world position."""
    shifted = np.array(affine, dtype=np.float64)
    shifted[:3, 3] -= shifted[:3, :3] @ np.asarray(offset, dtype=np.float64)
    return shifted


log = logging.getLogger(__name__)

#: What reading a truncated or garbled NIfTI file raises.
UNREADABLE = (OSError, EOFError, ValueError, zlib.error, ImageFileError)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write next to ``path`` under a temporary name, then rename over it (atomic on POSIX)."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes))
    os.close(fd)
    try:
        nib.save(image, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_nifti(path: Path, dtype, shape) -> np.ndarray | None:
    """The array in ``path``, or None when the file is missing, unreadable or of another shape
    (the caller then regenerates it; a damaged file is logged)."""
    if not path.exists():
        return None
    try:
        array = np.asarray(nib.load(path).dataobj, dtype=dtype)
    except UNREADABLE as exc:
        log.warning("cached file %s is unreadable (%s); regenerating it", path, exc)
        return None
    if array.shape != tuple(shape):
        log.warning("cached file %s has shape %s, not %s; regenerating it", path, array.shape, shape)
        return None
    return array
