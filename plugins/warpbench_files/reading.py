"""Reading one volume file through nibabel: NIfTI (``.nii``, ``.nii.gz``, ``.hdr/.img`` pairs) and
Analyze 7.5 (``.hdr/.img``, gzipped too, including the ``.hdr`` + ``.img.gz`` mix that some
collections ship and nibabel does not pair by itself).

Every failure (missing, truncated, garbled, not 3-D) is a :class:`SubjectFileError` whose message
starts with the file's path (and, for half of an Analyze pair, names the other half too), so the
user knows which file to fix; the data is read at once, so a truncated file fails here and not
later inside the resampling.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

#: An Analyze / NIfTI-pair file's name endings: the header, then the image it points to.
PAIR_ENDINGS = (".hdr", ".hdr.gz", ".img", ".img.gz")


class SubjectFileError(OSError):
    """A subject's file is missing or cannot be read; the message starts with its path."""


def pair_stem(path: Path) -> str | None:
    """The name without its Analyze ending, or None for a file that is not half of a pair."""
    return next((path.name[: -len(e)] for e in PAIR_ENDINGS if path.name.endswith(e)), None)


def source_files(path: Path) -> list[Path]:
    """The files that hold the volume ``path`` names: the file itself, or both halves of an
    Analyze pair (whichever endings exist), so a fingerprint sees a change to either."""
    stem = pair_stem(path)
    if stem is None:
        return [path]
    siblings = [path.with_name(stem + ending) for ending in PAIR_ENDINGS]
    return [p for p in siblings if p.exists()] or [path]


def relative_name(path: Path, root: Path) -> str:
    """``path`` under ``root`` (POSIX), or whole when it lies elsewhere: how records name files,
    so that a dataset folder moved whole keeps its records."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def file_stamp(path: Path, root: Path) -> list:
    """[path under root, size, modification time in ns], sizes None for a missing file: what a
    record keeps to tell an unchanged file from a rewritten one without reading it."""
    try:
        info = os.stat(path)
    except OSError:
        return [relative_name(path, root), None, None]
    return [relative_name(path, root), info.st_size, info.st_mtime_ns]


def open_image(path: Path):
    """The nibabel image of ``path`` (header read, data not yet)."""
    stem = pair_stem(path)
    if stem is not None:
        header, image = path.with_name(stem + ".hdr"), path.with_name(stem + ".img.gz")
        if header.exists() and image.exists() and not path.with_name(stem + ".img").exists():
            return _mixed_pair(header, image)
    return nib.load(path)


def _mixed_pair(header: Path, image: Path):
    """A plain header with a gzipped image: nibabel's own class for the header, its data read
    from the gzipped file (nibabel opens ``.gz`` names through gzip)."""
    for klass in nib.all_image_classes:
        if ".hdr" in klass.valid_exts and klass.path_maybe_image(header)[0]:
            file_map = klass.filespec_to_file_map(header)
            file_map["image"].filename = str(image)
            return klass.from_file_map(file_map)
    raise ValueError("not an Analyze or NIfTI header")


def read_volume(path: Path, what: str, dtype=None) -> nib.Nifti1Image:
    """The 3-D volume in ``path`` as an in-memory NIfTI image (its data as ``dtype``, else as
    stored), with its affine. ``what`` says what the file is for (``"labels of subject 7"``)."""
    if not path.is_file():
        raise SubjectFileError(f"{path}: no such file (the {what})")
    stem = pair_stem(path)
    if stem is not None and path.name.endswith((".hdr", ".hdr.gz")):
        data_files = [path.with_name(stem + ending) for ending in (".img", ".img.gz")]
        if not any(p.is_file() for p in data_files):  # a header whose data is missing
            raise SubjectFileError(
                f"{data_files[0]}: no such file (the data of {path}, the {what})")
    try:
        image = open_image(path)
        data = np.asarray(image.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel, gzip and numpy each raise their own kinds
        others = [str(p) for p in source_files(path) if p != path]
        halves = f" (its pair: {', '.join(others)})" if others else ""
        raise SubjectFileError(
            f"{path}: cannot read the {what}: {type(exc).__name__}: {exc}{halves}") from exc
    while data.ndim > 3 and data.shape[-1] == 1:  # (X, Y, Z, 1): one volume of a series
        data = data[..., 0]
    if data.ndim != 3:
        raise SubjectFileError(
            f"{path}: the {what} is a {data.ndim}-D array of shape {data.shape}; expected 3-D")
    return nib.Nifti1Image(data, image.affine)
