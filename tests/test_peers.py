"""The optional peers (plugins `ants` and `fireants`): without their package they are listed and
report it, and a run fails each pair naming the package and the install command; with it (in the
peers venv, `make peers`) their fields come back in warpbench's convention, checked against a
known shift and against the package's own warping."""

import sys
import tempfile

import numpy as np
import pytest
import torch

from warpbench.cli import main
from warpbench.plugins import load_registry
from warpbench.spatial import warp_image, warp_labels
from warpbench.store import Store
from warpbench.testing import smooth_image
from warpbench_ants import AntsSynMethod
from warpbench_fireants import FireantsGreedyMethod, FireantsSynMethod

PEERS = {  # entry point -> (its methods, the module whose absence is simulated, the PyPI name)
    "ants": (["ants-syn"], "ants", "antspyx"),
    "fireants": (["fireants-greedy", "fireants-syn"], "fireants", "fireants"),
}
SHIFT = (2.0, -1.5, 1.0)
BORDER = 5  # voxels left out at each face where the shifted image left the grid
FIREANTS_SHAPE = (32, 36, 40)  # fireants needs 32 voxels per axis at least
TINY_CONFIG = """
datasets:
  tiny:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 4
    split: {train: 1, val: 1, test: 2}
    pairs: {test: 2}
"""


def hide_package(monkeypatch, module: str) -> None:
    """Make ``import module`` (and its submodules) fail as if it were not installed."""
    for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("plugin", sorted(PEERS))
def test_a_peer_without_its_package_is_listed_and_says_how_to_install_it(plugin, monkeypatch,
                                                                        capsys):
    methods, module, package = PEERS[plugin]
    hide_package(monkeypatch, module)
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", plugin)
    registry = load_registry(strict=True)  # registering never imports the package
    assert sorted(registry.methods) == methods
    for name in methods:
        available, reason = registry.methods[name].availability()
        assert not available
        assert package in reason and f"pip install 'warpbench[{plugin}]'" in reason
        assert name in reason
    assert main(["plugins"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "method:" in line]
    assert len(listed) == len(methods)
    assert all("(unavailable: " in line and package in line for line in listed)


@pytest.mark.parametrize("plugin", sorted(PEERS))
def test_a_run_of_a_peer_without_its_package_sets_it_aside_with_the_install_command(
        plugin, monkeypatch, tmp_path, capsys):
    methods, module, package = PEERS[plugin]
    hide_package(monkeypatch, module)
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", f"synthetic,classical,executors,{plugin}")
    config = tmp_path / "datasets.yaml"
    config.write_text(TINY_CONFIG)
    store = tmp_path / "r.duckdb"
    alone = ["run", "--config", str(config), "--db", str(store), "--quiet", "--dataset", "tiny"]
    assert main([*alone, "--method", methods[0]]) == 1
    err = capsys.readouterr().err
    assert f"skipping method {methods[0]}: " in err and package in err
    assert f"pip install 'warpbench[{plugin}]'" in err and "nothing to run" in err
    # Beside a method that can run, the run goes on without it and succeeds.
    assert main([*alone, "--method", methods[0], "--method", "identity"]) == 0
    assert f"skipping method {methods[0]}" in capsys.readouterr().err
    assert set(Store(store).runs()["method"]) == {"identity"}


@pytest.mark.parametrize("method", [AntsSynMethod(), FireantsGreedyMethod(), FireantsSynMethod()],
                         ids=lambda m: m.name)
def test_a_peer_checks_its_presets_and_refuses_a_misspelt_parameter_without_its_package(
        method, monkeypatch):
    hide_package(monkeypatch, "ants")
    hide_package(monkeypatch, "fireants")
    assert method.check() == []  # every preset validates against the parameters' model
    known = ", ".join(sorted(method.presets["default"]))
    with pytest.raises(ValueError) as error:
        method.register(smooth_image(), smooth_image(), {"flow_sigmaa": 1.0}, torch.device("cpu"))
    assert str(error.value) == (f"method {method.name!r}: unknown parameter 'flow_sigmaa'; "
                                f"known: {known}")
    broken = {**method.presets["default"], "reg_iterations": "many", "iterations": "many"}
    with pytest.raises(ValueError, match=rf"method {method.name!r}: parameter '\w*iterations'"):
        method.resolve({k: v for k, v in broken.items() if k in method.presets["default"]})


# --- with the package (the peers venv); skipped where it is not installed ---------------------


def label_map(shape) -> np.ndarray:
    """Integer labels: the smooth image cut into five intensity bands."""
    image = smooth_image(shape)
    return np.digitize(image, np.quantile(image, [0.2, 0.4, 0.6, 0.8])).astype(np.int32)


def interior(field) -> np.ndarray:
    return np.asarray(field)[:, BORDER:-BORDER, BORDER:-BORDER, BORDER:-BORDER]


def test_ants_transforms_come_back_as_the_voxel_pullback(tmp_path):
    ants = pytest.importorskip("ants")
    from warpbench_ants.fields import pullback_from_transforms

    image = smooth_image()
    fixed = ants.from_numpy(image)
    # A pure translation: ANTs maps each fixed point p to the moving point p + t, so the
    # pull-back field is t everywhere, component k along array axis k.
    translation = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                             translation=list(SHIFT))
    ants.write_transform(translation, str(tmp_path / "shift.mat"))
    disp = pullback_from_transforms(ants, fixed, [str(tmp_path / "shift.mat")], tmp_path)
    assert disp.shape == (3, *image.shape) and disp.dtype == np.float32
    np.testing.assert_allclose(disp, np.broadcast_to(np.float32(SHIFT)[:, None, None, None],
                                                     disp.shape), atol=1e-4)
    # A rotation about the centre plus a shift: warpbench's nearest-neighbour label warp through
    # the converted field matches antsApplyTransforms' own (ties at exactly half a voxel aside).
    rotation = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, center=[n / 2 for n in image.shape],
        translation=[1.3, 0.4, -0.7], matrix=_rotation_matrix(0.15))
    ants.write_transform(rotation, str(tmp_path / "rot.mat"))
    disp = pullback_from_transforms(ants, fixed, [str(tmp_path / "rot.mat")], tmp_path)
    labels = label_map(image.shape)
    theirs = ants.apply_transforms(fixed, ants.from_numpy(labels.astype(np.float32)),
                                   [str(tmp_path / "rot.mat")], interpolator="nearestNeighbor")
    assert agreement(warp_labels(labels, disp), theirs.numpy()) > 0.999
    # A real registration's transform list (an affine, then SyN's warp) composes the same way.
    moving = ants.from_numpy(smooth_image(offset=SHIFT))
    result = ants.registration(fixed, moving, type_of_transform="SyN", syn_metric="CC",
                               syn_sampling=2, reg_iterations=(20, 10),
                               outprefix=str(tmp_path / "reg_"))
    assert len(result["fwdtransforms"]) == 2
    disp = pullback_from_transforms(ants, fixed, result["fwdtransforms"], tmp_path)
    moving_labels = label_map(image.shape)
    theirs = ants.apply_transforms(fixed, ants.from_numpy(moving_labels.astype(np.float32)),
                                   result["fwdtransforms"], interpolator="nearestNeighbor")
    assert agreement(warp_labels(moving_labels, disp), theirs.numpy()) > 0.995


def agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The fraction of interior voxels where two label maps agree."""
    inside = interior(np.stack([ours, theirs.astype(ours.dtype)]))
    return float(np.mean(inside[0] == inside[1]))


def _rotation_matrix(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_ants_syn_recovers_a_known_shift_and_leaves_no_files(tmp_path, monkeypatch):
    pytest.importorskip("ants")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fixed, moving = smooth_image(), smooth_image(offset=SHIFT)  # moving(x + SHIFT) = fixed(x)
    method = AntsSynMethod()
    params = {**method.presets["literature"], "reg_iterations": [40, 20, 10]}
    disp = method.register(fixed, moving, params, torch.device("cpu"))
    means = interior(disp).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, SHIFT, atol=0.5)
    assert not list(tmp_path.iterdir()), "antspyx's transform files must be removed"


def test_fireants_coordinates_come_back_as_the_voxel_pullback():
    from warpbench_fireants.fields import pullback_from_coordinates

    shape = (20, 24, 28)
    # grid_sample coordinates (x, y, z) = (W, H, D) of a translation by SHIFT voxels.
    theta = torch.zeros(1, 3, 4)
    theta[0, :, :3] = torch.eye(3)
    theta[0, :, 3] = torch.tensor([2 * SHIFT[2 - i] / (shape[2 - i] - 1) for i in range(3)])
    coords = torch.nn.functional.affine_grid(theta, (1, 1, *shape), align_corners=True)
    disp = pullback_from_coordinates(coords)
    assert disp.shape == (3, *shape) and disp.dtype == torch.float32
    expected = torch.tensor(SHIFT).view(3, 1, 1, 1).expand(3, *shape)
    torch.testing.assert_close(disp, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", [FireantsGreedyMethod(), FireantsSynMethod()],
                         ids=lambda m: m.name)
def test_fireants_recovers_a_known_shift(method):
    pytest.importorskip("fireants")
    fixed = smooth_image(FIREANTS_SHAPE)
    moving = smooth_image(FIREANTS_SHAPE, offset=SHIFT)  # moving(x + SHIFT) = fixed(x)
    params = {**method.presets["default"], "iterations": [60, 30, 10]}
    disp = method.register(fixed, moving, params, torch.device("cpu"))
    means = interior(disp.numpy()).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, SHIFT, atol=0.5)


def test_fireants_warp_converted_moves_the_image_as_fireants_does():
    pytest.importorskip("fireants")
    from warpbench_fireants.fields import pullback_from_coordinates
    from warpbench_fireants.method import import_fireants

    fireants = import_fireants("test")
    fixed, moving = smooth_image(FIREANTS_SHAPE), smooth_image(FIREANTS_SHAPE, offset=SHIFT)
    fixed_batch, moving_batch = (
        fireants.image.BatchedImages([fireants.image.Image(fireants.sitk.GetImageFromArray(a),
                                                           device="cpu")])
        for a in (fixed, moving))
    registration = fireants.classes["greedy"](
        scales=[2, 1], iterations=[30, 10], fixed_images=fixed_batch, moving_images=moving_batch,
        cc_kernel_size=5, progress_bar=False)
    registration.optimize()
    with torch.no_grad():
        disp = pullback_from_coordinates(
            registration.get_warped_coordinates(fixed_batch, moving_batch))
        theirs = registration.evaluate(fixed_batch, moving_batch)[0, 0].numpy()
    ours = warp_image(moving, disp)
    np.testing.assert_allclose(interior(ours[None]), interior(theirs[None]), atol=1e-4)
