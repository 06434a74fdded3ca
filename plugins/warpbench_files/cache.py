"""Preprocessed subjects on disk, so a second run only loads them.

Each subject has a folder ``<cache folder>/<subject id>/`` holding, under a key that hashes its
source files' paths, sizes and modification times and every option that changes its arrays, the
gzipped NIfTI image and label map on the grid and a JSON record (the grid's exact affine and the
counts of labelled voxels, so a warning about a cut-off grid is given again on every read). The
record is written last, each file under a temporary name renamed into place
(:func:`warpbench.volumes.write_nifti`), so an interrupted write is never read; a damaged
entry is computed again, and writing a new key removes the subject's older ones.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from warpbench_files.geometry import OnGrid
from warpbench.volumes import read_nifti, write_nifti

log = logging.getLogger(__name__)


class SubjectCache:
    """The cached subjects of one dataset, in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _files(self, subject_id: str, key: str) -> tuple[Path, Path, Path]:
        folder = self.folder / subject_id
        return (folder / f"{key}.json", folder / f"{key}_image.nii.gz",
                folder / f"{key}_labels.nii.gz")

    def read(self, subject_id: str, key: str) -> OnGrid | None:
        """The subject stored under ``key``, or None when there is none or it is damaged."""
        record_path, image_path, labels_path = self._files(subject_id, key)
        if not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text())
            shape = record["shape"]
            image = read_nifti(image_path, np.float32, shape)
            labels = read_nifti(labels_path, np.dtype(record["labels_dtype"]), shape)
            affine = np.array(record["affine"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cache record %s is unreadable (%s); preprocessing again", record_path, exc)
            return None
        if image is None or labels is None:
            return None
        return OnGrid(image, labels, affine, record["labelled"], record["lost"])

    def write(self, subject_id: str, key: str, subject: OnGrid) -> None:
        """Store ``subject`` under ``key``, replacing the subject's entries under other keys."""
        record_path, image_path, labels_path = self._files(subject_id, key)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        for old in record_path.parent.iterdir():  # finished entries only: never another
            if key not in old.name and not old.name.startswith("."):  # process's temporary file
                old.unlink(missing_ok=True)
        write_nifti(image_path, subject.image, subject.affine)
        write_nifti(labels_path, subject.labels, subject.affine)
        record = {"shape": list(subject.image.shape), "labels_dtype": str(subject.labels.dtype),
                  "affine": subject.affine.tolist(), "labelled": subject.labelled,
                  "lost": subject.lost}
        fd, temporary = tempfile.mkstemp(dir=record_path.parent, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
            os.replace(temporary, record_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
