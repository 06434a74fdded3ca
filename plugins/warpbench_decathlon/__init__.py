"""Reader for data in the Medical Segmentation Decathlon / Learn2Reg layout.

``<root>/imagesTr/NAME.nii.gz`` holds an image and ``<root>/labelsTr/NAME.nii.gz`` its label map;
the subject id is NAME. A ``dataset.json`` is not required: when present it supplies the label
names (and licence) that the block does not; otherwise the block's ``labels`` option must name
them. Each subject is brought onto the common ``grid`` by centring (zero padding, or cropping when
the volume is larger: a crop that would cut off labelled voxels is an error), its affine shifted
so that every voxel keeps its world position, and its intensities normalised per volume. An
image and its label map must be 3-D arrays of one shape, the image finite and the labels integers
(:func:`warpbench.datasets.check_volumes`, naming the file): fractional labels are refused, never
rounded. The fingerprint covers a sha256 of every subject's files, so a folder whose subjects
were added, removed or rewritten is new data (new runs), and a copy of it under the same block
on another machine is not.

Options (:class:`DecathlonOptions`): ``root`` (relative to the folder of ``datasets.yaml``),
``grid`` (e.g. [48, 64, 48]; without it all subjects must share the first readable one's
shape),
``labels`` ({1: name, ...}), ``limit`` (the first N subjects, for quick runs), plus the shared
``split`` and ``pairs``.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import nibabel as nib
import numpy as np
from pydantic import Field, ValidationError

from warpbench.datasets import (LABEL_NAMES, Count, Dataset, DatasetOptions, LabelNames, Subject,
                                SubjectError, check_volumes, files_digest)
from warpbench.hookspecs import hookimpl
from warpbench.options import describe, must_be
from warpbench.volumes import centre_offset, normalise_intensity, place, shift_affine

SUFFIX = ".nii.gz"
#: How many missing label files an availability message names.
SHOWN = 5


class DecathlonOptions(DatasetOptions):
    """Subjects in the Medical Segmentation Decathlon / Learn2Reg layout:
    ``<root>/imagesTr/NAME.nii.gz`` and ``<root>/labelsTr/NAME.nii.gz``."""

    root: Annotated[str, Field(min_length=1), must_be("a folder path")]
    """The folder holding imagesTr/ and labelsTr/, relative to the folder of datasets.yaml."""
    grid: Annotated[tuple[Count, Count, Count], must_be("3 positive integers")] | None = None
    """The shape every subject is centred onto (default: the first subject's, which every
    subject must then share)."""
    labels: LabelNames | None = None
    """{value: name} of the evaluated labels (default: those of the root's dataset.json)."""
    limit: Annotated[Count, must_be("a positive integer")] | None = None
    """Only the first N subjects, for quick runs."""


class DecathlonDataset(Dataset):
    """Images and label maps in ``imagesTr`` / ``labelsTr`` with matching file names."""

    kind = "decathlon"
    version = "1"
    Options = DecathlonOptions

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        super().__init__(name, options, base_dir)
        self.root = self.base_dir / self.settings.root
        info = self._read_dataset_json()
        self.labels = self._evaluated_labels(info)
        if self.settings.license is None:
            self.license = str(info.get("licence", info.get("license", "")))
        if self.settings.citation is None:
            self.citation = str(info.get("reference", ""))

    # --- the Dataset interface -----------------------------------------------------------------
    def all_subjects(self) -> list[str]:
        images = self.root / "imagesTr"
        if not images.is_dir():
            return []
        # Names starting with "." are macOS resource forks, which the Decathlon archives contain.
        names = sorted(
            p.name[: -len(SUFFIX)] for p in images.glob(f"*{SUFFIX}") if not p.name.startswith(".")
        )
        limit = self.settings.limit
        return names[:limit] if limit else names

    def availability(self) -> tuple[bool, str]:
        if not self.root.is_dir():
            return False, f"root {self.root} does not exist"
        ids = self.all_subjects()
        if not ids:
            return False, f"no imagesTr/*{SUFFIX} under {self.root}"
        unmatched = [i for i in ids if not self._label_path(i).is_file()]
        if unmatched:
            shown = ", ".join(unmatched[:SHOWN]) + (" ..." if len(unmatched) > SHOWN else "")
            return False, (
                f"{len(unmatched)} images have no matching label file in {self.root / 'labelsTr'}: "
                f"{shown}"
            )
        return True, ""

    def load(self, subject_id: str) -> Subject:
        if subject_id not in self.all_subjects():
            raise KeyError(f"dataset {self.name!r} has no subject {subject_id!r}")
        image_path, label_path = self._image_path(subject_id), self._label_path(subject_id)
        image_file, image = _read(image_path, np.float32)
        _, labels = _read(label_path, np.float64)
        check_volumes(image, labels, str(image_path), str(label_path))
        if self.settings.grid is None and image.shape != self.grid:
            raise ValueError(
                f"{image_path} has shape {image.shape}, unlike the first readable subject's "
                f"{self.grid}; set 'grid' so every subject is centred onto one shape"
            )
        offset = centre_offset(image.shape, self.grid)
        on_grid = place(labels.astype(np.int16), self.grid, offset)
        lost = int(np.count_nonzero(labels)) - int(np.count_nonzero(on_grid))
        if lost:
            raise ValueError(
                f"{label_path} has shape {labels.shape}, larger than grid {list(self.grid)}: "
                f"centre-cropping would cut off {lost} labelled voxels; set a larger 'grid'"
            )
        return Subject(
            subject_id,
            place(normalise_intensity(image), self.grid, offset),
            on_grid,
            shift_affine(image_file.affine, offset),
        )

    def fingerprint(self) -> str:
        """The block's fingerprint with the digest of every subject's two files, so a re-run on
        a folder whose subjects changed starts new runs instead of mixing two test splits."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        files = [path for subject_id in self.all_subjects()
                 for path in (self._image_path(subject_id), self._label_path(subject_id))]
        return files_digest(super().fingerprint(), files, self.root)

    @cached_property
    def grid(self) -> tuple[int, int, int]:
        """The common shape: the ``grid`` option, or else the first subject's shape (of the first
        subject whose file can be read: an unreadable one costs its own pairs, not every
        subject's)."""
        if self.settings.grid is not None:
            return self.settings.grid
        for subject_id in self.all_subjects():
            try:
                return tuple(_read_header(self._image_path(subject_id)).shape[:3])
            except SubjectError:
                continue  # loading that subject names its file
        raise ValueError(f"dataset {self.name!r}: no readable image under {self.root}")

    # --- helpers -------------------------------------------------------------------------------
    def _image_path(self, subject_id: str) -> Path:
        return self.root / "imagesTr" / f"{subject_id}{SUFFIX}"

    def _label_path(self, subject_id: str) -> Path:
        return self.root / "labelsTr" / f"{subject_id}{SUFFIX}"

    def _read_dataset_json(self) -> dict[str, Any]:
        path = self.root / "dataset.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            self.fail(f"cannot read {path}: {exc}")

    def _evaluated_labels(self, info: dict[str, Any]) -> dict[int, str]:
        """The block's ``labels``, else those of ``dataset.json`` (``info``)."""
        if self.settings.labels is not None:
            return self.settings.labels
        if "labels" in info:
            try:
                return LABEL_NAMES.validate_python(info["labels"])
            except ValidationError as exc:
                self.fail(f"{self.root / 'dataset.json'} labels: {describe(exc, None, 'label')}")
        if self.root.is_dir():
            self.fail(
                f"has no dataset.json under {self.root}, so it needs "
                "'labels: {1: name, 2: name, ...}' naming the label values to evaluate"
            )
        return {}  # availability() says the root is missing


def _read_header(path: Path):
    try:
        return nib.load(path)
    except Exception as exc:  # any failure to parse is reported with the file's name
        raise SubjectError(f"cannot read NIfTI file {path}: {exc}") from exc


def _read(path: Path, dtype) -> tuple[Any, np.ndarray]:
    """The nibabel image and its data; an unreadable file (not NIfTI, truncated) is a
    :class:`SubjectError` naming it."""
    image = _read_header(path)
    try:
        data = np.asarray(image.dataobj, dtype=dtype)
    except Exception as exc:
        raise SubjectError(f"cannot read NIfTI file {path}: {exc}") from exc
    return image, data


@hookimpl
def register_datasets(register):
    register(DecathlonDataset)
