"""Reader for data in the Medical Segmentation Decathlon / Learn2Reg layout.

``<root>/imagesTr/NAME.nii.gz`` holds an image and ``<root>/labelsTr/NAME.nii.gz`` its label map;
the subject id is NAME. A ``dataset.json`` is not required: when present it supplies the label
names (and licence) that the block does not; otherwise the block's ``labels`` option must name
them. Each subject is brought onto the common ``grid`` by centring (zero padding, or cropping when
the volume is larger: a crop that would cut off labelled voxels is an error), its affine shifted
so that every voxel keeps its world position, and its intensities normalised per volume.

Options: ``root`` (relative to the folder of ``datasets.yaml``), ``grid`` (e.g. [48, 64, 48];
without it all subjects must share the first one's shape), ``labels`` ({1: name, ...}),
``limit`` (the first N subjects, for quick runs), plus the shared ``split`` and ``pairs``.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from warpbench.datasets import Dataset, Subject
from warpbench.hookspecs import hookimpl
from warpbench_decathlon.volumes import centre_offset, normalise_intensity, place, shift_affine

SUFFIX = ".nii.gz"
OWN_OPTIONS = {"root", "grid", "labels", "limit"}
#: How many missing label files an availability message names.
SHOWN = 5


class DecathlonDataset(Dataset):
    """Images and label maps in ``imagesTr`` / ``labelsTr`` with matching file names."""

    kind = "decathlon"
    version = "1"

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        super().__init__(name, options, base_dir)
        self.reject_unknown_options(OWN_OPTIONS)
        root = self.options.get("root")
        if not isinstance(root, (str, Path)) or not str(root):
            self.fail(f"needs 'root', the folder holding imagesTr/ and labelsTr/, got {root!r}")
        self.root = self.base_dir / Path(root)
        self._grid = self._parse_grid(self.options.get("grid"))
        self.limit = self._parse_limit(self.options.get("limit"))
        info = self._read_dataset_json()
        self.labels = self._parse_labels(self.options.get("labels"), info)
        if "license" not in self.options:
            self.license = str(info.get("licence", info.get("license", "")))
        if "citation" not in self.options:
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
        return names[: self.limit] if self.limit else names

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
        if labels.shape != image.shape:
            raise ValueError(
                f"{label_path} has shape {labels.shape} but its image {image_path} has {image.shape}"
            )
        if self._grid is None and image.shape != self.grid:
            raise ValueError(
                f"{image_path} has shape {image.shape}, unlike the first subject's {self.grid}; "
                "set 'grid' so every subject is centred onto one shape"
            )
        offset = centre_offset(image.shape, self.grid)
        on_grid = place(np.rint(labels).astype(np.int16), self.grid, offset)
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

    @cached_property
    def grid(self) -> tuple[int, int, int]:
        """The common shape: the ``grid`` option, or else the first subject's shape."""
        if self._grid is not None:
            return self._grid
        ids = self.all_subjects()
        if not ids:
            raise ValueError(f"dataset {self.name!r}: no subjects under {self.root}")
        return tuple(_read_header(self._image_path(ids[0])).shape[:3])

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

    def _parse_grid(self, grid) -> tuple[int, int, int] | None:
        if grid is None:
            return None
        if not (
            isinstance(grid, (list, tuple))
            and len(grid) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in grid)
        ):
            self.fail(f"grid must be 3 positive integers, got {grid!r}")
        return tuple(grid)

    def _parse_limit(self, limit) -> int | None:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            self.fail(f"limit must be a positive integer, got {limit!r}")
        return limit

    def _parse_labels(self, labels, info: dict[str, Any]) -> dict[int, str]:
        source = "labels"
        if labels is None and "labels" in info:
            labels, source = info["labels"], f"{self.root / 'dataset.json'} labels"
        if labels is None:
            if self.root.is_dir():
                self.fail(
                    f"has no dataset.json under {self.root}, so it needs "
                    "'labels: {1: name, 2: name, ...}' naming the label values to evaluate"
                )
            return {}  # availability() says the root is missing
        if not isinstance(labels, dict):
            self.fail(f"{source} must map label values to names, got {labels!r}")
        parsed = {}
        for value, label_name in labels.items():
            try:
                number = int(value)
            except (TypeError, ValueError):
                self.fail(f"{source}: {value!r} is not an integer label value")
            if number != 0:  # background is never evaluated
                parsed[number] = str(label_name)
        if not parsed or min(parsed) < 0:
            self.fail(f"{source} must name positive label values, got {labels!r}")
        return dict(sorted(parsed.items()))


def _read_header(path: Path):
    try:
        return nib.load(path)
    except Exception as exc:  # any failure to parse is reported with the file's name
        raise ValueError(f"cannot read NIfTI file {path}: {exc}") from exc


def _read(path: Path, dtype) -> tuple[Any, np.ndarray]:
    """The nibabel image and its 3-D data; any unreadable or non-3-D file is a ValueError naming
    it."""
    image = _read_header(path)
    try:
        data = np.asarray(image.dataobj, dtype=dtype)
    except Exception as exc:
        raise ValueError(f"cannot read NIfTI file {path}: {exc}") from exc
    if data.ndim != 3:
        raise ValueError(f"{path} holds a {data.ndim}-D array of shape {data.shape}; expected 3-D")
    return image, data


@hookimpl
def register_datasets(register):
    register(DecathlonDataset)
