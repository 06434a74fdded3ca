"""ANTs transforms as warpbench's voxel pull-back field.

ANTs maps points, not images: a forward transform list takes a point of the fixed image's
physical space to the point of the moving image that lands there, which is already a pull-back.
antsApplyTransforms composes the whole list (affine and warp) into one displacement field sampled
at the fixed grid's voxels, in physical units along the physical axes; the inverse of the grid's
direction-times-spacing matrix turns it into voxels along the array axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pullback_from_transforms(ants, fixed_image, transforms: list[str], folder: Path) -> np.ndarray:
    """The (3, D, H, W) float32 voxel displacement of ``transforms`` (a ``fwdtransforms`` list)
    on the grid of ``fixed_image`` (an ANTsImage); the composed field is written in ``folder``."""
    path = ants.apply_transforms(fixed_image, fixed_image, transforms,
                                 compose=str(Path(folder) / "composed_"))
    if path is None:
        raise RuntimeError(f"antsApplyTransforms wrote no composed field for {transforms}")
    field = ants.image_read(path)
    # ANTsImage arrays keep ITK's index order, so array axis k is the image's index axis k.
    physical = field.numpy().astype(np.float64)  # (D, H, W, 3)
    voxel_to_physical = np.asarray(field.direction) * np.asarray(field.spacing)[None, :]
    disp = np.einsum("ij,dhwj->idhw", np.linalg.inv(voxel_to_physical), physical)
    return disp.astype(np.float32)
