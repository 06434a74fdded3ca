"""The scores of one registered pair: label overlap, surface distance and field regularity.

Every function takes numpy arrays or torch tensors (on any device) and returns numpy values.
Label maps are integer-valued (D, H, W) arrays, float ones included (nibabel's ``get_fdata``);
a displacement is the spatial contract's (3, D, H, W) voxel field (see :mod:`warpbench.spatial`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from warpbench.spatial import as_numpy

# Faces only: a voxel is on the surface when one of its 6 face neighbours is outside the mask.
_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def _label_table(labels: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct evaluated labels, where each entry of ``labels`` sits among them, and a lookup
    table sending label value ``values[i]`` to index ``i + 1`` and every other value to 0.

    The table's last slot is a sentinel (0) that values outside 0..max(labels) are clamped onto, so
    it stays as small as the largest evaluated label whatever else the volumes hold.
    """
    values, inverse = np.unique(np.fromiter(labels, dtype=np.int64), return_inverse=True)
    if values.size and values[0] < 0:
        raise ValueError(f"labels must be non-negative, got {values[0]}")
    table = np.zeros(int(values[-1]) + 2 if values.size else 1, dtype=np.int32)
    table[values] = np.arange(1, values.size + 1)
    return values, inverse, table


def _indexed(volume, table: np.ndarray) -> np.ndarray:
    """Each voxel's entry in ``table`` (see :func:`_label_table`): its label's index 1..K, or a
    multiple of it, and 0 for any value not evaluated; one pass over the volume."""
    keys = as_numpy(volume).astype(np.intp)
    # -1 selects the sentinel slot too, so negative values also map to 0.
    np.clip(keys, -1, table.size - 1, out=keys)
    return table[keys]


def dice(fixed_labels, moved_labels, labels: Iterable[int]) -> np.ndarray:
    """Dice overlap per entry of ``labels``: 2|A∩B| / (|A| + |B|).

    NaN where the label is in neither volume (so a mean leaves it out rather than counting it as a
    perfect 1); 0 where it is in only one. All labels come from one confusion matrix, counted in a
    single ``np.bincount`` over the joint label index, instead of one full-volume pass per label.
    """
    values, inverse, table = _label_table(labels)
    n = values.size + 1
    # Joint index fixed * n + moved, straight from the two lookups.
    joint = _indexed(fixed_labels, table * n)
    joint += _indexed(moved_labels, table)
    confusion = np.bincount(joint.ravel(), minlength=n * n).reshape(n, n)
    overlap = np.diag(confusion)[1:]
    sizes = confusion.sum(axis=1)[1:] + confusion.sum(axis=0)[1:]
    with np.errstate(invalid="ignore"):
        scores = 2.0 * overlap / sizes
    return scores[inverse]


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it; the array border counts as outside."""
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_NEIGHBOURS, border_value=0)


def _mask_hd95(mask_a: np.ndarray, mask_b: np.ndarray, spacing: np.ndarray) -> float:
    """HD95 of two non-empty masks: the larger of the two directed 95th percentiles of the distance
    from one surface's voxels to the other surface, exact Euclidean distances in mm."""
    surface_a, surface_b = _surface(mask_a), _surface(mask_b)
    a_to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
    b_to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
    return float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))


def hd95(
    fixed_labels, moved_labels, labels: Iterable[int], spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """95th-percentile symmetric surface distance in mm per entry of ``labels``.

    As Learn2Reg (DeepMind's surface-distance) and MONAI define it: the max of the 95th percentile
    of distances from the fixed surface to the moved one and of those from the moved to the fixed.
    A surface voxel is a voxel of the label with a face neighbour outside it (the grid border counts
    as outside), and each surface voxel counts once (no surfel-area weighting). ``spacing`` is the
    voxel size along each array axis.

    NaN where the label is in neither volume. Where it is in only one, the distance is undefined
    (infinite); we return the diagonal of the field of view, ``norm(shape * spacing)``, an upper
    bound on any real HD95, so means stay finite and still penalise a lost structure.

    Each label is scored on a crop around the union of its bounding boxes in both volumes (found
    for all labels in one ``find_objects`` pass): both surfaces lie inside it, so the distances are
    those of the full grid, and many small structures cost little.
    """
    values, inverse, table = _label_table(labels)
    fixed, moved = _indexed(fixed_labels, table), _indexed(moved_labels, table)
    spacing = np.asarray(spacing, dtype=np.float64)
    lost = float(np.linalg.norm(np.asarray(fixed.shape) * spacing))
    scores = np.full(values.size, np.nan)
    boxes = zip(
        ndimage.find_objects(fixed, max_label=values.size),
        ndimage.find_objects(moved, max_label=values.size),
    )
    for index, (box_fixed, box_moved) in enumerate(boxes, start=1):
        if box_fixed is None and box_moved is None:
            continue
        if box_fixed is None or box_moved is None:
            scores[index - 1] = lost
            continue
        # One voxel of margin keeps every surface voxel's outside neighbour inside the crop.
        crop = tuple(
            slice(max(min(f.start, m.start) - 1, 0), min(max(f.stop, m.stop) + 1, size))
            for f, m, size in zip(box_fixed, box_moved, fixed.shape)
        )
        scores[index - 1] = _mask_hd95(fixed[crop] == index, moved[crop] == index, spacing)
    return scores[inverse]


def jacobian_determinant(disp) -> np.ndarray:
    """det(I + grad u) per voxel, shape (D, H, W): the local volume change of ``x -> x + u(x)``.

    Gradients are ``np.gradient``'s: central differences inside, one-sided at the grid border.
    """
    disp = as_numpy(disp)
    # jac[k][m] = d(x_k + u_k) / d x_m
    jac = [list(np.gradient(disp[k])) for k in range(3)]
    for k in range(3):
        jac[k][k] += 1.0
    return (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )


def _sdlogj_of(det: np.ndarray) -> float:
    interior = det[2:-2, 2:-2, 2:-2].astype(np.float64)
    return float(np.log(np.clip(interior + 3.0, 1e-9, 1e9)).std())


def sdlogj(disp) -> float:
    """Standard deviation of the log Jacobian determinant, exactly as Learn2Reg computes it.

    Learn2Reg's evaluation (github.com/MDL-UzL/L2R, ``evaluation/L2RTest/evaluation.py`` and its
    ``utils.jacobian_determinant``) takes central-difference Jacobians, crops a 2-voxel border,
    and reports ``std(log(clip(det + 3, 1e-9, 1e9)))``. The ``+ 3`` is theirs and kept so scores
    compare with the Learn2Reg leaderboards; near det = 1 it shrinks the value to about a quarter of
    ``std(log det)``. Inside the crop ``np.gradient`` equals their zero-padded central differences.
    """
    return _sdlogj_of(jacobian_determinant(disp))


def _folding_percent_of(det: np.ndarray) -> float:
    return float(100.0 * np.mean(det <= 0))


def folding_percent(disp) -> float:
    """Percentage of voxels of the whole grid whose Jacobian determinant is <= 0 (folded or
    degenerate), the usual definition; Learn2Reg's script counts after its ``+ 3`` and clip, which
    never leaves a value <= 0, so it is not followed here."""
    return _folding_percent_of(jacobian_determinant(disp))


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN, without a warning, when there are none."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def score_pair(fixed_labels, moved_labels, labels: Iterable[int], disp, spacing) -> dict:
    """All per-pair scores the runner records: per-label Dice and HD95 (mm) with their means over
    the labels present, SDlogJ and the folding percentage of ``disp``."""
    labels = list(labels)
    dice_scores = dice(fixed_labels, moved_labels, labels)
    hd95_scores = hd95(fixed_labels, moved_labels, labels, spacing)
    det = jacobian_determinant(disp)
    return {
        "dice": dice_scores,
        "hd95": hd95_scores,
        "mean_dice": _nanmean(dice_scores),
        "mean_hd95": _nanmean(hd95_scores),
        "sdlogj": _sdlogj_of(det),
        "folding_percent": _folding_percent_of(det),
    }
