"""The `files` reader: subjects found by patterns, brought onto the grid through their affines,
cached, fingerprinted with their files, and failing one subject at a time with the file named.

Fixtures are tiny volumes written here; the geometry test stores an analytic phantom
anisotropic and rotated, so where its labels must land is known exactly in world coordinates.
"""

import gzip
import os
import re
import shutil
import time

import nibabel as nib
import numpy as np
import pytest

from conftest import SHARED_DATA
from warpbench.datasets import DatasetConfigError, SubjectError, load_subject
from warpbench.metrics import dice
from warpbench.plugins import load_registry
from warpbench.testing import assert_dataset_contract
from warpbench_decathlon import DecathlonDataset

import warpbench_files
from warpbench_files import FilesDataset, geometry, labeltables
from warpbench_files.gridded import GridCutsLabels, GridCutsLabelsWarning
from warpbench_files.reading import SubjectFileError

LABELS = {1: "first", 2: "second"}
PATTERNS = {"image": "{id}.nii.gz", "labels": "{id}_labels.nii.gz"}
SMALL = (16, 20, 18)


def write(path, array, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)


def small_subject(seed: int):
    """A bright ellipsoid of two labels on a dark background, shifted a little per seed."""
    grid = np.indices(SMALL).astype(float)
    centre = np.array(SMALL)[:, None, None, None] / 2 + (seed % 3) - 1
    inside = (((grid - centre) / np.array([5, 6, 5])[:, None, None, None]) ** 2).sum(0) <= 1
    labels = np.where(inside, np.where(grid[0] < centre[0], 1, 2), 0).astype(np.int16)
    image = (labels * 40.0 + 10.0 * inside + seed).astype(np.float32)
    return image, labels


def write_small(root, ids, affine=None, mask=False):
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    for seed, subject_id in enumerate(ids):
        image, labels = small_subject(seed)
        write(root / f"{subject_id}.nii.gz", image, affine)
        write(root / f"{subject_id}_labels.nii.gz", labels, affine)
        if mask:
            write(root / f"{subject_id}_mask.nii.gz", (labels == 1).astype(np.uint8), affine)


def make(base_dir, name="scans", **options):
    block = {"root": "data", "files": PATTERNS, "grid": list(SMALL), "labels": LABELS,
             "split": {"test": 1.0}, "pairs": {"test": 2}, **options}
    return FilesDataset(name, block, base_dir)


@pytest.fixture
def scans(tmp_path):
    write_small(tmp_path / "data", ["s1", "s2", "s3"])
    return tmp_path


def test_kinds_register_through_the_plugin_hook():
    registry = load_registry()  # through the `files` entry point, once pyproject.toml names it
    if "files" not in registry.dataset_kinds:
        registry = load_registry(extra_plugins=[warpbench_files])
    assert registry.dataset_kinds["files"] is FilesDataset
    assert {"files", "neurite-oasis", "learn2reg"} <= set(registry.dataset_kinds)
    owner = registry.owner["dataset:files"]
    assert not [p for p in registry.problems if p.plugin == owner]
    assert registry.plugins[owner].registered == [
        "dataset:files", "dataset:neurite-oasis", "dataset:learn2reg"]


def test_a_files_dataset_meets_the_dataset_contract(scans):
    dataset = make(scans)
    assert dataset.all_subjects() == ["s1", "s2", "s3"]  # the label files are not subjects
    assert_dataset_contract(dataset)


def test_patterns_reach_into_subfolders_with_wildcards_and_skip_hidden_files(tmp_path):
    root = tmp_path / "data"
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for seed, subject_id in enumerate(["0001", "0002"]):
        image, labels = small_subject(seed)
        folder = root / f"OASIS_OAS1_{subject_id}_MR1" / f"scan{seed}"
        write(folder / "aligned_norm.nii.gz", image, affine)
        write(folder / "aligned_seg35.nii.gz", labels, affine)
    hidden = root / "OASIS_OAS1_0003_MR1" / ".scan"  # an editor's or archiver's leftovers
    write(hidden / "aligned_norm.nii.gz", small_subject(0)[0], affine)
    write(hidden / "aligned_seg35.nii.gz", small_subject(0)[1], affine)
    dataset = make(tmp_path, files={"image": "OASIS_OAS1_{id}_MR1/*/aligned_norm.nii.gz",
                                    "labels": "OASIS_OAS1_{id}_MR1/*/aligned_seg35.nii.gz"})
    assert dataset.all_subjects() == ["0001", "0002"]
    np.testing.assert_array_equal(dataset.load("0002").labels, small_subject(1)[1])


def test_an_id_may_appear_twice_as_in_per_subject_folders(tmp_path):
    root = tmp_path / "data"
    for seed, subject_id in enumerate(["S01", "S02"]):
        image, labels = small_subject(seed)
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        write(root / subject_id / f"{subject_id}.native.mri.nii.gz", image, affine)
        write(root / subject_id / f"{subject_id}.native.label.nii.gz", labels, affine)
    write(root / "S03" / "S01.native.mri.nii.gz", small_subject(0)[0], np.eye(4))  # misfiled
    dataset = make(tmp_path, files={"image": "{id}/{id}.native.mri.nii.gz",
                                    "labels": "{id}/{id}.native.label.nii.gz"})
    assert dataset.all_subjects() == ["S01", "S02"]
    np.testing.assert_array_equal(dataset.load("S02").labels, small_subject(1)[1])


def test_a_subject_without_its_label_file_is_listed_and_fails_naming_the_file(scans):
    (scans / "data" / "s2_labels.nii.gz").unlink()
    dataset = make(scans)
    assert dataset.all_subjects() == ["s1", "s2", "s3"]
    assert dataset.availability() == (True, "")
    with pytest.raises(SubjectFileError) as error:
        dataset.load("s2")
    assert str(error.value).startswith(f"{scans / 'data' / 's2_labels.nii.gz'}: no such file")
    assert dataset.load("s1").id == "s1" and dataset.load("s3").id == "s3"


def test_corrupt_and_truncated_files_fail_their_subject_naming_the_path(scans):
    data = scans / "data"
    (data / "s1.nii.gz").write_bytes(b"this is not a NIfTI file at all" * 20)
    whole = (data / "s2_labels.nii.gz").read_bytes()
    (data / "s2_labels.nii.gz").write_bytes(whole[: len(whole) // 2])
    dataset = make(scans)
    for subject_id, path in (("s1", data / "s1.nii.gz"), ("s2", data / "s2_labels.nii.gz")):
        with pytest.raises(SubjectFileError) as error:
            dataset.load(subject_id)
        assert str(error.value).startswith(f"{path}: cannot read the ")
        assert f"subject {subject_id!r}" in str(error.value)
    assert dataset.load("s3").image.shape == SMALL


def test_fractional_labels_and_a_nan_image_are_refused_naming_the_file_never_rounded(scans):
    data = scans / "data"
    image, labels = small_subject(0)
    write(data / "s1_labels.nii.gz", labels * 0.75, np.diag([2.0, 2.0, 2.0, 1.0]))  # 0.75, 1.5
    write(data / "s2.nii.gz", np.full_like(image, np.nan), np.diag([2.0, 2.0, 2.0, 1.0]))
    dataset = make(scans)
    for subject_id, path, said in (("s1", data / "s1_labels.nii.gz", "not integers"),
                                   ("s2", data / "s2.nii.gz", "non-finite")):
        with pytest.raises(SubjectError, match=said) as error:
            load_subject(dataset, subject_id)
        assert str(path) in str(error.value) and f"subject {subject_id!r}" in str(error.value)
    assert dataset.load("s3").image.shape == SMALL


def test_an_ambiguous_pattern_makes_the_dataset_unavailable_naming_the_files(scans):
    write(scans / "data" / "s1_labels_old.nii.gz", small_subject(0)[1], np.eye(4))
    dataset = make(scans, files={"image": "{id}.nii.gz", "labels": "{id}_labels*.nii.gz"})
    available, reason = dataset.availability()
    assert not available
    assert "matches 2 files for subject 's1'" in reason and "s1_labels_old.nii.gz" in reason


# --- geometry through the affine -------------------------------------------------------------

#: An analytic phantom in world coordinates (mm): label -> (centre, semi-axes) of an ellipsoid.
PHANTOM = {1: ((-16, 9, 3), (15, 18, 27)), 2: ((18, -10, 6), (13, 16, 24)),
           3: ((0, 3, -18), (18, 15, 18))}


def world_of(affine, shape):
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape(3, *shape)


def phantom_labels(affine, shape):
    """The phantom's label at the centre of every voxel of the grid (``affine``, ``shape``)."""
    world = world_of(affine, shape)
    labels = np.zeros(shape, dtype=np.int16)
    for value, (centre, axes) in PHANTOM.items():
        inside = sum(((world[k] - centre[k]) / axes[k]) ** 2 for k in range(3)) <= 1
        labels[inside] = value
    return labels


def stored_affine(shape, degrees=20.0):
    """1 x 1 x 3 mm voxels whose first array axis runs inferior (3 mm), the second right and the
    third posterior, the whole turned by ``degrees`` about the superior axis: a volume stored in
    neither RAS order nor the world's axes nor isotropic."""
    turn = np.deg2rad(degrees)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0],
                         [0, 0, 1]])
    permuted = np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ permuted @ np.diag([3.0, 1.0, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2) + [1.3, -0.7, 0.4]
    return affine


@pytest.mark.parametrize("orientation", ["RAS", "LPS"])
def test_an_anisotropic_rotated_subject_lands_where_the_world_puts_its_labels(tmp_path,
                                                                             orientation):
    shape = (36, 100, 104)
    affine = stored_affine(shape)
    assert nib.aff2axcodes(affine) == ("I", "R", "P")
    labels = phantom_labels(affine, shape)
    write(tmp_path / "data" / "p1.nii.gz", (labels * 50.0 + 20.0).astype(np.float32), affine)
    write(tmp_path / "data" / "p1_labels.nii.gz", labels, affine)
    dataset = make(tmp_path, spacing=[1, 1, 1], grid=[96, 96, 96], orientation=orientation,
                   labels={1: "a", 2: "b", 3: "c"})
    subject = dataset.load("p1")
    assert subject.image.shape == subject.labels.shape == (96, 96, 96)
    assert subject.spacing == (1.0, 1.0, 1.0)
    assert "".join(nib.aff2axcodes(subject.affine)) == orientation
    reference = phantom_labels(subject.affine, subject.labels.shape)
    overlap = dice(reference, subject.labels, [1, 2, 3])
    assert overlap.min() >= 0.95, overlap
    # Centring the stored array without its affine (what a reader blind to geometry does)
    # puts the labels elsewhere: the test tells the two apart.
    blind = geometry.place(labels, (96, 96, 96), geometry.centre_offset(shape, (96, 96, 96)))
    assert np.nanmean(dice(reference, blind, [1, 2, 3])) < 0.5


def test_without_spacing_the_files_own_voxels_are_kept_only_reoriented(scans):
    flipped = np.diag([-2.0, 2.0, 2.0, 1.0])
    write_small(scans / "data", ["s1"], affine=flipped)  # stored LAS, read as RAS
    dataset = make(scans, orientation="RAS")
    subject = dataset.load("s1")
    np.testing.assert_array_equal(subject.labels, small_subject(0)[1][::-1])
    assert subject.spacing == (2.0, 2.0, 2.0)
    assert nib.aff2axcodes(subject.affine) == ("R", "A", "S")


def test_by_default_every_subject_takes_the_first_subjects_orientation(scans):
    write_small(scans / "data", ["s3"], affine=np.diag([-2.0, 2.0, 2.0, 1.0]))
    dataset = make(scans)
    assert dataset.orientation == "RAS"
    np.testing.assert_array_equal(dataset.load("s3").labels, small_subject(0)[1][::-1])


def test_a_mask_zeroes_the_image_outside_it_and_leaves_the_labels(tmp_path):
    write_small(tmp_path / "data", ["s1", "s2"], mask=True)
    files = {**PATTERNS, "mask": "{id}_mask.nii.gz"}
    masked = make(tmp_path, files=files).load("s1")
    plain = make(tmp_path, name="plain").load("s1")
    outside = small_subject(0)[1] != 1
    assert np.all(masked.image[outside] == 0) and masked.image[~outside].max() == 1.0
    assert np.any(plain.image[outside] > 0)
    np.testing.assert_array_equal(masked.labels, plain.labels)
    with_labels = make(tmp_path, name="both", files=files, mask_labels=True).load("s1")
    assert set(np.unique(with_labels.labels)) == {0, 1}


def test_a_grid_that_cuts_off_labels_warns_naming_the_subject_or_fails(scans):
    small = [10, 20, 18]
    with pytest.warns(GridCutsLabelsWarning, match=r"subject 's1'.* cuts off \d+ of its \d+"):
        subject = make(scans, grid=small).load("s1")
    assert subject.image.shape == tuple(small)
    with pytest.warns(GridCutsLabelsWarning):  # a cached subject warns again
        make(scans, grid=small).load("s1")
    with pytest.raises(GridCutsLabels, match="set a larger 'grid'"):
        make(scans, name="strict", grid=small, cut_labels="error").load("s1")


# --- the cache and the fingerprint -------------------------------------------------------------


def test_a_second_read_loads_from_the_cache_without_preprocessing(scans, monkeypatch):
    first = make(scans).load("s2")
    cached = sorted(p.name for p in (scans / "results/cache/datasets/scans/s2").iterdir())
    assert len(cached) == 3 and any(name.endswith(".json") for name in cached)

    def refuse(*args, **kwargs):
        raise AssertionError("preprocessed a cached subject again")

    monkeypatch.setattr(geometry, "to_grid", refuse)
    again = make(scans).load("s2")
    np.testing.assert_array_equal(again.image, first.image)
    np.testing.assert_array_equal(again.labels, first.labels)
    np.testing.assert_array_equal(again.affine, first.affine)
    with pytest.raises(AssertionError, match="again"):  # another grid is another cache entry
        make(scans, grid=[18, 20, 18]).load("s2")


def test_a_touched_source_file_is_preprocessed_again(scans, monkeypatch):
    make(scans).load("s1")
    calls = []
    real = geometry.to_grid
    monkeypatch.setattr(geometry, "to_grid", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = scans / "data" / "s1.nii.gz"
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 10**9))
    make(scans).load("s1")
    assert calls == [1]
    entries = list((scans / "results/cache/datasets/scans/s1").iterdir())
    assert len(entries) == 3  # the old entry is gone


def test_a_damaged_cache_entry_is_preprocessed_again(scans):
    first = make(scans).load("s1")
    for cached in (scans / "results/cache/datasets/scans/s1").glob("*_image.nii.gz"):
        cached.write_bytes(cached.read_bytes()[:100])
    np.testing.assert_array_equal(make(scans).load("s1").image, first.image)


def test_the_fingerprint_changes_with_the_files_and_not_otherwise(scans):
    before = make(scans).fingerprint()
    assert make(scans).fingerprint() == before
    path = scans / "data" / "s3_labels.nii.gz"
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 10**9))
    touched = make(scans).fingerprint()
    assert touched != before
    write_small(scans / "data", ["s4"])
    assert make(scans).fingerprint() not in (before, touched)


def test_a_file_changed_after_the_dataset_looked_fails_rather_than_mixing_versions(scans):
    dataset = make(scans)
    dataset.fingerprint()
    path = scans / "data" / "s1_labels.nii.gz"
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 10**9))
    with pytest.raises(SubjectFileError, match=f"^{re.escape(str(path))}: changed since"):
        dataset.load("s1")


# --- file formats ------------------------------------------------------------------------------


def test_analyze_pairs_read_plain_gzipped_and_mixed(tmp_path):
    image, labels = small_subject(0)
    root = tmp_path / "data"
    root.mkdir()
    for array, suffix in ((image, ""), (labels, "_labels")):
        analyze = nib.AnalyzeImage(array, np.diag([2.0, 2.0, 2.0, 1.0]))
        nib.save(analyze, root / f"plain{suffix}.hdr")  # plain.hdr + plain.img
        nib.save(analyze, root / f"zipped{suffix}.img.gz")  # zipped.hdr.gz + zipped.img.gz
        shutil.copy(root / f"plain{suffix}.hdr", root / f"mixed{suffix}.hdr")
        with open(root / f"plain{suffix}.img", "rb") as raw:
            with gzip.open(root / f"mixed{suffix}.img.gz", "wb") as packed:
                packed.write(raw.read())  # mixed.hdr + mixed.img.gz: nibabel alone cannot pair them
    dataset = make(tmp_path, files={"image": "{id}.hdr", "labels": "{id}_labels.hdr"})
    assert dataset.all_subjects() == ["mixed", "plain"]
    by_img = make(tmp_path, name="by-img",
                  files={"image": "{id}.img.gz", "labels": "{id}_labels.img.gz"})
    assert by_img.all_subjects() == ["mixed", "zipped"]
    loaded = [dataset.load("plain"), dataset.load("mixed"), by_img.load("zipped")]
    for subject in loaded:
        np.testing.assert_array_equal(subject.labels, loaded[0].labels)
        np.testing.assert_array_equal(subject.image, loaded[0].image)
        np.testing.assert_array_equal(subject.affine, loaded[0].affine)
    assert set(np.unique(loaded[0].labels)) == {0, 1, 2}
    assert loaded[0].spacing == (2.0, 2.0, 2.0)


# --- labels found in the files, labels on the image's voxels, where the data comes from ----------


def test_labels_found_are_every_value_the_label_maps_hold_read_once(scans, monkeypatch):
    data = scans / "data"
    image, labels = small_subject(2)
    write(data / "s3_labels.nii.gz", np.where(labels == 2, 7, labels).astype(np.int16),
          np.diag([2.0, 2.0, 2.0, 1.0]))  # s3 holds 1 and 7, the others 1 and 2
    dataset = make(scans, labels="found")
    assert dataset.labels == {1: "label_1", 2: "label_2", 7: "label_7"}
    record = scans / "results/cache/datasets/scans/.found-labels.json"
    assert record.is_file()
    reads = []
    real = labeltables.read_volume
    monkeypatch.setattr(labeltables, "read_volume", lambda *a: reads.append(a[0]) or real(*a))
    assert make(scans, labels="found").labels == dataset.labels and reads == []  # remembered
    path = data / "s1_labels.nii.gz"
    write(path, (small_subject(0)[1] * 4).astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 10**9))
    assert make(scans, labels="found").labels == {
        1: "label_1", 2: "label_2", 4: "label_4", 7: "label_7", 8: "label_8"}
    assert reads == [path]  # only the changed file is read again
    assert dataset.load("s1").id == "s1"  # the subjects load as ever


def test_labels_found_with_no_readable_label_map_is_unavailable(scans):
    for subject_id in ("s1", "s2", "s3"):
        (scans / "data" / f"{subject_id}_labels.nii.gz").write_bytes(b"not a volume")
    dataset = make(scans, labels="found")
    assert dataset.labels == {}
    available, reason = dataset.availability()
    assert not available and "'labels: found' finds no label value above 0" in reason


def test_label_geometry_image_puts_labels_on_the_image_voxels_whatever_their_header(tmp_path):
    root = tmp_path / "data"
    image, labels = small_subject(0)
    write(root / "s1.nii.gz", image, np.diag([2.0, 2.0, 2.0, 1.0]))
    write(root / "s1_labels.nii.gz", labels, np.eye(4))  # a header without the voxel size
    write(root / "s2.nii.gz", image, np.diag([2.0, 2.0, 2.0, 1.0]))
    write(root / "s2_labels.nii.gz", labels[:, :, :-1], np.eye(4))  # one slice short
    on_image = make(tmp_path, label_geometry="image")
    np.testing.assert_array_equal(on_image.load("s1").labels, labels)
    with pytest.raises(SubjectFileError) as error:
        on_image.load("s2")
    assert str(error.value).startswith(f"{root / 's2_labels.nii.gz'}: the label map has shape")
    assert str(root / "s2.nii.gz") in str(error.value)
    by_header = make(tmp_path, name="own").load("s1")  # the default: where the header puts it
    assert np.count_nonzero(by_header.labels) < 0.5 * np.count_nonzero(labels)


def test_obtain_is_told_while_the_root_is_missing(tmp_path):
    dataset = make(tmp_path, obtain="scans.tar from https://example.org, extracted into data/")
    assert dataset.availability() == (False, (
        f"root {tmp_path / 'data'} does not exist; the data: scans.tar from "
        "https://example.org, extracted into data/"))
    assert make(tmp_path, labels="found").labels == {}  # nothing to read yet, and no error


# --- the options -------------------------------------------------------------------------------


DROP = object()  # a key the block leaves out


@pytest.mark.parametrize("options, message", [
    ({"grid": DROP}, "needs 'grid'"),
    ({"orientation": "RAX"}, "option 'orientation': must be 3 axis letters"),
    ({"files": {"image": "scan.nii.gz", "labels": "{id}_labels.nii.gz"}},
     "option 'files.image': must hold '{id}' (the subject id)"),
    ({"labels": DROP}, "needs 'labels: {1: name"),
    ({"labels": DROP, "labels_file": "table.txt"}, "option 'labels_file': "),
    ({"spacing": [1, 0, 1]}, "option 'spacing': must be 3 positive numbers"),
    ({"cut_labels": "ignore"}, "option 'cut_labels'"),
    ({"labels": "all"}, "option 'labels': must be a mapping of positive label values to names, "
                        "or 'found'"),
    ({"label_geometry": "world"}, "option 'label_geometry'"),
    ({"file": PATTERNS}, "unknown option 'file'"),
])
def test_bad_blocks_fail_naming_the_dataset_and_the_option(scans, options, message):
    block = {"root": "data", "files": PATTERNS, "grid": list(SMALL), "labels": LABELS, **options}
    block = {key: value for key, value in block.items() if value is not DROP}
    with pytest.raises(DatasetConfigError, match=r"^dataset 'scans' \(files\): ") as error:
        FilesDataset("scans", block, scans)
    assert message in str(error.value)


# --- the shared real data ----------------------------------------------------------------------


def test_the_hippocampus_through_files_matches_the_decathlon_reader(hippocampus_root, tmp_path):
    common = {"root": str(hippocampus_root), "grid": [48, 64, 48],
              "labels": {1: "hippocampus_anterior", 2: "hippocampus_posterior"}}
    files = FilesDataset("hippocampus", {
        **common, "files": {"image": "imagesTr/{id}.nii.gz", "labels": "labelsTr/{id}.nii.gz"}},
        tmp_path)
    decathlon = DecathlonDataset("hippocampus", common, tmp_path)
    assert files.availability() == (True, "")
    assert files.all_subjects() == decathlon.all_subjects()
    assert len(files.all_subjects()) == 195
    assert files.subjects("test") == decathlon.subjects("test")
    assert files.pairs("test") == decathlon.pairs("test")
    for subject_id in files.all_subjects()[:: 39]:  # five subjects, the same arrays exactly
        ours, theirs = files.load(subject_id), decathlon.load(subject_id)
        assert ours.image.shape == theirs.image.shape == (48, 64, 48)
        np.testing.assert_array_equal(ours.image, theirs.image)
        np.testing.assert_array_equal(ours.labels, theirs.labels)
        np.testing.assert_array_equal(ours.affine, theirs.affine)


def test_the_brain_at_2_mm_keeps_its_30_evaluated_labels(tmp_path):
    brain = SHARED_DATA / "brain"
    if not (brain / "subject_a_image.nii.gz").is_file():
        pytest.skip(f"real brain data not found at {brain}")
    values = [int(v) for v in (brain / "eval_labels.txt").read_text().split()]
    assert len(values) == 30
    dataset = FilesDataset("brain", {
        "root": str(brain), "files": {"image": "{id}_image.nii.gz", "labels": "{id}_labels.nii.gz"},
        "spacing": [2, 2, 2], "grid": [80, 96, 112], "labels_file": "eval_labels.txt",
        "split": {"test": 1}, "pairs": {"test": 0}}, tmp_path)
    assert dataset.all_subjects() == ["subject_a"]
    assert sorted(dataset.labels) == sorted(values)
    subject = dataset.load("subject_a")
    assert subject.image.shape == (80, 96, 112) and subject.spacing == (2.0, 2.0, 2.0)
    assert set(values) <= set(np.unique(subject.labels).tolist())
    full = np.asarray(nib.load(brain / "subject_a_labels.nii.gz").dataobj)
    for value in values:  # each structure keeps its volume to within a few percent
        assert abs(8 * np.sum(subject.labels == value) / np.sum(full == value) - 1) < 0.15
