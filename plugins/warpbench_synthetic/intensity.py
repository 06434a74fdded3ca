"""From a label map to an image: how much the intensities say about the labels, then acquisition.

The intensity model decides what the image can tell apart: ``distinct`` gives every label its own
mean, ``grouped`` gives each tissue class one mean (as cortical parcels share the grey-matter
intensity in a real T1 image, so no intensity tells one parcel from the next). Acquisition then
blurs, multiplies by a smooth bias field, adds noise and rescales the volume to [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from warpbench_synthetic.anatomy import Structure, smooth_field

INTENSITY_MODELS = ("distinct", "grouped")
CONTRASTS = ("t1", "inverted")

#: Tissue means of a T1-like image (background is 0): CSF dark, white matter bright.
TISSUE_T1 = {"csf": 0.25, "grey": 0.55, "deep_grey": 0.7, "white": 0.9}
#: Distinct label means are spread evenly over this range, in T1 tissue order.
DISTINCT_RANGE = (0.2, 1.0)
#: Inverted contrast maps a tissue mean m to INVERSION - m, so both contrasts span the same range
#: and the background stays darkest.
INVERSION = 1.2
#: Smoothness of the bias field, as a fraction of the smallest grid dimension.
BIAS_SMOOTHNESS = 0.3


def label_means(structures: tuple[Structure, ...], intensity: str, contrast: str) -> dict[int, float]:
    """Mean intensity of every label value under an intensity model and contrast."""
    if intensity == "grouped":
        means = {s.value: TISSUE_T1[s.tissue] for s in structures}
    else:
        ordered = sorted(structures, key=lambda s: (TISSUE_T1[s.tissue], s.value))
        levels = np.linspace(*DISTINCT_RANGE, len(ordered))
        means = {s.value: float(level) for s, level in zip(ordered, levels)}
    if contrast == "inverted":
        means = {value: INVERSION - m for value, m in means.items()}
    return means


def acquire(
    labels: np.ndarray,
    means: dict[int, float],
    rng: np.random.Generator,
    noise: float,
    bias: float,
    blur: float,
) -> np.ndarray:
    """A float32 image in [0, 1] of ``labels``.

    ``blur`` is the Gaussian sigma in voxels; ``bias`` the half-range of the log bias field (the
    image is multiplied by a smooth factor between exp(-bias) and exp(bias)); ``noise`` the
    Gaussian noise std relative to the intensity range of the noise-free image.
    """
    lookup = np.zeros(int(labels.max()) + 1)
    for value, mean in means.items():
        if value < lookup.size:
            lookup[value] = mean
    image = lookup[labels]
    if blur > 0:
        image = gaussian_filter(image, blur)
    if bias > 0:
        field = smooth_field(rng, labels.shape, BIAS_SMOOTHNESS * min(labels.shape))
        image = image * np.exp(bias * field / np.abs(field).max())
    if noise > 0:
        image = image + rng.normal(0.0, noise * np.ptp(image), labels.shape)
    low, high = image.min(), image.max()
    return ((image - low) / max(high - low, 1e-12)).astype(np.float32)
