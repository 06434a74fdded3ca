"""Diffeomorphic demons: its building blocks (the force, exponentiation), recovery of a known
smooth deformation without folding, identical images left alone, and CPU / CUDA agreement."""

import pytest
import torch

from test_classical import CPU, SHAPE, dice, folding_percent, smooth_diffeomorphism
from test_syn import INTERIOR, deformed, end_point_error, textured_phantom
from warpbench.spatial import as_numpy, compose, warp_labels, warp_tensor
from warpbench_classical import DemonsMethod
from warpbench_classical.demons import demons_force
from warpbench_classical.diffeomorphisms import exponentiate, invert
from warpbench_classical.filters import spatial_gradient


@pytest.fixture(scope="module")
def known_pair():
    image, labels = textured_phantom(SHAPE)
    truth = smooth_diffeomorphism(SHAPE, max_displacement=3.0, seed=1)
    return image, labels, deformed(image, truth), truth


def test_exponentials_of_opposite_velocities_are_inverse():
    velocity = smooth_diffeomorphism(SHAPE, max_displacement=2.0, seed=3)
    forward, backward = exponentiate(velocity, 6), exponentiate(-velocity, 6)
    assert float(forward.abs().max()) > 1.0  # a real deformation, not a vanishing one
    assert float(compose(forward, backward)[0][INTERIOR].norm(dim=0).mean()) < 0.05


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_one_demons_step_undoes_a_small_shift(shift):
    """For moved(x) = fixed(x - s) along the first axis the pull-back correction is +s: the
    force points that way (along the image gradient, so not everywhere exactly along the axis)
    and one step of it removes almost all of the difference."""
    image, _ = textured_phantom(SHAPE)
    fixed = torch.from_numpy(image)[None, None]
    offset = torch.tensor([-shift, 0.0, 0.0]).view(1, 3, 1, 1, 1).expand(1, 3, *SHAPE)
    moved = torch.from_numpy(deformed(image, offset))[None, None]
    force = demons_force(fixed, moved, spatial_gradient(fixed), max_step=2.0)
    assert float((force[0][INTERIOR][0] * shift > 0).float().mean()) > 0.9
    before = float(((fixed - moved) ** 2).mean())
    assert float(((fixed - warp_tensor(moved, force)) ** 2).mean()) < 0.1 * before


def test_demons_recovers_a_known_smooth_deformation(known_pair):
    image, labels, moving, truth = known_pair
    disp = DemonsMethod().register(image, moving, DemonsMethod.presets["default"], CPU)
    round_trip = compose(truth, disp[None])[0]
    assert dice(warp_labels(labels, truth[0]), labels) < 0.85
    assert dice(warp_labels(labels, round_trip), labels) >= 0.9
    assert end_point_error(disp, invert(truth, iterations=50)[0]) < 0.5
    assert folding_percent(as_numpy(disp)) < 0.1


def test_identical_images_stay_put():
    image, _ = textured_phantom(SHAPE)
    disp = DemonsMethod().register(image, image, DemonsMethod.presets["default"], CPU)
    assert float(disp.abs().max()) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_demons_on_cuda_matches_cpu(known_pair):
    image, _, moving, _ = known_pair
    settings = DemonsMethod.presets["default"]
    on_cpu = DemonsMethod().register(image, moving, settings, CPU)
    on_cuda = DemonsMethod().register(image, moving, settings, torch.device("cuda"))
    assert on_cuda.device.type == "cuda" and on_cuda.dtype == torch.float32
    assert end_point_error(on_cuda.cpu(), on_cpu) < 0.1
