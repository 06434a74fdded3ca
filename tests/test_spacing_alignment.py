"""The classical methods read the grid (``register(..., grid=Grid(spacing, pre_aligned))``):

- their lengths are millimetres, so on a 1 mm grid a field is what it was when they were voxels
  (bit for bit), and an anisotropic scan registered at its native spacing scores as the same scan
  resampled to 1 mm does;
- their presets start from an affine fit unless the dataset declares itself pre-aligned, so a
  pair moved apart by a large rotation, translation and scaling reaches the aligned pair's Dice.

The real-data tests read ../shared/data/hippocampus and are skipped without it. Their figures,
for all three dense methods and more pairs, come from benchmarks/alignment.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_classical import dice, nested_shapes, smooth_diffeomorphism
from warpbench import Grid
from warpbench.datasets import Subject
from warpbench.methods import takes_grid
from warpbench.runner import evaluate_pair
from warpbench.spatial import identity_grid, warp_labels, warp_tensor
from warpbench_classical import DemonsMethod, GreedyMethod, IdentityMethod, SynMethod
from warpbench_classical.affine import AffineMethod, fit_affine, half_affines
from warpbench_classical.demons import demons_register
from warpbench_classical.dense import starts_affine
from warpbench_classical.filters import box_kernel, box_mean
from warpbench_classical.greedy import greedy_register
from warpbench_classical.syn import syn_register
from warpbench_classical.units import axis_shrink, level_lengths
from warpbench_decathlon import DecathlonDataset

CPU = torch.device("cpu")
SHAPE = (32, 36, 32)
LABELS = {1: "hippocampus_anterior", 2: "hippocampus_posterior"}
#: datasets.yaml's hippocampus block: its grid, split and pairs.
HIPPOCAMPUS_GRID = (48, 64, 48)
SPLIT = {"train": 0.6, "val": 0.1, "test": 0.3, "seed": 0}
# The anisotropic acquisition: slabs of SLAB slices along AXIS averaged into one (1x1x3 mm).
AXIS, SLAB = 2, 3
ANISOTROPIC_PAIRS = 4
# The mean Dice of one method on the same scans at native 1x1x3 mm and resampled to 1 mm differs
# by more than registration noise only if the spacing is misread: per pair the two differ by up
# to 0.03 (each is another discretisation of the same scans, and the native one is also scored
# on a coarser label grid), so over 4 pairs 0.02 (measured for greedy: 0.001).
NATIVE_VERSUS_ISOTROPIC = 0.02
# The misalignment: about array axis 0, in mm and as a zoom of the moving subject.
ROTATION_DEGREES, ROTATION_AXIS = 20.0, 0
SHIFT_MM = (8.0, 0.0, 0.0)
ZOOM = 1.15
# A field of view that holds the moved subject: on the dataset's 48x64x48 grid the zoomed and
# rotated crop leaves it, and what leaves it no registration recovers (with the exact inverse
# transform greedy lost up to 0.08 Dice there), which is not what this test is about.
WIDE_GRID = (64, 80, 64)
# The phantom's grid and shift, so that the moved phantom stays inside it.
PHANTOM_SHAPE = (40, 44, 40)
PHANTOM_SHIFT_MM = (4.0, 0.0, 0.0)
# How close the misaligned pair's Dice comes to the aligned pair's (the bar).
ALIGNMENT_TOLERANCE = 0.02


def hippocampus(root, grid=HIPPOCAMPUS_GRID, pre_aligned=False) -> DecathlonDataset:
    """The hippocampus subjects (datasets.yaml's block) on ``grid``."""
    return DecathlonDataset("hippocampus", {
        "root": str(root), "grid": list(grid), "labels": LABELS, "pre_aligned": pre_aligned,
        "split": SPLIT, "pairs": {"test": 20, "seed": 0}}, root.parent)


def thick_slices(subject: Subject, axis: int = AXIS, slab: int = SLAB) -> Subject:
    """``subject`` as an anisotropic acquisition: every ``slab`` slices along ``axis`` averaged
    into one, the label map sampled at each slab's middle slice, and the affine saying so (its
    voxels ``slab`` times as long along ``axis``, centred on the slabs)."""
    count = subject.image.shape[axis] // slab
    kept = [slice(None)] * 3
    kept[axis] = slice(0, count * slab)
    image = subject.image[tuple(kept)]
    shape = list(image.shape)
    shape[axis:axis + 1] = [count, slab]
    middle = [slice(None)] * 3
    middle[axis] = slice(slab // 2, count * slab, slab)
    affine = subject.affine.astype(np.float64).copy()
    affine[:3, 3] += affine[:3, axis] * (slab - 1) / 2
    affine[:3, axis] *= slab
    return Subject(subject.id, image.reshape(shape).mean(axis + 1).astype(np.float32),
                   np.ascontiguousarray(subject.labels[tuple(middle)]), affine)


def resampled_back(thick: Subject, fine: Subject, axis: int = AXIS, slab: int = SLAB) -> Subject:
    """``thick``'s image linearly resampled onto ``fine``'s grid, with ``fine``'s label map: the
    same anisotropic scan as an isotropic dataset holds it."""
    count = thick.image.shape[axis]
    # Fine slice z lies at slab coordinate (z - (slab - 1) / 2) / slab; outside, the end slabs.
    where = np.clip((np.arange(fine.image.shape[axis]) - (slab - 1) / 2) / slab, 0, count - 1)
    below = np.floor(where).astype(int)
    above = np.minimum(below + 1, count - 1)
    weight = np.expand_dims(where - below, [k for k in range(3) if k != axis])
    image = (np.take(thick.image, below, axis) * (1 - weight)
             + np.take(thick.image, above, axis) * weight)
    return Subject(fine.id, image.astype(np.float32), fine.labels, fine.affine)


def spacing_ignored(subject: Subject) -> Subject:
    """``subject`` with an affine of 1 mm voxels, whatever its spacing."""
    return Subject(subject.id, subject.image, subject.labels, np.eye(4))


def misaligned(subject: Subject, degrees=ROTATION_DEGREES, axis=ROTATION_AXIS, shift_mm=SHIFT_MM,
               zoom=ZOOM) -> Subject:
    """``subject`` moved on its own grid: zoomed, rotated by ``degrees`` about array ``axis``
    through the grid's centre and shifted by ``shift_mm`` (image linearly, labels by nearest
    neighbour, zero outside). Its image must stay inside the grid."""
    shape = subject.image.shape
    spacing = np.linalg.norm(subject.affine[:3, :3], axis=0)
    angle = math.radians(degrees)
    i, j = [k for k in range(3) if k != axis]
    rotation = np.eye(3)
    rotation[[i, i, j, j], [i, j, i, j]] = [math.cos(angle), -math.sin(angle),
                                            math.sin(angle), math.cos(angle)]
    to_mm, to_voxels = np.diag(spacing), np.diag(1 / spacing)
    forward = to_voxels @ (zoom * rotation) @ to_mm  # moves the content, in voxels
    centre = (np.array(shape) - 1) / 2
    shift = to_voxels @ np.asarray(shift_mm)
    # Pull back: the moved subject at y shows the subject at forward^-1 (y - centre - shift).
    points = identity_grid(shape, dtype=torch.float64).numpy().reshape(3, -1)
    sources = np.linalg.inv(forward) @ (points - (centre + shift)[:, None]) + centre[:, None]
    disp = torch.from_numpy((sources - points).reshape(3, *shape))
    image = warp_tensor(torch.from_numpy(subject.image.astype(np.float64))[None, None],
                        disp[None], padding_mode="zeros")[0, 0].numpy()
    kept = image.sum() / (subject.image.sum() * zoom**3)
    assert kept == pytest.approx(1.0, abs=0.01), "the moved subject left the grid"
    return Subject(subject.id + "-moved", image.astype(np.float32),
                   warp_labels(subject.labels, disp), subject.affine)


def mean_dice(method, dataset, fixed: Subject, moving: Subject) -> float:
    result = evaluate_pair(method, method.presets["default"], dataset, fixed, moving, CPU)
    assert result.status == "ok", result.error
    return result.mean_dice


# --- lengths in mm ---------------------------------------------------------------------------
def test_a_1mm_grid_has_voxels_one_mm_long_on_every_level():
    for shape in (SHAPE, HIPPOCAMPUS_GRID):
        for scale in (4, 2, 1):
            assert axis_shrink(scale, (1.0, 1.0, 1.0)) == (scale,) * 3
            level = tuple(n // scale for n in shape)
            assert level_lengths((1.0, 1.0, 1.0), shape, level, scale).per_axis == (1.0,) * 3


def test_an_anisotropic_grid_coarsens_towards_isotropic_voxels():
    """A 1x1x3 mm grid's thick axis is not shrunk until the others' voxels are as long, and a
    length in mm takes a third as many of its voxels."""
    shape, spacing = (48, 64, 16), (1.0, 1.0, 3.0)
    assert axis_shrink(2, spacing) == (2, 2, 1.0)
    assert axis_shrink(4, spacing) == pytest.approx((4, 4, 4 / 3))
    assert level_lengths(spacing, shape, (24, 32, 16), 2).per_axis == (1.0, 1.0, 1.5)
    lengths = level_lengths(spacing, shape, shape, 1)
    assert lengths.sigma(1.5) == (1.5, 1.5, 0.5)
    assert lengths.window(5) == pytest.approx((5, 5, 5 / 3))


def test_a_fractional_window_covers_its_end_voxels_in_part():
    assert torch.equal(box_kernel(5), torch.full((5,), 0.2))
    assert box_kernel(1.5).tolist() == pytest.approx([0.25 / 1.5, 1 / 1.5, 0.25 / 1.5])
    assert box_kernel(4).tolist() == pytest.approx([0.5 / 4, 0.25, 0.25, 0.25, 0.5 / 4])
    volume = torch.rand(1, 1, 7, 8, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(box_mean(volume, (3, 3, 3)), box_mean(volume, 3))
    # A window of one voxel along an axis averages along the others only.
    along_h = box_mean(volume, (1, 3, 1))
    assert torch.allclose(along_h[0, 0, :, 1:-1], (volume[0, 0, :, :-2] + volume[0, 0, :, 1:-1]
                                                   + volume[0, 0, :, 2:]) / 3, atol=1e-6)


@pytest.fixture(scope="module")
def deformed_pair():
    """A phantom (fixed) and a smoothly deformed copy (moving), (1, 1, D, H, W) each."""
    image, _ = nested_shapes(SHAPE)
    fixed = torch.from_numpy(image)[None, None]
    return fixed, warp_tensor(fixed, smooth_diffeomorphism(SHAPE, 2.5, seed=4))


@pytest.mark.parametrize("optimise, method, pre_aligned", [
    (greedy_register, GreedyMethod(), True),
    (greedy_register, GreedyMethod(), False),  # through the affine start too
    (syn_register, SynMethod(), True),
    (demons_register, DemonsMethod(), True),
], ids=["greedy", "greedy-affine-start", "syn", "demons"])
def test_on_a_1mm_grid_a_field_is_what_it_was_with_lengths_in_voxels(optimise, method,
                                                                     pre_aligned, deformed_pair):
    """spacing=None reads every length as voxels of each level, as the settings did before they
    were mm: a 1 mm grid gives the same field bit for bit, and a 1x1x3 mm one another."""
    fixed, moving = deformed_pair
    settings = method.resolve(method.presets["fast"])
    with torch.no_grad():
        def field(spacing):
            return optimise(fixed, moving, settings, spacing=spacing, pre_aligned=pre_aligned)
        in_voxels = field(None)
        assert torch.equal(field((1.0, 1.0, 1.0)), in_voxels)
        if optimise is greedy_register and pre_aligned:
            assert (field((1.0, 1.0, 3.0)) - in_voxels).abs().mean() > 0.05


def test_the_affine_reads_its_lncc_window_in_mm(deformed_pair):
    fixed, moving = deformed_pair
    settings = AffineMethod().resolve({**AffineMethod.presets["default"], "loss": "lncc",
                                       "iterations": [20, 10]})
    in_voxels = fit_affine(fixed, moving, settings, None)
    assert torch.equal(fit_affine(fixed, moving, settings, (1.0, 1.0, 1.0)), in_voxels)
    assert not torch.equal(fit_affine(fixed, moving, settings, (1.0, 1.0, 3.0)), in_voxels)


def test_every_classical_method_takes_the_grid():
    for method in (IdentityMethod(), AffineMethod(), GreedyMethod(), SynMethod(), DemonsMethod()):
        assert takes_grid(method.register) and takes_grid(method.register_batch), method.name


def test_native_spacing_scores_as_the_same_scan_resampled_to_1mm(hippocampus_root):
    """The first test pairs of the hippocampus dataset, each acquired at 1x1x3 mm (slabs of
    three slices averaged): registered at that native spacing and scored on that grid, versus
    the same slabs resampled to 1 mm and scored with the 1 mm labels. Pre-aligned, so that only
    the spacing differs between the two."""
    dataset = hippocampus(hippocampus_root, pre_aligned=True)
    greedy = GreedyMethod()
    native, isotropic = [], []
    for pair in dataset.pairs("test")[:ANISOTROPIC_PAIRS]:
        fixed, moving = dataset.load(pair.fixed), dataset.load(pair.moving)
        thick_fixed, thick_moving = thick_slices(fixed), thick_slices(moving)
        assert np.linalg.norm(thick_fixed.affine[:3, :3], axis=0).tolist() == [1.0, 1.0, 3.0]
        native.append(mean_dice(greedy, dataset, thick_fixed, thick_moving))
        isotropic.append(mean_dice(greedy, dataset, resampled_back(thick_fixed, fixed),
                                   resampled_back(thick_moving, moving)))
    print(f"greedy mean Dice: native 1x1x3 mm {np.mean(native):.4f}, resampled to 1 mm "
          f"{np.mean(isotropic):.4f} (pairs: {native} / {isotropic})")
    assert np.mean(native) == pytest.approx(np.mean(isotropic), abs=NATIVE_VERSUS_ISOTROPIC)
    assert np.mean(native) > 0.65  # registered, not left alone (identity: about 0.5)


# --- an affine start unless pre-aligned ------------------------------------------------------
def test_auto_starts_from_the_affine_unless_pre_aligned():
    assert starts_affine("auto", pre_aligned=False) and not starts_affine("auto", True)
    assert starts_affine(True, True) and not starts_affine(False, False)
    for method in (GreedyMethod(), SynMethod(), DemonsMethod()):
        assert {preset["affine_init"] for preset in method.presets.values()} == {"auto"}


def test_syn_splits_its_affine_start_half_each_way():
    matrix = torch.tensor([[1.1, 0.2, 0.0, 0.1], [-0.1, 0.9, 0.05, -0.2], [0.0, 0.1, 1.2, 0.3]])
    root, inverse_root = half_affines(matrix)
    row = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    square, inverse = torch.cat([root, row]), torch.cat([inverse_root, row])
    assert torch.allclose((square @ square)[:3], matrix, atol=1e-5)
    assert torch.allclose(square @ inverse, torch.eye(4), atol=1e-5)


@pytest.mark.parametrize("method", [SynMethod(), DemonsMethod()], ids=lambda m: m.name)
def test_a_phantom_moved_far_is_registered_back_through_the_affine_start(method):
    """The phantom and a copy zoomed, rotated and shifted: from the affine start (kept apart
    from the deformation, and split half each way by syn) the field lands the copy's labels
    back on the phantom's, far better than from the identity (as pre-aligned). Greedy's
    affine start is tested on real data below."""
    image, labels = nested_shapes(PHANTOM_SHAPE)
    phantom = Subject("phantom", image, labels, np.eye(4))
    moved = misaligned(phantom, shift_mm=PHANTOM_SHIFT_MM)
    params = method.presets["fast"]

    def dice_of(pre_aligned: bool) -> float:
        field = method.register(phantom.image, moved.image, params, CPU,
                                grid=Grid((1.0, 1.0, 1.0), pre_aligned))
        return dice(labels, warp_labels(moved.labels, field))

    before, affine_start, identity_start = (dice(labels, moved.labels), dice_of(False),
                                            dice_of(True))
    print(f"{method.name}: {before:.3f} before, {affine_start:.3f} from the affine start, "
          f"{identity_start:.3f} from the identity")
    assert before < 0.5 and affine_start > 0.95 and identity_start < affine_start - 0.05


def test_a_pair_far_from_aligned_reaches_the_aligned_dice(hippocampus_root):
    """The first test pair of the hippocampus dataset (not pre-aligned, so greedy's default
    starts from the affine fit), as it is and with the moving subject zoomed by 1.15, rotated
    by 20 degrees and shifted by 8 mm; on a grid that holds the moved subject."""
    dataset = hippocampus(hippocampus_root, grid=WIDE_GRID, pre_aligned=False)
    pair = dataset.pairs("test")[0]
    fixed, moving = dataset.load(pair.fixed), dataset.load(pair.moving)
    moved = misaligned(moving)
    identity = IdentityMethod()
    assert mean_dice(identity, dataset, fixed, moved) < mean_dice(identity, dataset, fixed,
                                                                  moving) - 0.3
    greedy = GreedyMethod()
    aligned = mean_dice(greedy, dataset, fixed, moving)
    far = mean_dice(greedy, dataset, fixed, moved)
    print(f"greedy Dice: aligned {aligned:.4f}, misaligned {far:.4f}")
    assert far >= aligned - ALIGNMENT_TOLERANCE
    assert Grid().pre_aligned is False  # a caller that says nothing gets the affine start
