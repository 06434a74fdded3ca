"""The spatial contract: pull-back sign, nearest-neighbour labels, composition, field checks."""

import numpy as np
import pytest
import torch

from warpbench.spatial import (
    InvalidField, compose, spacing_from_affine, validate_displacement, warp_image, warp_labels,
)


def ramp(shape=(10, 12, 8)):
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def constant_field(shape, shift):
    disp = np.zeros((3, *shape), np.float32)
    for axis, value in enumerate(shift):
        disp[axis] = value
    return disp


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_displacement_pulls_back_moved_x_is_moving_at_x_plus_u(axis):
    moving = ramp()
    shift = [0, 0, 0]
    shift[axis] = 2
    moved = warp_image(moving, constant_field(moving.shape, shift))
    inside = [slice(None)] * 3
    inside[axis] = slice(0, moving.shape[axis] - 2)
    source = [slice(None)] * 3
    source[axis] = slice(2, None)
    np.testing.assert_allclose(moved[tuple(inside)], moving[tuple(source)], atol=1e-3)


def test_labels_warp_by_nearest_neighbour_with_background_outside():
    labels = np.zeros((6, 6, 6), np.int16)
    labels[2:4, 2:4, 2:4] = 7
    moved = warp_labels(labels, constant_field(labels.shape, (1.4, 0, 0)))
    assert moved.dtype == np.int16 and set(np.unique(moved)) == {0, 7}
    assert (moved[1:3, 2:4, 2:4] == 7).all() and moved.sum() == labels.sum()
    off_grid = warp_labels(labels, constant_field(labels.shape, (10, 0, 0)))
    assert not off_grid.any()


def test_composition_equals_warping_twice():
    image = torch.as_tensor(ramp((8, 8, 8)))[None, None]
    rng = np.random.default_rng(0)
    outer = torch.as_tensor(rng.normal(0, 0.3, (1, 3, 8, 8, 8)), dtype=torch.float32)
    inner = torch.as_tensor(rng.normal(0, 0.3, (1, 3, 8, 8, 8)), dtype=torch.float32)
    composed = compose(outer, inner)
    shift_only = compose(torch.ones_like(outer), torch.full_like(inner, 0.5))
    assert torch.allclose(shift_only[:, :, 2:-2, 2:-2, 2:-2], torch.tensor(1.5))
    twice = warp_image(warp_image(image[0, 0], outer[0]), inner[0])
    once = warp_image(image[0, 0], composed[0])
    # Trilinear resampling twice smooths more than once: compare away from the border loosely.
    assert np.abs(once - twice)[2:-2, 2:-2, 2:-2].mean() < 1.0


def test_invalid_fields_are_refused_with_what_was_expected():
    shape = (4, 5, 6)
    with pytest.raises(InvalidField, match=r"expected shape \(3, 4, 5, 6\)"):
        validate_displacement(np.zeros((4, 5, 6, 3), np.float32), shape)
    with pytest.raises(InvalidField, match="NaN or infinite"):
        validate_displacement(np.full((3, *shape), np.inf, np.float32), shape)
    with pytest.raises(InvalidField, match="floating-point"):
        validate_displacement(np.zeros((3, *shape), np.int32), shape)
    with pytest.raises(InvalidField, match="numpy array or torch tensor"):
        validate_displacement([[0.0]], shape)
    good = validate_displacement(torch.zeros((3, *shape), dtype=torch.float64), shape)
    assert good.dtype == np.float32 and isinstance(good, np.ndarray)


def test_spacing_comes_from_the_affine_columns():
    affine = np.diag([1.5, 2.0, 0.8, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])  # axes swapped
    assert spacing_from_affine(affine) == pytest.approx((2.0, 1.5, 0.8))
