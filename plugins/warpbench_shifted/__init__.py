"""Shift on real anatomy: dataset kind ``shifted``, another ``datasets.yaml`` block's subjects
under controlled acquisition changes.

::

    hippocampus-noise:
      plugin: shifted
      source: hippocampus          # another block of the same file
      shift: [{transform: noise, std: 0.05}]
      seed: 0

The derived dataset keeps its source's subjects, splits, pairs and label maps; only the images
change (:mod:`warpbench_shifted.shifts`: contrast inversion or gamma, bias field, noise, blur,
anisotropic resampling and back, through TorchIO), the same on every load for a given subject
and seed. Its labels are the source's, so a network trained on the source is evaluated on it on
its own label protocol, and (its domain being its own name unless the block says otherwise) as
the shifted, not in-domain, case (:mod:`warpbench.compatibility`, :mod:`warpbench_shifted.dataset`).
"""

from __future__ import annotations

from warpbench.hookspecs import hookimpl
from warpbench_shifted.dataset import ShiftedDataset

__all__ = ["ShiftedDataset"]


@hookimpl
def register_datasets(register):
    register(ShiftedDataset)
