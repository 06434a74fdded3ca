"""Symmetric diffeomorphic registration (syn): recovery of a known smooth deformation, inverse
consistency, a pair of identical images left alone, and CPU / CUDA agreement."""

import pytest
import torch

from test_classical import (
    CPU,
    SHAPE,
    dice,
    folding_percent,
    nested_shapes,
    smooth_diffeomorphism,
    wave_image,
)
from warpbench.spatial import as_numpy, compose, warp_labels, warp_tensor
from warpbench_classical import GreedyMethod, SynMethod
from warpbench_classical.diffeomorphisms import invert

INTERIOR = (slice(None),) + (slice(6, -6),) * 3  # of a (3, D, H, W) field: away from the border


def textured_phantom(shape):
    """The nested-shapes phantom with a faint texture inside, so that the deformation is
    determined everywhere, not only at the label boundaries; and its labels."""
    image, labels = nested_shapes(shape)
    return 0.7 * image + 0.3 * wave_image(shape), labels


def deformed(image, disp):
    return warp_tensor(torch.from_numpy(image)[None, None], disp)[0, 0].numpy()


def end_point_error(disp, truth) -> float:
    """Mean distance (voxels) between two (3, D, H, W) fields away from the border."""
    return float((disp - truth)[INTERIOR].norm(dim=0).mean())


@pytest.fixture(scope="module")
def known_pair():
    """(fixed image, its labels, moving image, the true pull-back field (1, 3, ...) that
    deformed the fixed image into the moving one)."""
    image, labels = textured_phantom(SHAPE)
    truth = smooth_diffeomorphism(SHAPE, max_displacement=3.0, seed=1)
    return image, labels, deformed(image, truth), truth


@pytest.fixture(scope="module")
def both_directions(known_pair):
    """syn's fields registering the known pair one way and the other way round."""
    image, _, moving, _ = known_pair
    settings = SynMethod.presets["default"]
    return SynMethod().register(image, moving, settings, CPU), SynMethod().register(moving, image, settings, CPU)


def test_invert_undoes_a_smooth_diffeomorphism():
    disp = smooth_diffeomorphism(SHAPE, max_displacement=3.0, seed=2)
    inverse = invert(disp, iterations=30)
    # Exact at the grid points it solves for; the other way round, up to trilinear
    # interpolation of the inverse between them.
    assert float(compose(disp, inverse)[0][INTERIOR].norm(dim=0).max()) < 0.01
    assert float(compose(inverse, disp)[0][INTERIOR].norm(dim=0).mean()) < 0.05


def test_syn_recovers_a_known_smooth_deformation(known_pair, both_directions):
    """The moving image is fixed(x + truth(x)), so the answer is truth's inverse: the fixed
    labels carried through truth and then the recovered field must land back on themselves."""
    _, labels, _, truth = known_pair
    disp = both_directions[0]
    round_trip = compose(truth, disp[None])[0]
    assert dice(warp_labels(labels, truth[0]), labels) < 0.85
    assert dice(warp_labels(labels, round_trip), labels) >= 0.95
    assert end_point_error(disp, invert(truth, iterations=50)[0]) < 0.4
    assert folding_percent(as_numpy(disp)) < 0.1


def test_syn_is_inverse_consistent(known_pair, both_directions):
    """A -> B composed with B -> A is the identity up to interpolation, which a one-way method
    such as greedy is not (its two answers differ by a few tenths of a voxel)."""
    forward, backward = both_directions
    round_trip = compose(backward[None], forward[None])[0]
    assert float(round_trip[INTERIOR].norm(dim=0).mean()) < 0.05


def test_greedy_is_less_inverse_consistent_than_syn(known_pair, both_directions):
    image, _, moving, _ = known_pair
    settings = GreedyMethod.presets["default"]
    forward = GreedyMethod().register(image, moving, settings, CPU)
    backward = GreedyMethod().register(moving, image, settings, CPU)
    greedy_gap = compose(backward[None], forward[None])[0][INTERIOR].norm(dim=0).mean()
    syn_gap = compose(both_directions[1][None], both_directions[0][None])[0][INTERIOR].norm(dim=0).mean()
    assert float(syn_gap) < 0.5 * float(greedy_gap)


def test_identical_images_stay_put():
    image, _ = textured_phantom(SHAPE)
    disp = SynMethod().register(image, image, SynMethod.presets["default"], CPU)
    assert float(disp.abs().max()) < 0.05


def test_literature_preset_is_the_weak_setting():
    literature, default = SynMethod.presets["literature"], SynMethod.presets["default"]
    assert literature["loss"] == "mse" and default["loss"] == "lncc"
    assert sum(literature["iterations"]) < sum(default["iterations"])
    assert literature["tolerance"] > default["tolerance"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_syn_on_cuda_matches_cpu(known_pair, both_directions):
    image, _, moving, _ = known_pair
    disp = SynMethod().register(image, moving, SynMethod.presets["default"], torch.device("cuda"))
    assert disp.device.type == "cuda" and disp.dtype == torch.float32
    assert end_point_error(disp.cpu(), both_directions[0]) < 0.1
