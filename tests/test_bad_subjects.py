"""A subject whose files cannot be used costs only its own pairs: it is named once, its pairs are
stored as failed with the reason, MI(i;s) is computed on the subjects that load, and every other
dataset is fully scored (issue 18, defect 2)."""

import nibabel as nib
import numpy as np
import pytest

from warpbench.cli import main
from warpbench.datasets import Dataset, Pair, Subject, SubjectError, check_volumes, load_subject
from warpbench.executors import InProcessExecutor, RunWork
from warpbench.plugins import load_registry
from warpbench.store import Store

BLOCK = """
  {name}:
    plugin: decathlon
    root: {name}
    grid: [8, 8, 8]
    labels: {{1: a, 2: b}}
    split: {{test: 1.0}}
    pairs: {{test: all}}"""
CONFIG = f"""datasets:{BLOCK.format(name='good')}{BLOCK.format(name='bad')}
suites:
  default:
    methods: [identity]
    datasets: [good, bad]
"""
SUBJECTS = ("case_0", "case_1", "case_2")
BAD = "case_1"  # not the first subject, and in 4 of the 6 ordered pairs


def box(shape=(8, 8, 8)):
    """A bright box and its two-label map."""
    image = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    inner = tuple(slice(2, n - 2) for n in shape[:3])
    image[inner] = 100.0
    labels[inner] = 1
    labels[(slice(2, 4), *inner[1:])] = 2
    return image, labels


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def truncated(path):
    """Noise compresses badly, so two thirds of the file keep the header and lose data."""
    save(path, np.random.default_rng(0).random((8, 8, 8), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def not_nifti(path):
    path.write_text("this is a text file, not a NIfTI volume\n" * 20)


#: Each way a subject's files can be unusable: (what is wrong, which file is bad, how to write it).
BAD_FILES = {
    "truncated .nii.gz": ("imagesTr", truncated),
    "text file named .nii.gz": ("imagesTr", not_nifti),
    "label map of another shape": ("labelsTr", lambda p: save(p, box((8, 8, 6))[1])),
    "4-D image": ("imagesTr", lambda p: save(p, np.stack([box()[0]] * 2, axis=-1))),
    "non-integral float labels": ("labelsTr", lambda p: save(p, box()[1] * np.float32(0.75))),
    "all-NaN image": ("imagesTr", lambda p: save(p, np.full((8, 8, 8), np.nan, np.float32))),
}


def write_dataset(root, broken=None, bad=BAD):
    """Three subjects under root; ``broken`` = (folder, writer) replaces one file of ``bad``."""
    image, labels = box()
    for subject in SUBJECTS:
        save(root / "imagesTr" / f"{subject}.nii.gz", image)
        save(root / "labelsTr" / f"{subject}.nii.gz", labels)
    if broken:
        folder, write = broken
        (root / folder / f"{bad}.nii.gz").unlink()
        write(root / folder / f"{bad}.nii.gz")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    write_dataset(tmp_path / "good")
    return tmp_path


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_subject_fails_its_pairs_and_every_other_pair_is_scored(workdir, capsys, kind):
    folder, write = BAD_FILES[kind]
    write_dataset(workdir / "bad", (folder, write))
    bad_file = f"bad/{folder}/{BAD}.nii.gz"

    assert main(["run", "--quiet", "--method", "identity", "--dataset", "good",
                 "--dataset", "bad"]) == 1  # some pair failed
    err = capsys.readouterr().err
    assert "Traceback" not in err
    naming = [line for line in err.splitlines() if bad_file in line]
    assert len(naming) == 1, err  # named once, not once per pair
    assert f"subject '{BAD}'" in naming[0]

    store = Store("results/warpbench.duckdb")
    pairs = store.pairs().merge(store.runs()[["run_id", "dataset"]], on="run_id")
    good = pairs[pairs["dataset"] == "good"]
    assert len(good) == 6 and (good["status"] == "ok").all()
    bad = pairs[pairs["dataset"] == "bad"]
    involved = (bad["fixed"] == BAD) | (bad["moving"] == BAD)
    assert len(bad) == 6 and involved.sum() == 4
    assert (bad.loc[involved, "status"] == "failed").all()
    assert all(bad_file in error for error in bad.loc[involved, "error"])
    assert (bad.loc[~involved, "status"] == "ok").all()
    assert (bad.loc[~involved, "mean_dice"] == 1.0).all()  # identical subjects, every label kept

    described = store.datasets().set_index("dataset")
    assert "over 2 of 3 test subjects" in described.loc["bad", "mi_estimator"]
    assert "over 3 of 3 test subjects" in described.loc["good", "mi_estimator"]
    assert np.isfinite(described.loc["bad", "mi_bits"])


def test_a_resumed_run_names_the_bad_file_once_again_and_retries_only_its_pairs(workdir, capsys):
    write_dataset(workdir / "bad", BAD_FILES["truncated .nii.gz"])
    command = ["run", "--quiet", "--method", "identity", "--method", "affine",
               "--dataset", "good", "--dataset", "bad"]
    assert main(command) == 1
    capsys.readouterr()
    assert main(command) == 1
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if f"{BAD}.nii.gz" in line]) == 1, err
    assert "0 pairs scored, 8 failed" in err  # 4 pairs of the bad subject for each method


def test_an_unreadable_first_subject_does_not_cost_the_others_their_grid(workdir, capsys):
    """Without a ``grid`` option the grid is the shape of the first subject that can be read."""
    (workdir / "datasets.yaml").write_text(CONFIG.replace("    grid: [8, 8, 8]\n", ""))
    write_dataset(workdir / "bad", BAD_FILES["text file named .nii.gz"], bad="case_0")
    assert main(["run", "--quiet", "--method", "identity", "--dataset", "bad"]) == 1
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "case_0.nii.gz" in line]) == 1, err
    pairs = Store("results/warpbench.duckdb").pairs()
    scored = pairs[(pairs["fixed"] != "case_0") & (pairs["moving"] != "case_0")]
    assert len(scored) == 2 and (scored["status"] == "ok").all()


def test_integral_float_labels_are_accepted():
    image, labels = box()
    check_volumes(image, labels.astype(np.float32), "image.nii.gz", "labels.nii.gz")


@pytest.mark.parametrize("image, labels, message", [
    (np.zeros((4, 4)), np.zeros((4, 4), np.uint8), r"image\.nii\.gz holds a 2-D array"),
    (np.zeros((4, 4, 4)), np.zeros((4, 4, 3), np.uint8), r"labels\.nii\.gz has shape \(4, 4, 3\)"),
    (np.full((4, 4, 4), np.inf), np.zeros((4, 4, 4), np.uint8), r"image\.nii\.gz has 64 non-fin"),
    (np.zeros((4, 4, 4)), np.full((4, 4, 4), 2.5), r"labels\.nii\.gz holds .*not integers.*2\.5"),
])
def test_each_unusable_volume_is_refused_naming_its_file(image, labels, message):
    with pytest.raises(SubjectError, match=message):
        check_volumes(image, labels, "image.nii.gz", "labels.nii.gz")


class Unchecked(Dataset):
    """A reader that hands back whatever it finds: NaN images, fractional labels, or raises."""

    kind = "unchecked"
    labels = {1: "a", 2: "b"}

    def all_subjects(self):
        return ["nan", "fraction", "raises", "fine"]

    def load(self, subject_id):
        image, labels = box()
        if subject_id == "raises":
            raise OSError(f"/data/{subject_id}.nii.gz: Input/output error")
        if subject_id == "nan":
            image = np.full(image.shape, np.nan, np.float32)
        if subject_id == "fraction":
            labels = labels * 0.5
        return Subject(subject_id, image, labels, np.eye(4))


@pytest.mark.parametrize("subject_id, message", [
    ("nan", r"dataset 'u', subject 'nan': the image has 512 non-finite voxels"),
    ("fraction", r"dataset 'u', subject 'fraction': the label map holds .*not integers"),
    ("raises", r"dataset 'u', subject 'raises': OSError: /data/raises\.nii\.gz: Input/output"),
    ("../fine", r"dataset 'u', subject '\.\./fine': UnsafePathError: subject id '\.\./fine' "
                r"cannot be part of a path"),
])
def test_any_reader_s_subject_is_checked_when_loaded(tmp_path, subject_id, message):
    with pytest.raises(SubjectError, match=message):
        load_subject(Unchecked("u", {}, tmp_path), subject_id)
    assert load_subject(Unchecked("u", {}, tmp_path), "fine").image.shape == (8, 8, 8)


def test_the_executor_fails_a_pair_whose_subject_does_not_load_and_goes_on(tmp_path):
    """Pairs handed to the executor directly (a benchmark, a replay) are checked the same way."""
    dataset = Unchecked("u", {}, tmp_path)
    pairs = [Pair("nan", "fine"), Pair("fine", "fine")]
    identity = load_registry().methods["identity"]
    work = RunWork(identity, identity.presets["default"], dataset, pairs)
    first, second = InProcessExecutor("cpu").evaluate(work)
    assert first.status == "failed"
    assert first.error.startswith("loading failed: dataset 'u', subject 'nan': the image has 512")
    assert second.status == "ok"
