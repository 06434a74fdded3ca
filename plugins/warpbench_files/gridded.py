"""What every kind of this plugin shares: a subject is a set of source files, read, brought onto
the grid through its affine (:mod:`warpbench_files.geometry`), cached (:mod:`warpbench_files.cache`)
and checked for labelled voxels the grid cuts off. A kind says only where the files are
(:meth:`GriddedDataset.find_sources`) and what its grid and labels are.

The fingerprint covers the source files (paths, sizes, modification times) as well as the block,
so a run stored against one version of the data is never resumed on another: adding a subject or
touching a file gives a new fingerprint. The files are looked at once per dataset object (one
command); a file that changes after that fails its subject's load rather than mixing versions.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from warpbench.datasets import Dataset, Subject, check_image, check_labels
from warpbench_files import geometry
from warpbench_files.cache import SubjectCache
from warpbench_files.reading import (SubjectFileError, file_stamp, open_image, read_volume,
                                     source_files)

#: Bump when the preprocessing changes what it makes of the same files and options.
CACHE_FORMAT = 1
#: How many problems an availability message names.
SHOWN = 5
#: What an orientation falls back to when no subject's header can be read.
DEFAULT_ORIENTATION = "RAS"


class GridCutsLabels(ValueError):
    """The grid cuts off labelled voxels of a subject (``cut_labels: error``)."""


class GridCutsLabelsWarning(UserWarning):
    """The grid cuts off labelled voxels of a subject (``cut_labels: warn``, the default)."""


@dataclass(frozen=True)
class Sources:
    """Where one subject's volumes are: its image, its label map and, optionally, its mask."""

    image: Path
    labels: Path
    mask: Path | None = None


def shown(items: list[str]) -> str:
    """The first few of ``items``, for a message."""
    return ", ".join(items[:SHOWN]) + (" ..." if len(items) > SHOWN else "")


class GriddedDataset(Dataset):
    """A dataset whose subjects are files brought onto one grid. Subclasses set ``self.grid``
    and ``self.labels`` in ``__init__`` and implement :meth:`find_sources`."""

    #: The shape every subject is centred onto.
    grid: tuple[int, int, int] | None
    #: Where a collection's files are obtained, told to a user whose root is missing.
    source: str = ""

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        super().__init__(name, options, base_dir)
        self.root = self.base_dir / self.settings.root
        self.cache = SubjectCache(self.base_dir / self.settings.cache_dir / name)

    # --- what a kind implements ----------------------------------------------------------------
    def find_sources(self) -> tuple[dict[str, Sources], list[str]]:
        """Every subject's files by id, and the problems that make the dataset unusable (an
        ambiguous pattern, two files for one id), each a sentence naming the files."""
        raise NotImplementedError

    @property
    def metadata_files(self) -> list[Path]:
        """Files other than the subjects' that decide the dataset (label tables, task files)."""
        return []

    # --- the Dataset interface -----------------------------------------------------------------
    def all_subjects(self) -> list[str]:
        return sorted(self._sources)

    def availability(self) -> tuple[bool, str]:
        if not self.root.is_dir():
            where = f"; the data: {self.source}" if self.source else ""
            return False, f"root {self.root} does not exist{where}"
        sources, problems = self._found
        if problems:
            return False, f"{len(problems)} problems: {shown(problems)}"
        if not sources:
            return False, f"no subject found under {self.root}"
        return True, ""

    def load(self, subject_id: str) -> Subject:
        """The subject on the grid: from the cache, else read and preprocessed (then cached).
        A missing, unreadable or changed file raises :class:`SubjectFileError` naming it."""
        if subject_id not in self._sources:
            raise KeyError(f"dataset {self.name!r} has no subject {subject_id!r}")
        sources = self._sources[subject_id]
        self._check_unchanged(subject_id, sources)
        key = self._cache_key(subject_id)
        on_grid = self.cache.read(subject_id, key)
        if on_grid is None:
            on_grid = self._preprocess(subject_id, sources)
            self.cache.write(subject_id, key, on_grid)
        if on_grid.lost:
            self._report_cut(subject_id, sources, on_grid)
        return Subject(subject_id, on_grid.image, on_grid.labels, on_grid.affine)

    def fingerprint(self) -> str:
        """The block's fingerprint combined with the source files' paths, sizes and modification
        times (and those of the kind's metadata files), as first seen."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        blob = json.dumps([super().fingerprint(), self._stats,
                           [file_stamp(p, self.root) for p in self.metadata_files]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @cached_property
    def orientation(self) -> str:
        """The axis codes every subject is reoriented to: the block's, else the first readable
        subject's image's."""
        if self.settings.orientation is not None:
            return self.settings.orientation
        for subject_id in self.all_subjects():
            try:
                codes = nib.aff2axcodes(open_image(self._sources[subject_id].image).affine)
            except Exception:  # an unreadable subject fails its own load, with its path
                continue
            if None not in codes:
                return "".join(codes)
        return DEFAULT_ORIENTATION

    # --- helpers -------------------------------------------------------------------------------
    @cached_property
    def _found(self) -> tuple[dict[str, Sources], list[str]]:
        if not self.root.is_dir():
            return {}, []
        return self.find_sources()

    @property
    def _sources(self) -> dict[str, Sources]:
        return self._found[0]

    @cached_property
    def _stats(self) -> dict[str, list]:
        """Each subject's source files as (path under root, size, modification time), as seen
        when the dataset first looked."""
        return {subject_id: [file_stamp(p, self.root) for p in _files_of(sources)]
                for subject_id, sources in self._sources.items()}

    def _check_unchanged(self, subject_id: str, sources: Sources) -> None:
        now = [file_stamp(path, self.root) for path in _files_of(sources)]
        changed = [(a or b)[0] for a, b in zip_longest(now, self._stats[subject_id]) if a != b]
        if changed:
            raise SubjectFileError(f"{self.root / changed[0]}: changed since this dataset first "
                                   "looked at it (its fingerprint is of the old file); run again")

    def _cache_key(self, subject_id: str) -> str:
        settings = self.settings
        spacing = None if settings.spacing is None else [float(s) for s in settings.spacing]
        # label_geometry joins the key only when set, so caches made before it stay valid.
        geometry_key = [] if settings.label_geometry == "own" else [settings.label_geometry]
        blob = json.dumps([CACHE_FORMAT, self.kind, self.version, self._stats[subject_id],
                           self.orientation, spacing, list(self.grid), settings.mask_labels,
                           *geometry_key])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _preprocess(self, subject_id: str, sources: Sources) -> geometry.OnGrid:
        what = f"subject {subject_id!r} of dataset {self.name!r}"
        image = read_volume(sources.image, f"image of {what}", "float32")
        labels = read_volume(sources.labels, f"label map of {what}")
        # Checked as read, naming the files: resampling would blur NaNs and round fractions.
        check_image(np.asanyarray(image.dataobj), f"{sources.image}: the image of {what}")
        check_labels(np.asanyarray(labels.dataobj), f"{sources.labels}: the label map of {what}")
        mask = None if sources.mask is None else read_volume(sources.mask, f"mask of {what}")
        if self.settings.label_geometry == "image":
            labels = _on_image_voxels(labels, image, sources.labels, sources.image, "label map")
            if mask is not None:
                mask = _on_image_voxels(mask, image, sources.mask, sources.image, "mask")
        return geometry.to_grid(image, labels, mask, self.orientation, self.settings.spacing,
                                self.grid, self.settings.mask_labels)

    def _report_cut(self, subject_id: str, sources: Sources, on_grid: geometry.OnGrid) -> None:
        share = 100 * on_grid.lost / on_grid.labelled
        message = (f"dataset {self.name!r}, subject {subject_id!r} ({sources.labels}): the grid "
                   f"{list(self.grid)} cuts off {on_grid.lost} of its {on_grid.labelled} labelled "
                   f"voxels ({share:.1f} %); set a larger 'grid'")
        if self.settings.cut_labels == "error":
            raise GridCutsLabels(message)
        warnings.warn(message, GridCutsLabelsWarning, stacklevel=3)


def _on_image_voxels(volume: nib.Nifti1Image, image: nib.Nifti1Image, path: Path,
                     image_path: Path, role: str) -> nib.Nifti1Image:
    """``volume`` taken as lying on ``image``'s voxels (``label_geometry: image``): its data with
    the image's affine; a :class:`SubjectFileError` naming both files where the shapes differ."""
    if volume.shape != image.shape:
        raise SubjectFileError(
            f"{path}: the {role} has shape {volume.shape}, unlike the shape {image.shape} of its "
            f"image {image_path}; 'label_geometry: image' needs them voxel for voxel alike")
    return nib.Nifti1Image(np.asanyarray(volume.dataobj), image.affine)


def _files_of(sources: Sources) -> list[Path]:
    volumes = [sources.image, sources.labels] + ([sources.mask] if sources.mask else [])
    return [path for volume in volumes for path in source_files(volume)]
