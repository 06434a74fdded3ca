"""The four Klein et al. 2009 blocks of the shipped datasets.yaml (lpba40, ibsr18, cumc12, mgh10)
read tiny fixtures written in each distribution's exact layout and file names, as Analyze 7.5
``.hdr/.img`` pairs: the blocks are taken from the real datasets.yaml, only their root (and
cache) pointed at the fixture and their grid made smaller, so what is tested is what ships.

- LPBA40: ``delineation_space/S01/S01.delineation.skullstripped.{hdr,img}`` and
  ``S01.delineation.structure.label.{hdr,img}``, the 56 structures of its table;
- IBSR18, CUMC12, MGH10: ``Heads/<id>``, ``Atlases/<id>``, ``BrainMasks/<id>`` with one id in all
  three folders, the mask applied to the head.

The label maps are written with unit voxel sizes and the images with the real anisotropic ones
where a block says ``label_geometry: image`` (the label headers of these distributions are
reported to carry no geometry of their own), so the test shows the labels land on the image's
voxels all the same. Each volume is some 64,000 voxels: the whole file runs in seconds.
"""

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from warpbench.datasets import load_subject
from warpbench_files import FilesDataset
from warpbench_files.reading import SubjectFileError

REPO = Path(__file__).resolve().parents[1]
#: The files' own voxel sizes (LPBA40's reported 0.86 x 1.5 x 0.86 mm; the CUMC12 label volume
#: read for this work is 0.859 x 0.859 x 1.5 mm), on small grids.
LPBA_SHAPE, LPBA_ZOOMS = (48, 28, 48), (0.86, 1.5, 0.86)
HEAD_SHAPE, HEAD_ZOOMS = (48, 48, 28), (0.86, 0.86, 1.5)
#: The grid the tests ask for instead of the blocks' 112^3, to stay small (spacing stays 2 mm).
GRID = [24, 24, 24]


def block_of(name: str) -> dict:
    """The block ``name`` of the real datasets.yaml, as the kind sees it (without ``plugin``)."""
    block = dict(yaml.safe_load((REPO / "datasets.yaml").read_text())["datasets"][name])
    assert block.pop("plugin") == "files"
    return block


def shipped(name: str, root: Path) -> dict:
    """The shipped block ``name`` with its root (and cache) moved to ``root``, on a small grid."""
    return {**block_of(name), "root": str(root), "cache_dir": str(root.parent / "cache"),
            "grid": GRID}


def phantom(shape, values, seed):
    """An ellipsoid split into slabs along the first axis, one slab per label value, and a head
    image brighter inside it; the slab borders move a voxel with the seed."""
    grid = np.indices(shape).astype(float)
    centre = np.array(shape, float)[:, None, None, None] / 2 + (seed % 3) - 1
    radii = np.array(shape, float)[:, None, None, None] / 2.6
    inside = (((grid - centre) / radii) ** 2).sum(0) <= 1
    slab = np.clip(((grid[0] - grid[0][inside].min()) * len(values)
                    / np.ptp(grid[0][inside]) + 1e-9).astype(int), 0, len(values) - 1)
    labels = np.where(inside, np.asarray(values)[slab], 0).astype(np.int16)
    image = (10.0 + 60.0 * inside + 0.1 * labels + seed).astype(np.float32)
    return image, labels, inside


def analyze(path: Path, array, zooms):
    """``array`` as an Analyze 7.5 pair ``path`` (.hdr) + .img with these voxel sizes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.AnalyzeImage(array, None)
    image.header.set_zooms(zooms)
    nib.save(image, path)
    assert path.with_suffix(".img").is_file()


def lpba40_root(root: Path, ids=("S01", "S02", "S03")) -> dict[str, np.ndarray]:
    """S01's image is stored 4-D (X, Y, Z, 1), as public readers of LPBA40 index it, and S03's
    data gzipped beside a plain header (``.hdr`` + ``.img.gz``): both read like the others."""
    values = [21, 22, 165, 166, 181, 182]  # a few of the 56
    maps = {}
    for seed, subject_id in enumerate(ids):
        image, labels, _ = phantom(LPBA_SHAPE, values, seed)
        folder = root / "delineation_space" / subject_id
        header = folder / f"{subject_id}.delineation.skullstripped.hdr"
        if subject_id == "S01":
            analyze(header, image[..., None], (*LPBA_ZOOMS, 1))
        else:
            analyze(header, image, LPBA_ZOOMS)
        if subject_id == "S03":
            data = header.with_suffix(".img")
            with gzip.open(data.with_suffix(".img.gz"), "wb") as packed:
                packed.write(data.read_bytes())
            data.unlink()
        analyze(folder / f"{subject_id}.delineation.structure.label.hdr", labels, (1, 1, 1))
        maps[subject_id] = labels
    return maps


def heads_root(root: Path, ids, values, label_zooms=(1, 1, 1)) -> dict[str, np.ndarray]:
    maps = {}
    for seed, subject_id in enumerate(ids):
        image, labels, inside = phantom(HEAD_SHAPE, values[seed % len(values)], seed)
        analyze(root / "Heads" / f"{subject_id}.hdr", image, HEAD_ZOOMS)
        analyze(root / "Atlases" / f"{subject_id}.hdr", labels, label_zooms)
        analyze(root / "BrainMasks" / f"{subject_id}.hdr", inside.astype(np.uint8), label_zooms)
        maps[subject_id] = labels
    return maps


def counts(labels: np.ndarray) -> dict[int, int]:
    values, number = np.unique(labels[labels > 0], return_counts=True)
    return dict(zip(values.tolist(), number.tolist()))


def assert_on_the_image_voxels(subject, labels_as_written):
    """The subject's label map is the written one resampled from the image's voxels to 2 mm:
    each structure keeps its volume in mm^3 to within the resampling's error."""
    written = counts(labels_as_written)
    got = counts(subject.labels)
    assert set(got) == set(written)
    voxel = np.prod(LPBA_ZOOMS)  # the same volume for both fixtures' voxel sizes
    for value, n in written.items():
        assert abs(got[value] * 8.0 / (n * voxel) - 1) < 0.5, (value, got[value], n)


# --- LPBA40 ------------------------------------------------------------------------------------


def test_lpba40_reads_its_delineation_space_with_its_56_structures(tmp_path):
    maps = lpba40_root(tmp_path / "LPBA40")
    dataset = FilesDataset("lpba40", shipped("lpba40", tmp_path / "LPBA40"), tmp_path)
    assert dataset.availability() == (True, "")
    assert dataset.all_subjects() == ["S01", "S02", "S03"]
    assert len(dataset.labels) == 56 and min(dataset.labels) == 21 and max(dataset.labels) == 182
    assert dataset.labels[21] == "L_superior_frontal_gyrus"
    assert dataset.labels[22] == "R_superior_frontal_gyrus"
    assert (dataset.labels[181], dataset.labels[182]) == ("cerebellum", "brainstem")
    assert dataset.pre_aligned is False
    assert dataset.subjects("test") == ["S01", "S02", "S03"] and dataset.subjects("train") == []
    assert len(dataset.pairs("test")) == 6  # 100 asked, every ordered pair of three
    assert "Shattuck" in dataset.citation and "Klein" in dataset.citation
    for subject_id in ("S01", "S02", "S03"):
        subject = load_subject(dataset, subject_id)
        assert subject.image.shape == tuple(GRID) and subject.spacing == (2.0, 2.0, 2.0)
        assert_on_the_image_voxels(subject, maps[subject_id])


def test_lpba40_labels_stored_without_voxel_sizes_still_land_on_the_brain(tmp_path):
    """The label header says 1 mm, the image 0.86 x 1.5 x 0.86: taken through its own affine the
    label map would overhang the brain; on the image's voxels it covers it."""
    lpba40_root(tmp_path / "LPBA40", ids=("S01",))
    block = shipped("lpba40", tmp_path / "LPBA40")
    subject = FilesDataset("lpba40", block, tmp_path).load("S01")
    outside = overhang(subject)
    assert outside < 0.02
    own = FilesDataset("own", {**block, "label_geometry": "own"}, tmp_path).load("S01")
    assert overhang(own) > 5 * max(outside, 0.02)  # through its own 1 mm header: misplaced


def overhang(subject) -> float:
    """The share of the labelled voxels that lie outside the brain the image shows."""
    brain = subject.image > 0.25
    return np.count_nonzero(subject.labels[~brain]) / np.count_nonzero(subject.labels)


def test_an_lpba40_subject_with_a_missing_or_truncated_file_fails_naming_it(tmp_path):
    root = tmp_path / "LPBA40"
    lpba40_root(root, ids=("S01", "S02", "S03", "S04"))
    folder = root / "delineation_space"
    (folder / "S02" / "S02.delineation.structure.label.img").unlink()
    data = folder / "S04" / "S04.delineation.skullstripped.img"
    data.write_bytes(data.read_bytes()[:100])
    dataset = FilesDataset("lpba40", shipped("lpba40", root), tmp_path)
    assert dataset.all_subjects() == ["S01", "S02", "S03", "S04"]
    assert dataset.availability() == (True, "")
    with pytest.raises(SubjectFileError) as error:
        dataset.load("S02")
    header = folder / "S02" / "S02.delineation.structure.label.hdr"
    assert str(error.value).startswith(f"{header.with_suffix('.img')}: no such file (the data of "
                                       f"{header}, the label map of subject 'S02'")
    with pytest.raises(SubjectFileError) as error:
        dataset.load("S04")
    assert str(error.value).startswith(f"{folder / 'S04' / 'S04.delineation.skullstripped.hdr'}:")
    assert f"its pair: {data}" in str(error.value)
    assert [dataset.load(s).id for s in ("S01", "S03")] == ["S01", "S03"]


# --- IBSR18, CUMC12, MGH10 ---------------------------------------------------------------------


@pytest.mark.parametrize("name, ids", [
    ("ibsr18", ["IBSR_01", "IBSR_02", "IBSR_03"]),
    ("mgh10", ["g1", "g2", "g3"]),
])
def test_ibsr18_and_mgh10_evaluate_every_label_value_their_atlases_hold(tmp_path, name, ids):
    root = tmp_path / name.upper()
    maps = heads_root(root, ids, [[2, 3, 41, 42], [2, 3, 17, 1035]])
    dataset = FilesDataset(name, shipped(name, root), tmp_path)
    assert dataset.availability() == (True, "")
    assert dataset.all_subjects() == sorted(ids)
    assert dataset.labels == {v: f"label_{v}" for v in (2, 3, 17, 41, 42, 1035)}  # the union
    assert dataset.pre_aligned is False and dataset.subjects("test") == sorted(ids)
    subject = load_subject(dataset, ids[1])
    assert subject.image.shape == tuple(GRID)
    assert_on_the_image_voxels(subject, maps[ids[1]])
    assert (subject.image[subject.labels == 0] == 0).all()  # the brain mask zeroes the head
    inside = subject.image[subject.labels > 0]
    assert np.count_nonzero(inside) > 0.9 * inside.size  # and keeps the labelled brain


def test_cumc12_names_its_130_labels_and_applies_its_brain_mask(tmp_path):
    root = tmp_path / "CUMC12"
    # the label files keep their real voxel sizes here: the cumc12 block reads them as they are
    maps = heads_root(root, ["m1", "m2", "m3"], [[3, 15, 16, 97, 98, 132]], HEAD_ZOOMS)
    dataset = FilesDataset("cumc12", shipped("cumc12", root), tmp_path)
    assert dataset.all_subjects() == ["m1", "m2", "m3"]
    assert sorted(dataset.labels) == list(range(3, 133))
    assert dataset.labels[15] == "L_hippocampus" and dataset.labels[132] == "R_frontal_pole"
    assert len(dataset.pairs("test")) == 6  # all: every ordered pair
    assert_on_the_image_voxels(dataset.load("m3"), maps["m3"])


def test_found_labels_skip_a_corrupt_atlas_whose_subject_then_fails_naming_it(tmp_path):
    root = tmp_path / "MGH10"
    heads_root(root, ["g1", "g2", "g3"], [[2, 3], [2, 3], [2, 3, 99]])
    atlas = root / "Atlases" / "g3.img"
    atlas.write_bytes(b"\0" * 10)  # truncated: its label 99 cannot be seen
    (root / "BrainMasks" / "g2.hdr").unlink()
    dataset = FilesDataset("mgh10", shipped("mgh10", root), tmp_path)
    assert dataset.labels == {2: "label_2", 3: "label_3"}
    assert dataset.availability() == (True, "")
    with pytest.raises(SubjectFileError) as error:
        dataset.load("g3")
    assert str(error.value).startswith(f"{root / 'Atlases' / 'g3.hdr'}: cannot read the label map")
    assert f"its pair: {atlas}" in str(error.value)
    with pytest.raises(SubjectFileError) as error:
        dataset.load("g2")
    assert str(error.value).startswith(f"{root / 'BrainMasks' / 'g2.hdr'}: no such file")
    assert dataset.load("g1").id == "g1"


def test_an_atlas_not_shaped_like_its_head_fails_naming_both(tmp_path):
    root = tmp_path / "IBSR18"
    heads_root(root, ["IBSR_01", "IBSR_02"], [[2, 3]])
    analyze(root / "Atlases" / "IBSR_02.hdr", np.zeros((24, 24, 13), np.int16), (1, 1, 1))
    dataset = FilesDataset("ibsr18", shipped("ibsr18", root), tmp_path)
    with pytest.raises(SubjectFileError) as error:
        dataset.load("IBSR_02")
    message = str(error.value)
    assert message.startswith(f"{root / 'Atlases' / 'IBSR_02.hdr'}: the label map has shape")
    assert str(root / "Heads" / "IBSR_02.hdr") in message
    assert dataset.load("IBSR_01").id == "IBSR_01"


@pytest.mark.parametrize("name", ["lpba40", "ibsr18", "cumc12", "mgh10"])
def test_without_its_files_each_block_is_unavailable_saying_where_to_get_them(tmp_path, name):
    block = block_of(name)
    dataset = FilesDataset(name, {**block, "cache_dir": str(tmp_path / "cache")}, tmp_path)
    available, reason = dataset.availability()
    assert not available
    assert reason.startswith(f"root {tmp_path / block['root']} does not exist; the data: ")
    assert block["obtain"] in reason and "http" in reason
    assert dataset.license and "Klein A" in dataset.citation
    assert dataset.settings.split.test == 1.0 and dataset.pre_aligned is False
