"""FireANTs' GreedyRegistration and SyNRegistration with the settings its authors publish, after
FireANTs' own AffineRegistration unless the dataset is pre-aligned."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from warpbench import Grid, Method
from warpbench.options import Settings
from warpbench.search_space import Choice, FloatRange
from warpbench.spatial import as_numpy
from warpbench_fireants.fields import pullback_from_coordinates

INSTALL = "pip install 'warpbench[fireants]' (or `make peers` for a separate venv)"
#: The affine stage that starts a registration that is not of pre-aligned data: the FireANTs
#: quick-start's AffineRegistration (its loss is the preset's).
AFFINE_STAGE = {"scales": [4, 2, 1], "iterations": [200, 100, 50], "optimizer": "Adam",
                "optimizer_lr": 3e-3, "cc_kernel_size": 5}


def import_fireants(method: str) -> SimpleNamespace:
    """What of fireants a registration needs (SimpleITK, its image classes, its two registration
    classes, its smallest pyramid level), imported on first use so that registering never needs
    the package."""
    try:
        import SimpleITK
        from fireants.io import image
        from fireants.registration import affine, greedy, syn
        from fireants.utils.globals import MIN_IMG_SIZE
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"method {method!r} (plugin 'fireants') needs the package fireants, which cannot be "
            f"imported here ({exc}); install it with: {INSTALL}", name="fireants") from exc
    return SimpleNamespace(
        sitk=SimpleITK, image=image, min_size=MIN_IMG_SIZE, affine=affine.AffineRegistration,
        classes={"greedy": greedy.GreedyRegistration, "syn": syn.SyNRegistration})


class FireantsParams(Settings):
    """The parameters of both FireANTs methods: the arguments of its registration classes."""

    scales: list[PositiveInt]
    """Shrink factors, coarse to fine."""
    iterations: list[NonNegativeInt]
    """Iterations per scale."""
    loss: str
    """FireANTs' loss_type: "cc" (local normalised cross-correlation), "mi", "mse", ..."""
    cc_kernel_size: PositiveInt
    """Voxels per side of the CC window."""
    learning_rate: PositiveFloat
    smooth_grad_sigma: NonNegativeFloat
    """Voxels; smooths each update."""
    smooth_warp_sigma: NonNegativeFloat
    """Voxels; smooths the accumulated warp."""
    affine_init: Literal["auto"] | bool
    """Start from FireANTs' AffineRegistration (:data:`AFFINE_STAGE`): true, false, or "auto",
    unless the dataset is pre-aligned (``Grid.pre_aligned``)."""


def starts_affine(affine_init, pre_aligned: bool) -> bool:
    """Whether the affine stage runs: ``affine_init`` true, or "auto" on data not pre-aligned."""
    return not pre_aligned if affine_init == "auto" else bool(affine_init)


class _FireantsMethod(Method):
    """One FireANTs deformable registration class behind the warpbench method contract."""

    family = "classical"
    version = "2"
    Params = FireantsParams
    #: Which FireANTs class runs it: "greedy" or "syn".
    algorithm: str
    # What `warpbench tune` searches for both (the study tuned FireANTs' step and smoothings with
    # Ray Tune): the step, the CC window and both smoothings; the schedule stays.
    search_space = {
        "learning_rate": FloatRange(0.05, 2.0, log=True),
        "cc_kernel_size": Choice(3, 5, 7, 9),
        "smooth_grad_sigma": FloatRange(0.0, 3.0),
        "smooth_warp_sigma": FloatRange(0.0, 2.0),
    }

    def availability(self) -> tuple[bool, str]:
        """Whether fireants can be imported here, and if not why (``Method.availability``)."""
        try:
            import_fireants(self.name)
        except ModuleNotFoundError as exc:
            return False, str(exc)
        return True, ""

    def register(self, fixed, moving, params, device, *, grid: Grid = Grid()):
        """Run the FireANTs schedule in ``params`` on ``device`` with images of the ``grid``'s
        spacing and identity direction (FireANTs' affine works in physical space), after its
        affine stage where ``affine_init`` asks for one, and return the warp as a voxel
        pull-back."""
        settings = self.resolve(params)
        fireants = import_fireants(self.name)
        if min(fixed.shape) < fireants.min_size:
            # FireANTs sizes every pyramid level at least min_size per axis, which on a smaller
            # image mismatches its own full-resolution level.
            raise ValueError(f"method {self.name!r}: fireants needs at least "
                             f"{fireants.min_size} voxels per axis, got {tuple(fixed.shape)} "
                             f"(`warpbench check` takes --shape 32,40,48)")

        def batch(volume):
            array = np.ascontiguousarray(as_numpy(volume), dtype=np.float32)
            # GetImageFromArray reads a (D, H, W) array as ITK's (x, y, z) = (W, H, D), and
            # fireants reads it back as (D, H, W): the array's own axes throughout.
            itk_image = fireants.sitk.GetImageFromArray(array)
            itk_image.SetSpacing(tuple(float(mm) for mm in reversed(grid.spacing)))  # x, y, z
            return fireants.image.BatchedImages(
                [fireants.image.Image(itk_image, device=str(device))])

        fixed_batch, moving_batch = batch(fixed), batch(moving)
        start = {}
        if starts_affine(settings.affine_init, grid.pre_aligned):
            affine = fireants.affine(
                fixed_images=fixed_batch, moving_images=moving_batch, loss_type=settings.loss,
                progress_bar=False, **AFFINE_STAGE)
            with torch.enable_grad():
                affine.optimize()
            start["init_affine"] = affine.get_affine_matrix().detach()
        registration = fireants.classes[self.algorithm](
            scales=list(settings.scales),
            iterations=list(settings.iterations),
            fixed_images=fixed_batch,
            moving_images=moving_batch,
            loss_type=settings.loss,
            cc_kernel_size=settings.cc_kernel_size,
            deformation_type="compositive",
            optimizer="Adam",
            optimizer_lr=settings.learning_rate,
            smooth_grad_sigma=settings.smooth_grad_sigma,
            smooth_warp_sigma=settings.smooth_warp_sigma,
            progress_bar=False,
            **start,
        )
        with torch.enable_grad():
            registration.optimize()
        with torch.no_grad():
            coords = registration.get_warped_coordinates(fixed_batch, moving_batch)
            return pullback_from_coordinates(coords)


class FireantsGreedyMethod(_FireantsMethod):
    name = "fireants-greedy"
    algorithm = "greedy"
    description = (
        "FireANTs greedy diffeomorphic registration (compositive, Riemannian Adam, LNCC); "
        "needs fireants (pip install 'warpbench[fireants]')."
    )
    # The FireANTs quick-start's deformable settings, after its affine stage (AFFINE_STAGE).
    presets = {
        "default": {
            "scales": [4, 2, 1],
            "iterations": [200, 100, 25],
            "loss": "cc",  # local normalised cross-correlation
            "cc_kernel_size": 5,  # voxels per side
            "learning_rate": 0.5,
            "smooth_grad_sigma": 1.0,  # voxels; smooths each update
            "smooth_warp_sigma": 0.5,  # voxels; smooths the accumulated warp
            "affine_init": "auto",  # the quick-start's affine stage, unless pre-aligned
        },
    }


class FireantsSynMethod(_FireantsMethod):
    name = "fireants-syn"
    algorithm = "syn"
    description = (
        "FireANTs symmetric (SyN-style) diffeomorphic registration to a midpoint, LNCC; "
        "needs fireants (pip install 'warpbench[fireants]')."
    )
    # The SyN settings of FireANTs' LPBA40 evaluation script (which also starts from an affine
    # stage).
    presets = {
        "default": {
            "scales": [4, 2, 1],
            "iterations": [100, 75, 50],
            "loss": "cc",
            "cc_kernel_size": 5,
            "learning_rate": 0.5,
            "smooth_grad_sigma": 1.0,
            "smooth_warp_sigma": 0.5,
            "affine_init": "auto",  # the affine stage before it, unless pre-aligned
        },
    }
