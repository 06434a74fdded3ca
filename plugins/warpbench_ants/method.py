"""ANTs SyN through antspyx, with the settings ANTs recommends and those the literature used."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from warpbench import Grid, Method
from warpbench.options import Settings
from warpbench.search_space import Choice, FloatRange, IntRange
from warpbench.spatial import as_numpy
from warpbench_ants.fields import pullback_from_transforms

INSTALL = "pip install 'warpbench[ants]' (or `make peers` for a separate venv)"


def import_ants():
    """antspyx's module, imported on first use so that registering the method never needs it."""
    try:
        import ants
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"method 'ants-syn' (plugin 'ants') needs the package antspyx, which cannot be "
            f"imported here ({exc}); install it with: {INSTALL}", name="ants") from exc
    return ants


class AntsSynParams(Settings):
    """The parameters of :class:`AntsSynMethod`: the arguments of ``ants.registration``."""

    type_of_transform: str
    """antspyx's transform: "SyN" (after its affine stage), "SyNOnly", ..., or "auto": "SyN"
    unless the dataset is pre-aligned (``Grid.pre_aligned``), then "SyNOnly"."""
    syn_metric: Literal["CC", "mattes", "meansquares", "demons"]
    syn_sampling: PositiveInt
    """The metric's parameter: the CC radius in voxels, or the number of MI bins."""
    reg_iterations: list[NonNegativeInt]
    """Iterations per level, coarse to fine."""
    grad_step: PositiveFloat
    flow_sigma: NonNegativeFloat
    """Voxels (ANTs' updateFieldVarianceInVoxelSpace); smooths each update."""
    total_sigma: NonNegativeFloat
    """Voxels (ANTs' totalFieldVarianceInVoxelSpace); smooths the total field."""


def transform_type(type_of_transform: str, pre_aligned: bool) -> str:
    """antspyx's ``type_of_transform`` for a preset's: "auto" is "SyN" (antspyx's affine stage,
    from a centre-of-mass start, then SyN) unless the grid is ``pre_aligned``, then "SyNOnly";
    any other is itself."""
    if type_of_transform != "auto":
        return type_of_transform
    return "SyNOnly" if pre_aligned else "SyN"


class AntsSynMethod(Method):
    name = "ants-syn"
    family = "classical"
    version = "2"
    description = (
        "ANTs symmetric normalisation (SyN) through antspyx; needs antspyx "
        "(pip install 'warpbench[ants]')."
    )
    Params = AntsSynParams
    presets = {
        # antsRegistrationSyN.sh's deformable stage, after antspyx's affine stage ("SyN") unless
        # the dataset is pre-aligned ("auto"; then "SyNOnly"): SyN[0.1,3,0] driven by
        # cross-correlation of radius 4, 100x70x50x20 iterations at shrink factors 8x4x2x1
        # (antspyx derives shrink 2^k and smoothing k voxels per level). ANTs works in physical
        # space: the images carry the grid's spacing.
        "default": {
            "type_of_transform": "auto",
            "syn_metric": "CC",
            "syn_sampling": 4,  # the CC radius, voxels
            "reg_iterations": [100, 70, 50, 20],
            "grad_step": 0.1,
            "flow_sigma": 3.0,  # voxels; smooths each update
            "total_sigma": 0.0,  # voxels; smooths the total field
        },
        # TransMorph's baseline (Chen et al., MedIA 2022): deformable only, mean squares,
        # (160, 80, 40) iterations, the rest antspyx's defaults.
        "literature": {
            "type_of_transform": "SyNOnly",
            "syn_metric": "meansquares",
            "syn_sampling": 32,  # unused by mean squares; antspyx's default
            "reg_iterations": [160, 80, 40],
            "grad_step": 0.2,
            "flow_sigma": 3.0,
            "total_sigma": 0.0,
        },
    }
    # What `warpbench tune` searches from the default: the CC radius, the step and both
    # smoothings (antsRegistrationSyN.sh's schedule and affine stage stay).
    search_space = {
        "syn_sampling": IntRange(2, 6),
        "grad_step": FloatRange(0.05, 0.5, log=True),
        "flow_sigma": FloatRange(0.0, 5.0),
        "total_sigma": FloatRange(0.0, 3.0),
        "syn_metric": Choice("CC", "mattes"),
    }

    def availability(self) -> tuple[bool, str]:
        """Whether antspyx can be imported here, and if not why (``Method.availability``)."""
        try:
            import_ants()
        except ModuleNotFoundError as exc:
            return False, str(exc)
        return True, ""

    def register(self, fixed, moving, params, device, *, grid: Grid = Grid()):
        """Run antspyx on the CPU (ANTs has no GPU path; ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS sets
        its threads) on images of the ``grid``'s spacing and identity direction, and return the
        composed forward transform as a voxel pull-back field."""
        settings = self.resolve(params)
        ants = import_ants()
        # ANTsImage arrays keep ITK's index order, so array axis k is index axis k, spacing[k].
        spacing = tuple(float(mm) for mm in grid.spacing)
        fixed_image = ants.from_numpy(np.ascontiguousarray(as_numpy(fixed), dtype=np.float32),
                                      spacing=spacing)
        moving_image = ants.from_numpy(np.ascontiguousarray(as_numpy(moving), dtype=np.float32),
                                       spacing=spacing)
        # Every file antspyx writes (the fwdtransforms and invtransforms, the composed field)
        # goes under one temporary folder, removed with all of them when the pair is done.
        with tempfile.TemporaryDirectory(prefix="warpbench-ants-") as folder:
            result = ants.registration(
                fixed_image, moving_image,
                type_of_transform=transform_type(settings.type_of_transform, grid.pre_aligned),
                syn_metric=settings.syn_metric,
                syn_sampling=settings.syn_sampling,
                reg_iterations=tuple(settings.reg_iterations),
                grad_step=settings.grad_step,
                flow_sigma=settings.flow_sigma,
                total_sigma=settings.total_sigma,
                outprefix=str(Path(folder) / "reg_"),
            )
            return pullback_from_transforms(ants, fixed_image, result["fwdtransforms"], folder)
