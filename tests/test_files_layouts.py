"""The two collection layouts: Learn2Reg task folders (their `<TASK>_dataset.json`, labels and
official pairs) and the neurite OASIS folders (`seg35_labels.txt`), each in its exact file names."""

import json

import nibabel as nib
import numpy as np
import pytest

from warpbench.datasets import DatasetConfigError, Pair
from warpbench.testing import assert_dataset_contract

from warpbench_files import Learn2RegDataset, NeuriteOasisDataset
from warpbench_files.labeltables import read_label_table
from warpbench_files.learn2reg import label_names

SHAPE = (16, 20, 18)
SIDES = ["Cerebral-White-Matter", "Cerebral-Cortex", "Lateral-Ventricle", "Inf-Lat-Vent",
         "Cerebellum-White-Matter", "Cerebellum-Cortex", "Thalamus", "Caudate", "Putamen",
         "Pallidum", "Hippocampus", "Amygdala", "Accumbens", "VentralDC", "vessel",
         "choroid-plexus"]
#: 35 structures as the seg35 protocol names them: both hemispheres and three midline ones.
SEG35 = ([f"Left-{s}" for s in SIDES] + ["3rd-Ventricle", "4th-Ventricle", "Brain-Stem"]
         + [f"Right-{s}" for s in SIDES])


def volumes(seed: int):
    """An image, its label map (values 1..3) and a brain mask (labels 1 and 2)."""
    grid = np.indices(SHAPE).astype(float)
    centre = np.array(SHAPE)[:, None, None, None] / 2 + (seed % 3) - 1
    radius = np.sqrt((((grid - centre) / np.array([5, 6, 5])[:, None, None, None]) ** 2).sum(0))
    labels = np.select([radius < 0.5, radius < 0.8, radius <= 1], [1, 2, 3], 0).astype(np.int16)
    image = (labels * 30.0 + 5.0 * (radius < 1.3) + seed).astype(np.float32)
    return image, labels, (labels > 0) & (labels < 3)


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=array.dtype if array.dtype != bool
                                        else np.uint8), np.diag([1.0, 1.0, 1.0, 1.0])), path)


# --- Learn2Reg ---------------------------------------------------------------------------------

def oasis_task(root, test_labels=False):
    """A miniature Learn2Reg OASIS task: 6 training subjects with labels and masks, 2 test
    subjects (labelled only if ``test_labels``), 3 registration_val pairs and 1
    registration_test pair, as in the task's OASIS_dataset.json."""
    training, test = [], []
    for index, number in enumerate(["0001", "0002", "0003", "0004", "0005", "0006"]):
        image, labels, mask = volumes(index)
        name = f"OASIS_{number}_0000.nii.gz"
        write(root / "imagesTr" / name, image)
        write(root / "labelsTr" / name, labels)
        write(root / "masksTr" / name, mask)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}",
                         "mask": f"./masksTr/{name}"})
    for index, number in enumerate(["0438", "0439"]):
        image, labels, _ = volumes(index)
        name = f"OASIS_{number}_0000.nii.gz"
        write(root / "imagesTs" / name, image)
        entry = {"image": f"./imagesTs/{name}"}
        if test_labels:
            write(root / "labelsTs" / name, labels)
            entry["label"] = f"./labelsTs/{name}"
        test.append(entry)

    def pair(fixed, moving, folder="imagesTr"):
        return {"fixed": f"./{folder}/OASIS_{fixed}_0000.nii.gz",
                "moving": f"./{folder}/OASIS_{moving}_0000.nii.gz"}

    task = {
        "name": "OASIS", "release": "1.1", "description": "OASIS task of Learn2Reg (fixture)",
        "licence": "OASIS Data Use Agreement", "reference": "Marcus et al. 2007",
        "pairings": "unpaired", "provided_data": {"0": ["image", "label", "mask"]},
        "registration_direction": {"fixed": 0, "moving": 0}, "modality": {"0": "MR"},
        "labels": {"0": "background", "1": "Cortex", "2": "White-Matter", "3": "CSF"},
        "tensorImageSize": {"0": "3D"}, "tensorImageShape": {"0": list(SHAPE)},
        "numTraining": len(training), "numTest": len(test), "training": training, "test": test,
        "numRegistration_val": 3,
        "registration_val": [pair("0005", "0004"), pair("0006", "0005"), pair("0004", "0006")],
        "numRegistration_test": 1, "registration_test": [pair("0438", "0439", "imagesTs")],
    }
    (root / "OASIS_dataset.json").write_text(json.dumps(task, indent=4))
    return task


def learn2reg(base_dir, name="l2r-oasis", **options):
    return Learn2RegDataset(name, {"root": "OASIS", **options}, base_dir)


@pytest.fixture
def task_dir(tmp_path):
    oasis_task(tmp_path / "OASIS")
    return tmp_path


def test_a_learn2reg_task_gives_its_subjects_labels_and_official_pairs(task_dir):
    dataset = learn2reg(task_dir)
    assert dataset.availability() == (True, "")
    assert dataset.all_subjects() == [f"OASIS_000{i}_0000" for i in range(1, 7)]
    assert dataset.labels == {1: "Cortex", 2: "White-Matter", 3: "CSF"}
    assert dataset.modality == {"0": "MR"} and dataset.task_name == "OASIS"
    assert dataset.license == "OASIS Data Use Agreement"
    assert dataset.citation.startswith("Marcus et al. 2007; Hering A")
    assert dataset.grid == SHAPE and dataset.pre_aligned is False
    # registration_test names unlabelled test volumes, so the validation pairs are the test set
    assert dataset.official.test_source == "registration_val"
    assert dataset.pairs("test") == [Pair("OASIS_0005_0000", "OASIS_0004_0000"),
                                     Pair("OASIS_0006_0000", "OASIS_0005_0000"),
                                     Pair("OASIS_0004_0000", "OASIS_0006_0000")]
    assert dataset.subjects("test") == ["OASIS_0004_0000", "OASIS_0005_0000", "OASIS_0006_0000"]
    assert dataset.subjects("train") == ["OASIS_0001_0000", "OASIS_0002_0000", "OASIS_0003_0000"]
    assert dataset.subjects("val") == [] and dataset.pairs("val") == []
    assert_dataset_contract(dataset)


def test_a_learn2reg_mask_is_applied_where_an_entry_names_one(task_dir):
    masked = learn2reg(task_dir).load("OASIS_0002_0000")
    unmasked = learn2reg(task_dir, name="plain", use_masks=False).load("OASIS_0002_0000")
    _, labels, mask = volumes(1)
    assert np.all(masked.image[~mask] == 0) and np.any(unmasked.image[~mask] > 0)
    np.testing.assert_array_equal(masked.labels, labels)


def test_labelled_registration_test_pairs_are_the_test_set_and_val_the_val_set(tmp_path):
    oasis_task(tmp_path / "OASIS", test_labels=True)
    dataset = learn2reg(tmp_path)
    assert dataset.official.test_source == "registration_test"
    assert dataset.pairs("test") == [Pair("OASIS_0438_0000", "OASIS_0439_0000")]
    assert dataset.subjects("val") == ["OASIS_0004_0000", "OASIS_0005_0000", "OASIS_0006_0000"]
    assert len(dataset.pairs("val")) == 3
    assert "OASIS_0438_0000" not in dataset.subjects("train")
    forced = learn2reg(tmp_path, name="val-test", test_pairs="registration_val")
    assert len(forced.pairs("test")) == 3 and forced.pairs("val") == []
    assert_dataset_contract(dataset)


def test_train_pairs_are_drawn_from_the_train_subjects(task_dir):
    dataset = learn2reg(task_dir, pairs={"train": "all"})
    assert len(dataset.pairs("train")) == 6
    assert {s for p in dataset.pairs("train") for s in (p.fixed, p.moving)} == set(
        dataset.subjects("train"))


@pytest.mark.parametrize("change, options, message", [
    (None, {"test_pairs": "registration_test"},
     "registration_test names volumes that no labelled entry lists"),
    ("unknown-pair", {}, "registration_val names volumes that no labelled entry lists"),
    ("no-labels", {}, "names no labels, so the block needs 'labels"),
    ("bad-json", {}, "OASIS_dataset.json"),
    (None, {"split": {"test": 1.0}}, "option 'split': must be left out"),
    (None, {"pairs": {"test": 3}}, "unknown option 'pairs.test'"),
    (None, {"spacing": [2, 2, 2]}, "needs 'grid'"),
])
def test_a_task_file_that_cannot_give_pairs_or_labels_fails_naming_it(task_dir, change, options,
                                                                    message):
    path = task_dir / "OASIS" / "OASIS_dataset.json"
    task = json.loads(path.read_text())
    if change == "unknown-pair":
        task["registration_val"].append({"fixed": "./imagesTr/OASIS_0099_0000.nii.gz",
                                         "moving": "./imagesTr/OASIS_0001_0000.nii.gz"})
    if change == "no-labels":
        task["labels"] = {}
    path.write_text(json.dumps(task) if change != "bad-json" else '{"training": 3}')
    with pytest.raises(DatasetConfigError, match=r"^dataset 'l2r-oasis' \(learn2reg\): ") as error:
        learn2reg(task_dir, **options)
    assert message in str(error.value)


def test_a_missing_task_folder_or_file_is_unavailable_with_the_reason(tmp_path):
    assert learn2reg(tmp_path).availability() == (
        False, f"root {tmp_path / 'OASIS'} does not exist; the data: the task's folder (with its "
               "<TASK>_dataset.json) from https://learn2reg.grand-challenge.org")
    (tmp_path / "OASIS").mkdir()
    assert learn2reg(tmp_path).availability() == (
        False, f"no *_dataset.json in {tmp_path / 'OASIS'}")


def test_the_fingerprint_follows_the_task_file(task_dir):
    before = learn2reg(task_dir).fingerprint()
    path = task_dir / "OASIS" / "OASIS_dataset.json"
    task = json.loads(path.read_text())
    task["registration_val"].pop()
    path.write_text(json.dumps(task))
    assert learn2reg(task_dir).fingerprint() != before


@pytest.mark.parametrize("table, expected", [
    ({"0": "background", "1": "liver", "2": "spleen"}, {0: "background", 1: "liver", 2: "spleen"}),
    ({"background": 0, "liver": 1}, {0: "background", 1: "liver"}),  # nnU-Net v2
    ({"0": {"0": "background", "1": "liver"}, "1": {"0": "background", "2": "spleen"}},
     {0: "background", 1: "liver", 2: "spleen"}),  # one table per modality
])
def test_task_label_tables_in_each_form(table, expected):
    assert label_names(table) == expected


# --- neurite OASIS -------------------------------------------------------------------------------

def neurite_root(root, ids=("0001", "0002", "0003")):
    """Subjects in the collection's layout, with the files a reader must not mistake for them,
    and its colour table."""
    for index, subject_id in enumerate(ids):
        image, labels, _ = volumes(index)
        folder = root / f"OASIS_OAS1_{subject_id}_MR1"
        write(folder / "aligned_norm.nii.gz", image)
        write(folder / "aligned_orig.nii.gz", image * 2)
        write(folder / "aligned_seg35.nii.gz", labels)
        write(folder / "aligned_seg4.nii.gz", np.minimum(labels, 2).astype(np.int16))
    (root / "subjects.txt").write_text("".join(f"OASIS_OAS1_{i}_MR1\n" for i in ids))
    lines = ["#$Id: seg35_labels.txt (fixture) $", "#No. Label Name:  R G B A",
             "0    Unknown    0 0 0 0"]
    lines += [f"{value:<4} {name:<30} {value * 7 % 255} 100 50 0"
              for value, name in enumerate(SEG35, start=1)]
    (root / "seg35_labels.txt").write_text("\n".join(lines) + "\n")


def test_the_neurite_oasis_layout_names_its_35_labels_from_its_colour_table(tmp_path):
    neurite_root(tmp_path / "neurite-oasis")
    dataset = NeuriteOasisDataset("oasis", {"root": "neurite-oasis"}, tmp_path)
    assert dataset.grid == (160, 192, 224) and dataset.pre_aligned is True
    assert dataset.all_subjects() == ["0001", "0002", "0003"]
    assert len(dataset.labels) == 35
    assert dataset.labels[1] == "Left-Cerebral-White-Matter" and dataset.labels[35] == SEG35[-1]
    assert "OASIS" in dataset.license and "HyperMorph" in dataset.citation
    small = NeuriteOasisDataset("oasis-small", {"root": "neurite-oasis", "grid": list(SHAPE),
                                                "split": {"train": 1, "test": 2},
                                                "pairs": {"test": 2}}, tmp_path)
    np.testing.assert_array_equal(small.load("0002").labels, volumes(1)[1])
    report = assert_dataset_contract(small)
    assert "label-values" in report.format()  # 32 of the 35 labels are absent here: a warning


def test_a_missing_neurite_root_is_unavailable_not_an_error(tmp_path):
    dataset = NeuriteOasisDataset("oasis", {"root": "neurite-oasis"}, tmp_path)
    available, reason = dataset.availability()  # says where to get the data
    assert not available and reason.startswith(f"root {tmp_path / 'neurite-oasis'} does not exist; "
                                                "the data: neurite-oasis.v1.0.tar")
    assert dataset.all_subjects() == []


def test_a_colour_table_reads_names_and_a_plain_value_list_reads_values(tmp_path):
    table = tmp_path / "lut.txt"
    table.write_text("# comment\n0 Unknown 0 0 0 0\n2  Left-WM 245 245 245 0  # trailing\n\n"
                     "41 Right-WM 0 225 0 0\n")
    assert read_label_table(table) == {2: "Left-WM", 41: "Right-WM"}
    table.write_text("2\n3\n41\n")
    assert read_label_table(table) == {2: "label_2", 3: "label_3", 41: "label_41"}
    table.write_text("two Left-WM\n")
    with pytest.raises(ValueError, match="lut.txt, line 1: expected 'value name R G B A'"):
        read_label_table(table)
