"""NIfTI files written so that an interrupted write never leaves a half file behind."""

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
