"""MI(i;s): how much a dataset's image intensity tells about its label map.

It bounds what intensity-driven registration can recover of the labels, and so tracks the Dice a
dataset allows. The estimator, which the documentation cites:

- mask: the voxels where the label is > 0 or the intensity is > 0, so zero padding around the
  head is left out while background tissue with signal stays in;
- intensity: per volume, scaled to [0, 1] by the 1st and 99th percentiles of its masked voxels
  (values beyond them clipped), then quantised into ``bins`` equal-width bins (32 by default);
- one joint histogram of (intensity bin, label value) pooled over all subjects given;
- plug-in estimate in bits, ``MI = sum p(i,s) log2(p(i,s) / (p(i) p(s)))``, with the label entropy
  ``H(s)`` and the normalised ``NMI = MI / H(s)`` (1 when intensity determines the label).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from warpbench.spatial import as_numpy


def _intensity_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each masked intensity after the 1st-99th percentile scaling to [0, 1]."""
    low, high = np.percentile(values, [1, 99])
    if high <= low:  # a flat image carries no information about the labels
        return np.zeros(values.shape, dtype=np.intp)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    return np.minimum((scaled * bins).astype(np.intp), bins - 1)


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def mutual_information(images: Iterable, label_maps: Iterable, bins: int = 32) -> dict:
    """MI(i;s) of a dataset from its subjects' images and label maps (same order, same shapes).

    Returns ``{"mi_bits", "label_entropy_bits", "nmi", "bins", "voxels"}``, ``voxels`` being the
    number of masked voxels pooled.
    """
    label_values = np.empty(0, dtype=np.int64)
    joint = np.zeros((bins, 0), dtype=np.int64)
    for image, label_map in zip(images, label_maps, strict=True):
        image, label_map = as_numpy(image), as_numpy(label_map)
        mask = (label_map > 0) | (image > 0)
        if not mask.any():
            continue
        intensity = _intensity_bins(image[mask].astype(np.float64), bins)
        values, label_index = np.unique(label_map[mask].astype(np.int64), return_inverse=True)
        counts = np.bincount(
            intensity * values.size + label_index, minlength=bins * values.size
        ).reshape(bins, values.size)
        # Pool with the subjects so far on the union of their label values.
        merged = np.union1d(label_values, values)
        pooled = np.zeros((bins, merged.size), dtype=np.int64)
        pooled[:, np.searchsorted(merged, label_values)] = joint
        pooled[:, np.searchsorted(merged, values)] += counts
        label_values, joint = merged, pooled

    voxels = int(joint.sum())
    if voxels == 0:
        raise ValueError("no masked voxels: every image and label map is all zero")
    p = joint / voxels
    p_intensity, p_label = p.sum(axis=1), p.sum(axis=0)
    seen = p > 0
    mi = float(np.sum(p[seen] * np.log2(p[seen] / np.outer(p_intensity, p_label)[seen])))
    label_entropy = _entropy_bits(p_label)
    return {
        "mi_bits": mi,
        "label_entropy_bits": label_entropy,
        "nmi": mi / label_entropy if label_entropy > 0 else float("nan"),
        "bins": bins,
        "voxels": voxels,
    }
