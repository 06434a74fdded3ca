"""Real datasets from image and label files on disk, each subject brought onto the dataset's grid
through its affine.

Three kinds, one reader:

- ``files``: any collection, found by path patterns with an ``{id}``
  (:class:`~warpbench_files.layouts.FilesDataset`);
- ``neurite-oasis``: the neurite OASIS collection's layout
  (:class:`~warpbench_files.layouts.NeuriteOasisDataset`);
- ``learn2reg``: a Learn2Reg task folder with its ``<TASK>_dataset.json`` and official pairs
  (:class:`~warpbench_files.learn2reg.Learn2RegDataset`).

Every subject goes the same way (:mod:`warpbench_files.geometry`): read through nibabel (NIfTI or
Analyze, :mod:`warpbench_files.reading`), reoriented to one orientation, resampled to one spacing
(images linear, labels and masks nearest), centre-cropped or padded to one grid, intensities
normalised per volume, the mask applied; a grid that cuts off labelled voxels is reported. The
result is cached on disk under a key of the source files and the options
(:mod:`warpbench_files.cache`), so a second run only loads; the dataset's fingerprint covers the
files too (:mod:`warpbench_files.gridded`). The options are in :mod:`warpbench_files.options`.
"""

from __future__ import annotations

from warpbench.hookspecs import hookimpl
from warpbench_files.layouts import FilesDataset, NeuriteOasisDataset
from warpbench_files.learn2reg import Learn2RegDataset

__all__ = ["FilesDataset", "Learn2RegDataset", "NeuriteOasisDataset"]


@hookimpl
def register_datasets(register):
    register(FilesDataset)
    register(NeuriteOasisDataset)
    register(Learn2RegDataset)
