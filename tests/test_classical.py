"""The classical methods: the pull-back sign convention, recovery of a known smooth deformation
without folding, and a pair of identical images left alone."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import warpbench_classical
from warpbench.plugins import load_registry
from warpbench.spatial import as_numpy, compose, identity_grid, warp_labels, warp_tensor
from warpbench_classical import AffineMethod, GreedyMethod, IdentityMethod, SynMethod
from warpbench_classical.filters import box_mean, gaussian_blur
from warpbench_classical.losses import lncc_loss, mi_loss, mse_loss

CPU = torch.device("cpu")
SHAPE = (32, 36, 32)
SHIFT = 3  # voxels
BORDER = 8  # voxels left out when averaging a field, where the shifted image left the grid


def wave_image(shape, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A smooth texture filling the grid (a sum of plane waves with wavelengths of 10 to 16
    voxels in several directions), sampled at ``x - offset`` so a shifted copy is exact."""
    rng = np.random.default_rng(7)
    coords = as_numpy(identity_grid(shape)).astype(np.float64) - np.reshape(offset, (3, 1, 1, 1))
    image = np.zeros(shape)
    for _ in range(6):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        wavelength = rng.uniform(10, 16)
        phase = np.tensordot(direction, coords, axes=1) * 2 * math.pi / wavelength
        image += np.cos(phase + rng.uniform(0, 2 * math.pi))
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def nested_shapes(shape) -> tuple[np.ndarray, np.ndarray]:
    """A brain-like phantom: an outer ellipsoid holding an inner one and two small blobs, each a
    label with its own intensity, on a zero background."""
    centre = np.array(shape, dtype=float).reshape(3, 1, 1, 1) / 2
    coords = as_numpy(identity_grid(shape)).astype(np.float64) - centre
    labels = np.zeros(shape, dtype=np.int16)
    parts = [  # (label, centre offset, semi-axes in voxels)
        (1, (0, 0, 0), (12, 14, 12)),
        (2, (0, -2, 0), (6, 8, 5)),
        (3, (5, 7, 4), (3, 3, 3)),
        (4, (-5, 7, -4), (3, 2.5, 3.5)),
    ]
    for label, shift, axes in parts:
        r2 = sum(((coords[k] - shift[k]) / axes[k]) ** 2 for k in range(3))
        labels[r2 <= 1] = label
    intensity = np.array([0.0, 0.4, 0.8, 1.0, 0.6], dtype=np.float32)[labels]
    image = gaussian_blur(torch.from_numpy(intensity)[None, None], 0.7)[0, 0].numpy()
    return image, labels


def smooth_diffeomorphism(shape, max_displacement: float, seed: int) -> torch.Tensor:
    """A random smooth diffeomorphic displacement (1, 3, D, H, W): noise on a coarse grid of
    control points, upsampled and smoothed, as a stationary velocity integrated by scaling and
    squaring (so it is invertible whatever its size)."""
    control_spacing, squarings = 8, 6  # voxels between control points; 2**6 steps
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, *(n // control_spacing + 1 for n in shape), generator=generator)
    velocity = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)
    velocity = gaussian_blur(velocity, 2.0)
    velocity *= max_displacement / velocity.abs().max()
    disp = velocity / 2**squarings
    for _ in range(squarings):
        disp = compose(disp, disp)
    return disp


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the labels present in either map."""
    values = [v for v in np.union1d(np.unique(a), np.unique(b)) if v]
    overlaps = [2 * np.sum((a == v) & (b == v)) / (np.sum(a == v) + np.sum(b == v)) for v in values]
    return float(np.mean(overlaps))


def folding_percent(disp: np.ndarray) -> float:
    """Percentage of voxels where x + u(x) has a non-positive Jacobian determinant."""
    jacobian = np.stack([np.stack(np.gradient(disp[i]), 0) for i in range(3)], 0)
    jacobian += np.eye(3).reshape(3, 3, 1, 1, 1)
    determinant = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    return 100.0 * float(np.mean(determinant <= 0))


def interior_mean(disp, axis: int) -> float:
    inner = as_numpy(disp)[axis, BORDER:-BORDER, BORDER:-BORDER, BORDER:-BORDER]
    return float(inner.mean())


def test_plugin_registers_the_classical_methods(monkeypatch):
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", "")
    registry = load_registry(extra_plugins=[warpbench_classical], strict=True)
    assert sorted(registry.methods) == ["affine", "demons", "greedy", "identity", "syn"]
    assert registry.methods["identity"].family == "baseline"
    for name in ("greedy", "syn", "demons"):
        assert set(registry.methods[name].presets) >= {"default", "fast", "literature"}


def test_identity_returns_zeros_of_the_right_shape():
    fixed = wave_image(SHAPE)
    disp = IdentityMethod().register(fixed, fixed, {}, CPU)
    assert disp.shape == (3, *SHAPE) and disp.dtype == torch.float32
    assert not disp.any()


@pytest.mark.parametrize("method", [AffineMethod(), GreedyMethod()], ids=lambda m: m.name)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_pull_back_sign_of_a_known_shift(method, axis):
    """moving(y) = fixed(y - s) means moved(x) = moving(x + u) equals fixed(x) for u = +s."""
    offset = [0.0, 0.0, 0.0]
    offset[axis] = SHIFT
    fixed, moving = wave_image(SHAPE), wave_image(SHAPE, offset)
    disp = method.register(fixed, moving, method.presets["default"], CPU)
    assert disp.shape == (3, *SHAPE) and disp.dtype == torch.float32
    for k in range(3):
        assert interior_mean(disp, k) == pytest.approx(offset[k], abs=0.3)


def test_greedy_recovers_a_known_smooth_deformation():
    image, labels = nested_shapes(SHAPE)
    truth = smooth_diffeomorphism(SHAPE, max_displacement=3.0, seed=1)
    moving = warp_tensor(torch.from_numpy(image)[None, None], truth)[0, 0].numpy()
    moving_labels = warp_labels(labels, truth[0])
    before = dice(moving_labels, labels)

    disp = GreedyMethod().register(image, moving, GreedyMethod.presets["default"], CPU)
    after = dice(warp_labels(moving_labels, disp), labels)
    assert before < 0.85
    assert after >= 0.9
    assert folding_percent(as_numpy(disp)) < 1.0


@pytest.mark.parametrize("method", [AffineMethod(), GreedyMethod()], ids=lambda m: m.name)
def test_identical_images_give_a_near_zero_field(method):
    image, _ = nested_shapes(SHAPE)
    disp = method.register(image, image, method.presets["default"], CPU)
    assert float(disp.abs().max()) < 0.05


def test_greedy_rejects_an_unknown_parameter():
    image = wave_image(SHAPE)
    with pytest.raises(ValueError, match="learning_rat"):
        GreedyMethod().register(image, image, {"learning_rat": 1.0}, CPU)


def test_box_mean_is_separable_cubic_average():
    volume = torch.rand(1, 2, 9, 10, 11, generator=torch.Generator().manual_seed(0))
    window = 3
    dense = F.avg_pool3d(volume, window, stride=1)
    assert torch.allclose(box_mean(volume, window)[:, :, 1:-1, 1:-1, 1:-1], dense, atol=1e-6)


def test_lncc_is_minus_one_for_a_linear_intensity_change():
    image = torch.from_numpy(wave_image(SHAPE))[None, None]
    assert float(lncc_loss(image, window=5)(2 * image + 1)) == pytest.approx(-1.0, abs=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_greedy_on_cuda_matches_cpu():
    offset = (SHIFT, 0.0, 0.0)
    fixed, moving = wave_image(SHAPE), wave_image(SHAPE, offset)
    disp = GreedyMethod().register(fixed, moving, GreedyMethod.presets["default"], torch.device("cuda"))
    assert disp.device.type == "cuda" and disp.dtype == torch.float32
    assert interior_mean(disp, 0) == pytest.approx(SHIFT, abs=0.3)


def shifted_copy(image: torch.Tensor, voxels: int) -> torch.Tensor:
    """``image`` (1, 1, D, H, W) translated by ``voxels`` along the first axis."""
    return torch.roll(image, voxels, dims=2)


def test_mi_is_lowest_at_alignment():
    image = torch.from_numpy(nested_shapes(SHAPE)[0])[None, None]
    loss = mi_loss(image, bins=32)
    values = [float(loss(shifted_copy(image, shift))) for shift in (0, 1, 2, 4)]
    assert values == sorted(values) and values[0] < values[1]


def test_mi_prefers_an_aligned_inverted_contrast_over_a_shifted_copy():
    """What MI adds over LNCC and MSE: a different intensity mapping, not only a linear one,
    scores as well as the original, while the right intensities in the wrong place do not."""
    image = torch.from_numpy(nested_shapes(SHAPE)[0])[None, None]
    remapped = (1.0 - image) ** 2  # inverted and non-linear
    loss = mi_loss(image, bins=32)
    assert float(loss(remapped)) == pytest.approx(float(loss(image)), abs=0.05)
    assert float(loss(remapped)) < float(loss(shifted_copy(image, 2)))
    assert float(mse_loss(image)(remapped)) > float(mse_loss(image)(shifted_copy(image, 2)))


def test_syn_with_mi_aligns_an_inverted_contrast_shift():
    offset = (SHIFT, 0.0, 0.0)
    fixed, moving = wave_image(SHAPE), 1.0 - wave_image(SHAPE, offset)
    disp = SynMethod().register(fixed, moving, {**SynMethod.presets["fast"], "loss": "mi"}, CPU)
    assert interior_mean(disp, 0) == pytest.approx(SHIFT, abs=0.5)
