"""The synthetic datasets: deterministic, anatomy-like, intensity models that differ, a safe cache."""

import itertools
import json
import os

import nibabel as nib
import numpy as np
import pytest

from warpbench.config import build_dataset, load_config
from warpbench.datasets import DatasetConfigError
from warpbench.plugins import load_registry
from warpbench_synthetic import SyntheticDataset
from warpbench_synthetic.anatomy import random_diffeomorphism


def make(tmp_path, name="synth", **options):
    return SyntheticDataset(name, {"subjects": 3, **options}, tmp_path)


def dice(a, b, value):
    return 2 * np.sum((a == value) & (b == value)) / (np.sum(a == value) + np.sum(b == value))


def label_means(subject):
    return {v: float(subject.image[subject.labels == v].mean()) for v in np.unique(subject.labels) if v}


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    """The first two subjects of a default-shaped dataset, generated once for the module."""
    ds = make(tmp_path_factory.mktemp("synth"))
    return ds, ds.load("subject_000"), ds.load("subject_001")


def test_kind_is_registered_through_its_entry_point():
    registry = load_registry()
    assert registry.dataset_kinds.get("synthetic") is SyntheticDataset
    assert not [p for p in registry.problems if p.plugin == "synthetic"]


def test_subject_follows_the_spatial_contract(subjects):
    ds, subject, _ = subjects
    assert subject.image.shape == subject.labels.shape == (48, 56, 48)
    assert subject.image.dtype == np.float32
    assert np.issubdtype(subject.labels.dtype, np.integer)
    assert subject.image.min() == 0.0 and subject.image.max() == 1.0
    assert subject.spacing == (2.0, 2.0, 2.0)
    assert ds.license == "CC0 (generated)" and "warpbench" in ds.citation


def test_same_seed_gives_identical_arrays_and_another_seed_does_not(tmp_path, subjects):
    _, first, _ = subjects
    again = make(tmp_path / "a").load("subject_000")
    np.testing.assert_array_equal(again.image, first.image)
    np.testing.assert_array_equal(again.labels, first.labels)
    other = make(tmp_path / "b", seed=1).load("subject_000")
    assert np.mean(other.labels != first.labels) > 0.01


def test_at_least_ten_labels_all_present_with_varied_sizes(subjects):
    ds, subject, _ = subjects
    assert len(ds.labels) >= 10
    assert 0 not in ds.labels
    counts = {v: int(np.sum(subject.labels == v)) for v in ds.labels}
    assert min(counts.values()) > 0, counts
    assert max(counts.values()) / min(counts.values()) > 10, counts
    assert set(np.unique(subject.labels)) <= {0, *ds.labels}


def test_subjects_differ_but_overlap_like_real_anatomy(subjects):
    ds, first, second = subjects
    assert np.mean(first.labels != second.labels) > 0.02
    mean_dice = np.mean([dice(first.labels, second.labels, v) for v in ds.labels])
    assert 0.4 < mean_dice < 0.95


def test_deformations_do_not_fold():
    disp = random_diffeomorphism((48, 56, 48), np.random.default_rng(7))
    assert 1.0 < np.abs(disp).max() < 10.0
    grads = [np.gradient(disp[k]) for k in range(3)]
    jacobian = np.stack([np.stack([grads[k][j] + (k == j) for j in range(3)]) for k in range(3)])
    det = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    assert det.min() > 0


def test_grouped_labels_share_intensity_and_distinct_ones_do_not(tmp_path):
    grouped = label_means(make(tmp_path, intensity="grouped", noise=0.02).load("subject_000"))
    cortex = [grouped[v] for v in range(1, 9)]  # the eight cortical parcels, one tissue
    assert max(cortex) - min(cortex) < 0.01
    assert abs(grouped[9] - grouped[10]) < 0.01  # left and right white matter
    levels = np.sort(list(grouped.values()))
    assert np.sum(np.diff(levels) > 0.05) + 1 == 4  # one level per tissue class
    distinct = label_means(make(tmp_path, intensity="distinct", noise=0.02).load("subject_000"))
    gaps = [abs(a - b) for a, b in itertools.combinations(distinct.values(), 2)]
    assert min(gaps) > 0.01


def test_inverted_contrast_reverses_the_intensity_order(tmp_path):
    t1 = label_means(make(tmp_path, contrast="t1").load("subject_000"))
    inverted = label_means(make(tmp_path, contrast="inverted").load("subject_000"))
    assert sorted(t1, key=t1.get) == sorted(inverted, key=inverted.get)[::-1]
    assert t1[9] > t1[1] > t1[11]  # T1: white matter > grey matter > CSF
    assert inverted[9] < inverted[1] < inverted[11]


def test_acquisition_options_change_the_image_but_not_the_anatomy(tmp_path, subjects):
    _, plain, _ = subjects
    degraded = make(tmp_path, intensity="grouped", bias=0.3, blur=1.0, noise=0.08).load("subject_000")
    np.testing.assert_array_equal(degraded.labels, plain.labels)
    assert np.abs(degraded.image - plain.image).mean() > 0.02


def test_second_instance_loads_from_the_cache_without_generating(tmp_path, monkeypatch):
    first = make(tmp_path).load("subject_001")
    files = sorted(make(tmp_path).cache_dir.iterdir())
    assert [f.name for f in files] == ["subject_001_image.nii", "subject_001_labels.nii"]
    mtimes = [f.stat().st_mtime_ns for f in files]

    def no_generation(self, index):
        raise AssertionError("regenerated a cached subject")

    monkeypatch.setattr(SyntheticDataset, "_generate", no_generation)
    again = make(tmp_path).load("subject_001")
    np.testing.assert_array_equal(again.image, first.image)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_cache_is_keyed_by_content_options_only(tmp_path):
    base = make(tmp_path)
    assert make(tmp_path, subjects=5, pairs={"test": 2}).cache_dir == base.cache_dir
    assert make(tmp_path, noise=0.05).cache_dir != base.cache_dir
    assert base.cache_dir.parent == tmp_path / "results" / "cache" / "datasets"
    assert make(tmp_path, cache_dir="elsewhere").cache_dir.parent == tmp_path / "elsewhere"


def test_a_truncated_cached_file_is_regenerated(tmp_path, caplog):
    ds = make(tmp_path)
    original = ds.load("subject_000")
    image_file = ds.cache_dir / "subject_000_image.nii"
    image_file.write_bytes(image_file.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        again = make(tmp_path).load("subject_000")
    assert "unreadable" in caplog.text and image_file.name in caplog.text
    np.testing.assert_array_equal(again.image, original.image)
    assert nib.load(image_file).shape == (48, 56, 48)


def test_an_interrupted_write_leaves_no_file_behind(tmp_path, monkeypatch):
    def crash(image, filename):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", crash)
    ds = make(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        ds.load("subject_000")
    assert os.listdir(ds.cache_dir) == []


def test_splits_are_disjoint_and_pairs_stay_in_the_test_split(tmp_path):
    ds = make(tmp_path, subjects=10, split={"train": 5, "val": 1, "test": 4}, pairs={"test": 6})
    splits = {s: set(ds.subjects(s)) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5, 1, 4]
    assert set.union(*splits.values()) == set(ds.all_subjects())
    pairs = ds.pairs("test")
    assert len(pairs) == 6 and len(set(pairs)) == 6
    assert all(p.fixed in splits["test"] and p.moving in splits["test"] for p in pairs)
    assert all(p.fixed != p.moving for p in pairs)


@pytest.mark.parametrize(
    "options, mentions",
    [
        ({"intensity": "vivid"}, "intensity"),
        ({"contrast": "t2"}, "contrast"),
        ({"noise": -0.1}, "noise"),
        ({"blur": "lots"}, "blur"),
        ({"shape": [48, 56]}, "shape"),
        ({"shape": [8, 56, 48]}, "shape"),
        ({"spacing": [2, 0, 2]}, "spacing"),
        ({"subjects": 0}, "subjects"),
        ({"seed": 1.5}, "seed"),
        ({"noize": 0.1}, "noize"),
    ],
)
def test_bad_options_name_the_dataset_and_the_option(tmp_path, options, mentions):
    with pytest.raises(DatasetConfigError, match=rf"'my-synth'.*{mentions}"):
        make(tmp_path, name="my-synth", **options)


def test_unknown_subject_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="subject_099"):
        make(tmp_path).load("subject_099")


@pytest.mark.parametrize("name", ["../escape", "nested/name", "..", "tab\tname"])
def test_a_name_that_is_not_one_path_component_is_refused_before_the_cache_is_touched(
        tmp_path, name):
    (tmp_path / "datasets.yaml").write_text(
        f"datasets:\n  {json.dumps(name)}:\n    plugin: synthetic\n    subjects: 2\n")
    config = load_config(tmp_path / "datasets.yaml")
    with pytest.raises(DatasetConfigError) as refused:
        build_dataset(config, name, load_registry().dataset_kinds).load("subject_000")
    message = str(refused.value)
    assert f"datasets.yaml: dataset {name!r} (synthetic)" in message  # names the block
    assert "cannot be part of a path" in message
    assert [p.name for p in tmp_path.rglob("*")] == ["datasets.yaml"]  # nothing read or written
