"""The synthetic anatomy: a brain-like template label map, and subjects made from it.

The template is drawn once from the dataset seed: a cerebrum whose wavy outer surface and
uneven cortical thickness come from smooth random fields, its cortex split into four lobes per
hemisphere, white matter inside, deep nuclei, a thin corpus callosum, curved ventricles, the
hippocampi, a brainstem and a cerebellum. Each subject is the template pulled back (nearest
neighbour) through its own random diffeomorphism, the exponential of a smooth stationary velocity
field integrated by scaling and squaring, so subjects differ as real anatomies do while keeping
their topology (no folding).

Coordinates are normalised to [-1, 1] along each array axis (axis 0 left -> right, 1 posterior ->
anterior, 2 inferior -> superior, as a RAS affine reads them), so the anatomy fills any grid shape.
Warps use scipy.ndimage rather than torch: generation is many small operations, for which torch's
thread pool costs more than the work on a busy machine (10x slower measured on 2 shared cores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates, zoom

#: Velocity field size, as a fraction of the smallest half-extent of the grid (so about 5 voxels
#: on a 48-voxel axis), and its smoothness, as a fraction of the smallest grid dimension.
DEFORMATION_AMPLITUDE = 0.22
DEFORMATION_SMOOTHNESS = 0.15
SQUARING_STEPS = 6


@dataclass(frozen=True)
class Structure:
    """One labelled structure and the tissue class whose intensity it has."""

    value: int
    name: str
    tissue: str  # "csf", "grey", "deep_grey" or "white"


STRUCTURES = (
    Structure(1, "cortex_frontal_left", "grey"),
    Structure(2, "cortex_frontal_right", "grey"),
    Structure(3, "cortex_parietal_left", "grey"),
    Structure(4, "cortex_parietal_right", "grey"),
    Structure(5, "cortex_temporal_left", "grey"),
    Structure(6, "cortex_temporal_right", "grey"),
    Structure(7, "cortex_occipital_left", "grey"),
    Structure(8, "cortex_occipital_right", "grey"),
    Structure(9, "white_matter_left", "white"),
    Structure(10, "white_matter_right", "white"),
    Structure(11, "lateral_ventricle_left", "csf"),
    Structure(12, "lateral_ventricle_right", "csf"),
    Structure(13, "third_ventricle", "csf"),
    Structure(14, "thalamus_left", "deep_grey"),
    Structure(15, "thalamus_right", "deep_grey"),
    Structure(16, "putamen_left", "deep_grey"),
    Structure(17, "putamen_right", "deep_grey"),
    Structure(18, "hippocampus_left", "grey"),
    Structure(19, "hippocampus_right", "grey"),
    Structure(20, "corpus_callosum", "white"),
    Structure(21, "brainstem", "white"),
    Structure(22, "cerebellum", "grey"),
)


def normalised_coords(shape) -> np.ndarray:
    """Voxel centres mapped to [-1, 1] along each axis, shape (3, D, H, W)."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return field / max(field.std(), 1e-12)


def _ellipsoid_radius(p: np.ndarray, centre, semi_axes) -> np.ndarray:
    """The ellipsoidal radius of every point: < 1 inside the ellipsoid."""
    c = np.asarray(centre, dtype=float).reshape(3, 1, 1, 1)
    r = np.asarray(semi_axes, dtype=float).reshape(3, 1, 1, 1)
    return np.sqrt((((p - c) / r) ** 2).sum(0))


def _near_curve(p: np.ndarray, points: np.ndarray, radius: float, dims=(0, 1, 2)) -> np.ndarray:
    """Voxels within ``radius`` of a densely sampled curve (``points``: (N, 3)), measuring distance
    only along ``dims`` (so a curve in the y-z plane can sweep a plate along x)."""
    dims = list(dims)
    box = [slice(None)] * 3  # only the curve's bounding box can be near it
    for d in dims:
        axis = np.moveaxis(p[d], d, 0)[:, 0, 0]
        low, high = points[:, d].min() - radius, points[:, d].max() + radius
        box[d] = slice(np.searchsorted(axis, low), np.searchsorted(axis, high, side="right"))
    local = p[(dims, *box)]
    nearest = np.full(local.shape[1:], np.inf)
    for point in points:
        nearest = np.minimum(nearest, ((local - point[dims].reshape(-1, 1, 1, 1)) ** 2).sum(0))
    near = np.zeros(p.shape[1:], dtype=bool)
    near[tuple(box)] = nearest < radius**2
    return near


def _arc(centre, radius_y: float, radius_z: float, degrees: tuple[float, float], n: int = 48):
    """Points of an elliptic arc in the y-z plane at x = centre[0]."""
    t = np.deg2rad(np.linspace(*degrees, n))
    x = np.full(n, centre[0])
    return np.stack([x, centre[1] + radius_y * np.cos(t), centre[2] + radius_z * np.sin(t)], 1)


def _segment(start, end, n: int = 32) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * np.asarray(start, dtype=float) + t * np.asarray(end, dtype=float)


def make_template(shape, rng: np.random.Generator) -> np.ndarray:
    """The template label map (int16, ``shape``) drawn from ``rng``.

    Structures are painted in order, later ones over earlier ones: the cerebrum first, then the
    deep structures inside it. Centres and sizes get a few percent of random jitter.
    """
    p = normalised_coords(shape)
    x, y, z = p
    smallest = min(shape)

    def jit(*values, scale=0.02):
        return [v + rng.normal(0.0, scale) for v in values]

    def size(*values):
        factor = 1.0 + rng.normal(0.0, 0.04)
        return [v * factor for v in values]

    labels = np.zeros(shape, dtype=np.int16)
    labels[_ellipsoid_radius(p, jit(0.0, -0.5, -0.55), size(0.45, 0.3, 0.25)) < 1] = 22

    # Cerebrum: a wavy outer surface and a white-matter boundary with higher-frequency ripples, so
    # the cortical shell varies in thickness like gyri; lobes split at perturbed planes.
    rho = _ellipsoid_radius(p, jit(0.0, 0.02, 0.12), size(0.8, 0.82, 0.72))
    outer = rho * (1.0 + 0.03 * smooth_field(rng, shape, 0.1 * smallest))
    inner = rho * (1.0 + 0.06 * smooth_field(rng, shape, 0.05 * smallest))
    right = (x + 0.03 * smooth_field(rng, shape, 0.2 * smallest)) > 0
    boundary = smooth_field(rng, shape, 0.15 * smallest)
    frontal = y > 0.2 + 0.06 * boundary
    occipital = y < -0.5 + 0.06 * boundary
    temporal = ~frontal & ~occipital & (z < -0.15 + 0.05 * boundary)
    lobe = np.select([frontal, temporal, occipital], [1, 5, 7], default=3)
    cerebrum = outer < 1.0
    labels[cerebrum] = (lobe + right)[cerebrum]
    white = inner < 0.78
    labels[white] = (9 + right)[white]

    # Deep structures, mirrored left/right.
    callosum = _arc(jit(0.0, -0.05, 0.02), 0.38, 0.3, (15, 165))
    labels[_near_curve(p, callosum, 0.05, dims=(1, 2)) & (np.abs(x) < 0.3)] = 20
    for side, sign in ((0, -1.0), (1, 1.0)):
        ventricle = _arc(jit(sign * 0.13, -0.05, -0.02), 0.3, 0.2, (10, 170))
        labels[_near_curve(p, ventricle, 0.07)] = 11 + side
        thalamus = _ellipsoid_radius(p, jit(sign * 0.16, -0.12, -0.04), size(0.12, 0.2, 0.14))
        labels[thalamus < 1] = 14 + side
        putamen = _ellipsoid_radius(p, jit(sign * 0.34, 0.1, -0.02), size(0.09, 0.22, 0.15))
        labels[putamen < 1] = 16 + side
        hippocampus = _segment(jit(sign * 0.38, 0.0, -0.38), jit(sign * 0.3, -0.38, -0.18))
        labels[_near_curve(p, hippocampus, 0.085)] = 18 + side
    third = (np.abs(x) < 0.045) & (y > -0.25) & (y < 0.18) & (z > -0.22) & (z < 0.08)
    labels[third] = 13
    labels[_near_curve(p, _segment(jit(0.0, -0.2, -0.12), (0.0, -0.3, -0.95)), 0.13)] = 21
    return labels


def _compose_with_itself(disp: np.ndarray) -> np.ndarray:
    """The displacement of ``phi o phi`` for ``phi(x) = x + disp(x)``: linear interpolation, values
    beyond the border clamped (as :func:`warpbench.spatial.compose` does)."""
    coords = np.indices(disp.shape[1:], dtype=disp.dtype) + disp
    return disp + np.stack([map_coordinates(c, coords, order=1, mode="nearest") for c in disp])


def random_diffeomorphism(shape, rng: np.random.Generator) -> np.ndarray:
    """A pull-back displacement (3, D, H, W) in voxels: the exponential of a smooth stationary
    velocity field, by scaling and squaring.

    The field is smooth over several voxels, so it is integrated on a grid of half the resolution
    and upsampled linearly at the end.
    """
    coarse = tuple((n + 1) // 2 for n in shape)
    # Full-grid voxels per coarse voxel along each axis (first and last voxel centres aligned).
    step = np.array([(n - 1) / (m - 1) for n, m in zip(shape, coarse)]).reshape(3, 1, 1, 1)
    sigma = DEFORMATION_SMOOTHNESS * min(shape) / 2
    velocity = np.stack([smooth_field(rng, coarse, sigma) for _ in range(3)])
    peak = np.sqrt((velocity**2).sum(0)).max()
    velocity *= DEFORMATION_AMPLITUDE * (min(shape) - 1) / 2 / peak  # in full-grid voxels
    disp = velocity / step / 2**SQUARING_STEPS
    for _ in range(SQUARING_STEPS):
        disp = _compose_with_itself(disp)
    factors = [n / m for n, m in zip(shape, coarse)]
    return np.stack([zoom(c * s, factors, order=1) for c, s in zip(disp, step[:, 0, 0, 0])])


def make_subject_labels(template: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One subject's label map: the template pulled back through its own random diffeomorphism
    (nearest neighbour, background outside the grid)."""
    coords = np.indices(template.shape) + random_diffeomorphism(template.shape, rng)
    return map_coordinates(template, coords, order=0, mode="constant", cval=0)
