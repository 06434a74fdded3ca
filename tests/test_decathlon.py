"""The Decathlon / Learn2Reg reader: real hippocampus data when present, tiny files otherwise."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from warpbench.datasets import DatasetConfigError
from warpbench.plugins import load_registry
from warpbench_decathlon import DecathlonDataset

HIPPOCAMPUS = Path(__file__).parents[1] / ".." / "shared" / "data" / "hippocampus"
LABELS = {1: "anterior", 2: "posterior"}


def make(base_dir, name="dec", **options):
    return DecathlonDataset(name, {"root": "data", "labels": LABELS, **options}, base_dir)


def write_case(root, name, image, labels=None, affine=None):
    """Write imagesTr/NAME.nii.gz (and labelsTr/NAME.nii.gz unless ``labels`` is None)."""
    affine = np.eye(4) if affine is None else affine
    for folder, array in (("imagesTr", image), ("labelsTr", labels)):
        if array is not None:
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), root / folder / f"{name}.nii.gz")


def blob(shape, value_scale=1.0, dtype=np.float32):
    """A bright box on a dark background, and its two-label map."""
    image = np.zeros(shape, dtype=dtype)
    labels = np.zeros(shape, dtype=np.uint8)
    inner = tuple(slice(1, n - 1) for n in shape)
    image[inner] = np.asarray(100 * value_scale, dtype=dtype)
    labels[inner] = 1
    labels[(slice(1, 2), *inner[1:])] = 2
    return image, labels


def test_kind_is_registered_through_its_entry_point():
    registry = load_registry()
    assert registry.dataset_kinds.get("decathlon") is DecathlonDataset
    assert not [p for p in registry.problems if p.plugin == "decathlon"]


# --- the real hippocampus data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hippocampus():
    if not (HIPPOCAMPUS / "imagesTr").is_dir():
        pytest.skip(f"real data not present at {HIPPOCAMPUS}")
    return DecathlonDataset(
        "hippocampus",
        {
            "root": str(HIPPOCAMPUS.resolve()),
            "grid": [48, 64, 48],
            "labels": LABELS,
            "limit": 30,
            "split": {"train": 0.6, "val": 0.1, "test": 0.3},
            "pairs": {"test": 20},
        },
        Path("."),
    )


def test_real_subjects_load_onto_the_grid(hippocampus):
    assert hippocampus.availability() == (True, "")
    ids = hippocampus.all_subjects()
    assert len(ids) == 30 and ids[0] == "hippocampus_001"
    for subject_id in ids[:8]:
        subject = hippocampus.load(subject_id)
        assert subject.image.shape == subject.labels.shape == (48, 64, 48)
        assert subject.image.dtype == np.float32
        assert subject.image.min() == 0.0 and subject.image.max() == 1.0
        assert set(np.unique(subject.labels)) == {0, 1, 2}
        assert subject.spacing == (1.0, 1.0, 1.0)


def test_real_subject_keeps_every_voxel_at_its_world_position(hippocampus):
    subject = hippocampus.load("hippocampus_003")
    original = nib.load(HIPPOCAMPUS / "labelsTr" / "hippocampus_003.nii.gz")
    labelled = np.argwhere(np.asarray(original.dataobj) > 0)
    world = nib.affines.apply_affine(original.affine, labelled)
    on_grid = np.rint(nib.affines.apply_affine(np.linalg.inv(subject.affine), world)).astype(int)
    assert np.count_nonzero(subject.labels) == len(labelled)
    assert np.all(subject.labels[tuple(on_grid.T)] > 0)


def test_real_pairs_come_from_the_test_split(hippocampus):
    test = set(hippocampus.subjects("test"))
    assert len(test) == 9
    assert test.isdisjoint(hippocampus.subjects("train"))
    assert test.isdisjoint(hippocampus.subjects("val"))
    pairs = hippocampus.pairs("test")
    assert len(pairs) == 20
    assert all(p.fixed in test and p.moving in test and p.fixed != p.moving for p in pairs)


# --- tiny files written here ---------------------------------------------------------------------


def test_missing_root_is_reported_not_raised(tmp_path):
    ds = DecathlonDataset("dec", {"root": "nowhere"}, tmp_path)  # no labels needed yet
    available, reason = ds.availability()
    assert not available and "does not exist" in reason and "nowhere" in reason
    assert ds.all_subjects() == []


def test_empty_image_folder_is_reported(tmp_path):
    (tmp_path / "data" / "imagesTr").mkdir(parents=True)
    available, reason = make(tmp_path).availability()
    assert not available and "no imagesTr/*.nii.gz" in reason


def test_image_without_label_file_is_reported(tmp_path):
    image, labels = blob((6, 6, 6))
    write_case(tmp_path / "data", "case_a", image, labels)
    write_case(tmp_path / "data", "case_b", image)
    available, reason = make(tmp_path).availability()
    assert not available and reason.startswith("1 images have no matching label file")
    assert "case_b" in reason and "case_a" not in reason


def test_corrupt_file_raises_a_value_error_naming_it(tmp_path):
    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "x.nii.gz").write_bytes(b"this is not a NIfTI file" * 10)
    ds = make(tmp_path, grid=[8, 8, 8])
    assert ds.availability() == (True, "")
    with pytest.raises(ValueError, match=r"imagesTr/x\.nii\.gz"):
        ds.load("x")


def test_image_and_label_shape_mismatch_names_the_files(tmp_path):
    image, _ = blob((6, 6, 6))
    _, labels = blob((6, 6, 5))
    write_case(tmp_path / "data", "odd", image, labels)
    with pytest.raises(ValueError, match=r"labelsTr/odd\.nii\.gz.*\(6, 6, 5\)"):
        make(tmp_path, grid=[8, 8, 8]).load("odd")


def test_subject_is_centred_on_the_grid_with_its_affine_shifted(tmp_path):
    image, labels = blob((4, 6, 4), dtype=np.uint8)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    write_case(tmp_path / "data", "small", image, labels, affine)
    subject = make(tmp_path, grid=[8, 8, 8]).load("small")
    assert subject.image.shape == (8, 8, 8) and subject.labels.dtype == np.int16
    np.testing.assert_array_equal(subject.labels[2:6, 1:7, 2:6], labels)
    assert np.count_nonzero(subject.labels) == np.count_nonzero(labels)
    assert subject.spacing == (1.5, 1.5, 2.0)
    # Grid voxel (2, 1, 2) is file voxel (0, 0, 0): same world position.
    np.testing.assert_allclose(subject.affine @ [2, 1, 2, 1], affine @ [0, 0, 0, 1])


def test_intensities_are_normalised_robustly_per_volume(tmp_path):
    rng = np.random.default_rng(0)
    for name, scale in (("dim", 1.0), ("bright", 1.7e4)):
        image = (rng.uniform(1, 2, (10, 10, 10)) * scale).astype(np.float32)
        image[0] = 0
        image[5, 5, 5] = 1e9  # one hot voxel must not squash the rest
        write_case(tmp_path / "data", name, image, np.ones((10, 10, 10), np.uint8))
    ds = make(tmp_path)
    for name in ("dim", "bright"):
        image = ds.load(name).image
        assert image.dtype == np.float32 and image.min() == 0.0 and image.max() == 1.0
        assert np.all(image[0] == 0)
        assert 0.4 < image[1:].mean() < 0.6


def test_crop_of_background_is_allowed_but_not_of_labels(tmp_path):
    image, labels = blob((10, 8, 8))
    write_case(tmp_path / "data", "wide", image, labels)
    assert make(tmp_path, grid=[8, 8, 8]).load("wide").labels.sum() == labels.sum()
    with pytest.raises(ValueError, match=r"wide\.nii\.gz.*cut off \d+ labelled voxels"):
        make(tmp_path, grid=[6, 8, 8]).load("wide")


def test_without_grid_subjects_must_share_one_shape(tmp_path):
    write_case(tmp_path / "data", "a", *blob((6, 6, 6)))
    write_case(tmp_path / "data", "b", *blob((6, 7, 6)))
    ds = make(tmp_path)
    assert ds.load("a").image.shape == (6, 6, 6)
    with pytest.raises(ValueError, match=r"b\.nii\.gz.*set 'grid'"):
        ds.load("b")


def test_label_names_come_from_dataset_json_when_not_given(tmp_path):
    write_case(tmp_path / "data", "a", *blob((6, 6, 6)))
    info = {"labels": {"0": "background", "1": "Anterior", "2": "Posterior"}, "licence": "CC-BY-SA 4.0"}
    (tmp_path / "data" / "dataset.json").write_text(json.dumps(info))
    ds = DecathlonDataset("dec", {"root": "data"}, tmp_path)
    assert ds.labels == {1: "Anterior", 2: "Posterior"}
    assert ds.license == "CC-BY-SA 4.0"


def test_labels_are_required_without_dataset_json(tmp_path):
    write_case(tmp_path / "data", "a", *blob((6, 6, 6)))
    with pytest.raises(DatasetConfigError, match=r"'dec'.*labels"):
        DecathlonDataset("dec", {"root": "data"}, tmp_path)


def test_limit_keeps_the_first_subjects_and_hidden_files_are_ignored(tmp_path):
    for name in ("c", "a", "b", "._a"):
        write_case(tmp_path / "data", name, *blob((6, 6, 6)))
    assert make(tmp_path).all_subjects() == ["a", "b", "c"]
    assert make(tmp_path, limit=2).all_subjects() == ["a", "b"]


@pytest.mark.parametrize(
    "options, mentions",
    [
        ({"grid": [48, 64]}, "grid"),
        ({"grid": [48, 0, 48]}, "grid"),
        ({"limit": 0}, "limit"),
        ({"labels": {"one": "x"}}, "labels"),
        ({"labels": ["a", "b"]}, "labels"),
        ({"root": None}, "root"),
        ({"gird": [8, 8, 8]}, "gird"),
    ],
)
def test_bad_options_name_the_dataset_and_the_option(tmp_path, options, mentions):
    with pytest.raises(DatasetConfigError, match=rf"'dec'.*{mentions}"):
        make(tmp_path, **options)
