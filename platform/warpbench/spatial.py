"""The spatial contract every plugin relies on, and the one warp everything is scored with.

A volume is a float32 array of shape (D, H, W) in the axis order of its file, with a 4x4 affine.
A displacement field ``u`` is float32, shape (3, D, H, W), in voxels of the fixed grid, channel k
along axis k, and pulls back: ``moved(x) = moving(x + u(x))`` (the Learn2Reg convention; its files
store it channels-last).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (the column norms of the affine)."""
    affine = np.asarray(affine, dtype=np.float64)
    return tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))


def identity_grid(shape, device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates of a grid, shape (3, D, H, W)."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _sampling_grid(disp: torch.Tensor) -> torch.Tensor:
    """Turn a batch of voxel displacements (N, 3, D, H, W) into grid_sample's (N, D, H, W, 3)
    normalised (x=W, y=H, z=D) coordinates, with align_corners=True."""
    shape = disp.shape[2:]
    coords = identity_grid(shape, disp.device, disp.dtype).unsqueeze(0) + disp
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in shape], device=disp.device, dtype=disp.dtype)
    coords = coords * scale.view(1, 3, 1, 1, 1) - 1.0
    return coords.flip(1).permute(0, 2, 3, 4, 1)


def warp_tensor(
    volume: torch.Tensor, disp: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border"
) -> torch.Tensor:
    """Pull ``volume`` (N, C, D, H, W) back through ``disp`` (N, 3, D, H, W); differentiable.

    ``mode`` is grid_sample's: "bilinear" (trilinear in 3-D) or "nearest".
    """
    return F.grid_sample(
        volume, _sampling_grid(disp), mode=mode, padding_mode=padding_mode, align_corners=True
    )


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The field of ``x -> phi_outer(phi_inner(x))``, i.e. ``inner + outer(x + inner(x))``.

    Both are (N, 3, D, H, W) voxel displacements; warping by the result equals warping by
    ``outer`` first and then by ``inner``.
    """
    return inner + warp_tensor(outer, inner, padding_mode="border")


def as_tensor(array, device=None, dtype=torch.float32) -> torch.Tensor:
    """A torch tensor on ``device`` from a numpy array or tensor, without copying when possible."""
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(array), device=device, dtype=dtype)


def as_numpy(array) -> np.ndarray:
    """A numpy array from a numpy array or a tensor on any device."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def warp_labels(labels, disp) -> np.ndarray:
    """Warp an integer label map (D, H, W) by ``disp`` (3, D, H, W) with nearest neighbour, as the
    Learn2Reg evaluation does; outside the grid is background (0)."""
    labels = as_numpy(labels)
    disp_t = as_tensor(disp, dtype=torch.float64).unsqueeze(0)
    # float64 keeps label values up to 2**53 exact through the sampler.
    moved = warp_tensor(
        as_tensor(labels, dtype=torch.float64)[None, None], disp_t, mode="nearest", padding_mode="zeros"
    )
    return moved[0, 0].numpy().astype(labels.dtype)


def warp_image(image, disp) -> np.ndarray:
    """Warp an intensity image (D, H, W) by ``disp`` (3, D, H, W) with trilinear interpolation."""
    moved = warp_tensor(as_tensor(image)[None, None], as_tensor(disp).unsqueeze(0))
    return moved[0, 0].numpy()


class InvalidField(ValueError):
    """A method returned something that is not a valid displacement field for the pair."""


def validate_displacement(disp, shape) -> np.ndarray:
    """Check a method's output against the contract and return it as float32 numpy.

    Raises :class:`InvalidField` with what was expected and what came back.
    """
    if not isinstance(disp, (np.ndarray, torch.Tensor)):
        raise InvalidField(f"expected a numpy array or torch tensor, got {type(disp).__name__}")
    expected = (3, *tuple(shape))
    if tuple(disp.shape) != expected:
        raise InvalidField(f"expected shape {expected} (3, D, H, W), got {tuple(disp.shape)}")
    disp = as_numpy(disp)
    if not np.issubdtype(disp.dtype, np.floating):
        raise InvalidField(f"expected a floating-point field, got dtype {disp.dtype}")
    finite = np.isfinite(disp)
    if not finite.all():
        bad = int(disp.size - finite.sum())
        raise InvalidField(f"{bad} of {disp.size} values are NaN or infinite")
    return disp.astype(np.float32, copy=False)
