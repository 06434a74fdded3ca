"""Scores: hand-worked cases, and agreement with independent references (SimpleITK's overlap
filter for Dice, a k-d tree over surface points for HD95, analytic Jacobians)."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from warpbench.metrics import (
    dice,
    folding_percent,
    hd95,
    jacobian_determinant,
    score_pair,
    sdlogj,
)
from warpbench.spatial import identity_grid


def _grid(shape) -> np.ndarray:
    return identity_grid(shape).numpy()


# ---------------------------------------------------------------- Dice


def test_dice_hand_computed():
    fixed = np.array([[[1, 1, 2, 0], [1, 3, 2, 7]]])
    moved = np.array([[[1, 2, 2, 0], [1, 1, 0, 5]]])
    # label 1: fixed {(0,0),(0,1),(1,0)}, moved {(0,0),(1,0),(1,1)}, overlap 2 -> 2*2/(3+3) = 2/3
    # label 2: fixed {(0,2),(1,2)}, moved {(0,1),(0,2)}, overlap 1 -> 2*1/(2+2) = 1/2
    # label 3: only in fixed -> 0; label 4: in neither -> NaN; 5 and 7 are not evaluated.
    scores = dice(fixed, moved, [2, 1, 3, 4, 1])
    np.testing.assert_allclose(scores, [0.5, 2 / 3, 0.0, np.nan, 2 / 3])


def test_negative_values_are_not_background():
    fixed = np.array([[[0, 0, -1, 3]]])
    moved = np.array([[[0, -1, -1, 3]]])
    # label 0: fixed {0, 1}, moved {0}, overlap 1 -> 2*1/(2+1) = 2/3; -1 is some other label.
    np.testing.assert_allclose(dice(fixed, moved, [0]), [2 / 3])


def test_dice_accepts_tensors_and_float_label_maps():
    fixed = np.array([[[1, 1, 2, 0], [1, 3, 2, 7]]])
    moved = np.array([[[1, 2, 2, 0], [1, 1, 0, 5]]])
    expected = dice(fixed, moved, [1, 2, 3])
    np.testing.assert_allclose(dice(torch.from_numpy(fixed), torch.from_numpy(moved), [1, 2, 3]), expected)
    np.testing.assert_allclose(dice(fixed.astype(np.float64), moved.astype(np.float32), [1, 2, 3]), expected)


def _sitk_dice(fixed: np.ndarray, moved: np.ndarray, label: int) -> float:
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.GetImageFromArray(fixed), sitk.GetImageFromArray(moved))
    return overlap.GetDiceCoefficient(label)


def test_dice_matches_simpleitk_on_noncontiguous_labels():
    rng = np.random.default_rng(0)
    # FreeSurfer-like values, one above every evaluated label and one negative.
    values = np.array([0, 2, 3, 17, 41, 1024, 2035, 5000, -1], dtype=np.int32)
    fixed = rng.choice(values, size=(20, 24, 28), p=[0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    moved = fixed.copy()
    changed = rng.random(fixed.shape) < 0.3
    moved[changed] = rng.choice(values, size=int(changed.sum()))
    labels = [2, 3, 17, 41, 1024, 2035]
    expected = [_sitk_dice(fixed, moved, label) for label in labels]
    np.testing.assert_allclose(dice(fixed, moved, labels), expected, rtol=1e-12)


# ---------------------------------------------------------------- HD95


def test_hd95_shifted_cubes_with_anisotropic_spacing():
    fixed = np.zeros((16, 16, 16), dtype=np.int16)
    moved = np.zeros_like(fixed)
    fixed[4:10, 4:10, 4:10] = 1
    moved[6:12, 4:10, 4:10] = 1  # the same cube, 2 voxels further along axis 0
    # Directed fixed -> moved over the 152 surface voxels of a 6^3 cube, spacing (2, 1, 0.5):
    # 80 lie on the moved surface too (0 mm), 16 in the far face's interior are <= 1 mm from the
    # moved cube's sides, the 20-voxel ring at x0=5 is 1 voxel = 2 mm from x0=6, and the 36-voxel
    # face x0=4 is 2 voxels = 4 mm away. The 95th percentile (rank 143.45 of 0..151) falls among
    # the 36 largest (ranks 116..151): 4 mm; moved -> fixed is the mirror image.
    # Spacing applied along the wrong axis would give at most 1 mm.
    assert hd95(fixed, moved, [1], spacing=(2.0, 1.0, 0.5))[0] == pytest.approx(4.0)


def test_hd95_identical_absent_and_lost_labels():
    fixed = np.zeros((16, 12, 8), dtype=np.int32)
    fixed[2:9, 3:7, 1:5] = 3
    fixed[10:14, 0:12, 2:8] = 2035
    moved = fixed.copy()
    moved[moved == 2035] = 0
    spacing = (2.0, 1.0, 0.5)
    scores = hd95(fixed, moved, [3, 8, 2035], spacing)
    assert scores[0] == 0.0
    assert np.isnan(scores[1])
    # Lost in the moved map: the diagonal of the field of view in mm.
    assert scores[2] == pytest.approx(np.linalg.norm([16 * 2.0, 12 * 1.0, 8 * 0.5]))


def _brute_force_hd95(mask_a: np.ndarray, mask_b: np.ndarray, spacing) -> float:
    """Surface voxels by explicit face-neighbour tests, distances by a k-d tree in mm."""

    def surface_points(mask):
        padded = np.pad(mask, 1, constant_values=False)
        inner = (slice(1, -1),) * 3
        exposed = np.zeros_like(mask)
        for axis in range(3):
            for step in (-1, 1):
                exposed |= ~np.roll(padded, step, axis=axis)[inner]
        return np.argwhere(mask & exposed) * np.asarray(spacing)

    points_a, points_b = surface_points(mask_a), surface_points(mask_b)
    a_to_b = cKDTree(points_b).query(points_a)[0]
    b_to_a = cKDTree(points_a).query(points_b)[0]
    return max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))


def _blobs(rng, shape, values) -> np.ndarray:
    """A label map of smooth random blobs that touch the grid border."""
    noise = ndimage.gaussian_filter(rng.standard_normal((len(values), *shape)), sigma=(0, 3, 3, 3))
    strongest = noise.argmax(axis=0)
    labels = np.asarray(values)[strongest]
    labels[noise.max(axis=0) < 0.02] = 0
    return labels


def test_hd95_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(1)
    values = [5, 9, 300, 2035]
    shape = (30, 26, 22)
    fixed, moved = _blobs(rng, shape, values), _blobs(rng, shape, values)
    spacing = (1.5, 0.8, 2.2)
    expected = [_brute_force_hd95(fixed == v, moved == v, spacing) for v in values]
    np.testing.assert_allclose(hd95(fixed, moved, values, spacing), expected, rtol=1e-9)


# ---------------------------------------------------------------- Jacobian


def test_identity_field_is_regular():
    disp = np.zeros((3, 10, 12, 14), dtype=np.float32)
    np.testing.assert_array_equal(jacobian_determinant(disp), 1.0)
    assert folding_percent(disp) == 0.0
    assert sdlogj(disp) == 0.0


def test_uniform_scaling_has_constant_determinant():
    disp = 0.1 * _grid((10, 12, 14))  # x -> 1.1 x
    det = jacobian_determinant(disp)
    np.testing.assert_allclose(det[1:-1, 1:-1, 1:-1], 1.1**3, rtol=1e-5)
    assert sdlogj(disp) == pytest.approx(0.0, abs=1e-6)


def test_reversing_map_folds_everywhere():
    disp = np.zeros((3, 10, 12, 14), dtype=np.float32)
    disp[0] = -2.0 * _grid((10, 12, 14))[0]  # x0 -> -x0
    det = jacobian_determinant(disp)
    np.testing.assert_allclose(det[1:-1, 1:-1, 1:-1], -1.0)
    assert folding_percent(disp) == 100.0


def test_determinant_of_smooth_field_matches_analytic():
    n, amplitude = 32, 3.0
    w = 2 * np.pi / n
    x = _grid((n, n, n))
    # u = a (sin w x1, sin w x2, sin w x0) has det(I + grad u) = 1 + (a w)^3 cos w x0 cos w x1 cos w x2.
    disp = amplitude * np.sin(w * x[[1, 2, 0]])
    analytic = 1 + (amplitude * w) ** 3 * np.prod(np.cos(w * x), axis=0)
    inner = (slice(1, -1),) * 3
    # Central differences scale each derivative by sin(w)/w, about 0.6% here.
    np.testing.assert_allclose(jacobian_determinant(disp)[inner], analytic[inner], atol=0.01)
    # Learn2Reg's definition: std of log(det + 3) over the grid less a 2-voxel border.
    expected = np.log(analytic[2:-2, 2:-2, 2:-2] + 3).std()
    assert sdlogj(disp) == pytest.approx(expected, rel=0.03)


def test_sdlogj_ignores_the_outer_border():
    rng = np.random.default_rng(2)
    x = _grid((16, 16, 16))
    disp = 0.5 * np.sin(0.3 * x[[1, 2, 0]]).astype(np.float32)
    noisy = disp.copy()
    for axis in (1, 2, 3):
        for index in (0, -1):
            face = [slice(None)] * 4
            face[axis] = index
            noisy[tuple(face)] = 10 * rng.standard_normal(noisy[tuple(face)].shape)
    assert sdlogj(noisy) == pytest.approx(sdlogj(disp), rel=1e-6)


# ---------------------------------------------------------------- score_pair


def test_score_pair_of_a_perfect_registration():
    fixed = np.zeros((12, 12, 12), dtype=np.int16)
    fixed[2:6, 2:10, 3:9] = 4
    fixed[7:11, 1:8, 2:10] = 9
    scores = score_pair(fixed, fixed.copy(), [4, 9, 12], np.zeros((3, 12, 12, 12), np.float32), (1, 1, 1))
    np.testing.assert_array_equal(scores["dice"], [1.0, 1.0, np.nan])
    np.testing.assert_array_equal(scores["hd95"], [0.0, 0.0, np.nan])
    assert scores["mean_dice"] == 1.0  # the label in neither map is left out, not counted
    assert scores["mean_hd95"] == 0.0
    assert scores["sdlogj"] == 0.0
    assert scores["folding_percent"] == 0.0
