"""Datasets found by path patterns: ``plugin: files`` for any collection of image and label
files, and ``plugin: neurite-oasis``, the same reader with the neurite OASIS collection's file
names, label table, grid and licence as its defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warpbench_files.gridded import GriddedDataset, Sources, shown
from warpbench_files.labeltables import found_labels, read_label_table
from warpbench_files.options import FilesOptions, NeuriteOasisOptions
from warpbench_files.patterns import find_ids, resolve


#: Where ``labels: found`` remembers each label map's values, in the dataset's cache folder (a
#: name no subject id can have: ids never start with a dot).
FOUND_RECORD = ".found-labels.json"


class FilesDataset(GriddedDataset):
    """Image, label and optional mask files under ``root``, found by patterns with an ``{id}``
    (``files: {image: "{id}.nii.gz", labels: "{id}_labels.nii.gz"}``); NIfTI or Analyze.

    A subject is every id the image pattern finds, except files that are another subject's
    labels or mask (so ``{id}.nii.gz`` does not take ``s1_labels.nii.gz`` for an image). A subject
    whose label map or mask is missing stays listed and fails its load naming the missing file.

    The mask sets the image to 0 outside it, so a method sees only the masked anatomy; scores are
    computed on the label maps, which the mask leaves as they are (unless ``mask_labels``), so a
    structure outside the mask is still scored.

    The evaluated labels are the block's ``labels`` table, a ``labels_file``, or ``labels: found``
    (every value above 0 that a label map holds, named ``label_<value>``). ``obtain`` says where
    the data comes from, told while the root is missing.
    """

    kind = "files"
    version = "1"
    Options = FilesOptions

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        super().__init__(name, options, base_dir)
        if self.settings.grid is None:
            self.fail("needs 'grid': the shape every subject is centred onto after resampling, "
                      "such as grid: [160, 192, 160]")
        self.grid = self.settings.grid
        if self.settings.obtain is not None:
            self.source = self.settings.obtain
        self.labels = self._evaluated_labels()

    def availability(self) -> tuple[bool, str]:
        available, reason = super().availability()
        if available and not self.labels:  # labels: found, and no label map could be read
            return False, (f"'labels: found' finds no label value above 0: no label map under "
                           f"{self.root} could be read")
        return available, reason

    @property
    def metadata_files(self) -> list[Path]:
        labels_file = self.settings.labels_file
        return [] if labels_file is None or self.settings.labels else [self.root / labels_file]

    def find_sources(self) -> tuple[dict[str, Sources], list[str]]:
        patterns = self.settings.files
        found = find_ids(self.root, patterns.image)
        others = [p for p in (patterns.labels, patterns.mask) if p is not None]
        taken = {path for subject_id in found for pattern in others
                 for path in resolve(self.root, pattern, subject_id)}
        sources, problems = {}, []
        for subject_id, images in found.items():
            if set(images) & taken:
                continue
            if len(images) > 1:
                problems.append(f"pattern {patterns.image!r} finds {len(images)} images for "
                                f"subject {subject_id!r}: {shown([str(p) for p in images])}")
                continue
            labels = self._one(patterns.labels, subject_id, "labels", problems)
            mask = None
            if patterns.mask is not None:
                mask = self._one(patterns.mask, subject_id, "mask", problems)
            sources[subject_id] = Sources(images[0], labels, mask)
        if self.settings.limit:
            sources = dict(sorted(sources.items())[: self.settings.limit])
        return sources, problems

    def _one(self, pattern: str, subject_id: str, role: str, problems: list[str]) -> Path:
        """The file of ``pattern`` for a subject; where none matches, the path it would have
        (its load then fails naming it), and where several do, a problem."""
        matches = resolve(self.root, pattern, subject_id)
        if len(matches) > 1:
            problems.append(f"{role} pattern {pattern!r} matches {len(matches)} files for "
                            f"subject {subject_id!r}: {shown([str(p) for p in matches])}")
        return matches[0] if matches else self.root / pattern.replace("{id}", subject_id)

    def _evaluated_labels(self) -> dict[int, str]:
        """The block's ``labels``, else those its ``labels_file`` names; with ``labels: found``,
        every value the subjects' label maps hold."""
        settings = self.settings
        if settings.labels == "found":
            return found_labels([sources.labels for _, sources in sorted(self._sources.items())],
                                self.root, self.cache.folder / FOUND_RECORD)
        if settings.labels is not None:
            return settings.labels
        if settings.labels_file is None:
            self.fail("needs 'labels: {1: name, 2: name, ...}' or 'labels_file' naming the "
                      "label values to evaluate")
        path = self.root / settings.labels_file
        if not path.exists() and not self.root.is_dir():
            return {}  # availability() says the root is missing
        try:
            return read_label_table(path)
        except ValueError as exc:
            self.fail(f"option 'labels_file': {exc}")


class NeuriteOasisDataset(FilesDataset):
    """The neurite OASIS collection: ``OASIS_OAS1_<id>_MR1/aligned_norm.nii.gz`` and
    ``aligned_seg35.nii.gz`` under ``root``, the 35 labels named by the root's
    ``seg35_labels.txt``, affinely aligned in one 160x192x224 1 mm space."""

    kind = "neurite-oasis"
    version = "1"
    Options = NeuriteOasisOptions
    aligned_by_default = True  # to FreeSurfer's Talairach space, by the collection's authors
    source = ("neurite-oasis.v1.0.tar (6.6 GB) from "
              "http://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/, extracted into the root "
              "(github.com/adalca/medical-datasets, neurite-oasis.md)")
    license = ("OASIS Data Use Agreement (https://sites.wustl.edu/oasisbrains/); "
               "neurite-oasis prepared by A. Hoopes and A. V. Dalca")
    citation = (
        "Hoopes A, Hoffmann M, Greve DN, Fischl B, Guttag J, Dalca AV. Learning the Effect of "
        "Registration Hyperparameters with HyperMorph. MELBA 2022; Marcus DS, Wang TH, Parker J, "
        "Csernansky JG, Morris JC, Buckner RL. Open Access Series of Imaging Studies (OASIS): "
        "Cross-Sectional MRI Data in Young, Middle Aged, Nondemented, and Demented Older Adults. "
        "Journal of Cognitive Neuroscience 19, 1498-1507 (2007)"
    )
