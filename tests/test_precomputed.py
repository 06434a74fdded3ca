"""Fields on disk in the Learn2Reg layout: a run's fields exported by `warpbench export-fields`
and scored again through the `precomputed` method give the original run's scores; the files are
read channels-last, without pickle, and a bad or missing file fails only its pair, named."""

import json

import nibabel as nib
import numpy as np
import pytest

from warpbench.cli import main
from warpbench.fields import FieldFileError, field_name, find_field, read_field, write_field
from warpbench.methods import PairIds
from warpbench.paths import UnsafePathError
from warpbench.store import Store
from warpbench_precomputed import PrecomputedMethod

CONFIG = """
datasets:
  tiny:
    plugin: synthetic
    shape: [24, 28, 24]
    subjects: 5
    split: {train: 1, val: 0, test: 4}
    pairs: {test: 3}
"""
SHAPE = (24, 28, 24)
SCORES = ["mean_dice", "mean_hd95", "sdlogj", "folding_percent"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    return tmp_path


def scores(db: str) -> tuple[str, dict]:
    pairs = Store(db).pairs()
    assert (pairs["status"] == "ok").all(), pairs["error"].tolist()
    rows = {(r["fixed"], r["moving"]): [r[s] for s in SCORES] for r in pairs.to_dict("records")}
    return pairs["run_id"].iloc[0], rows


def test_exported_fields_scored_again_give_the_original_scores(workdir, capsys):
    assert main(["run", "--quiet", "--method", "affine", "--dataset", "tiny", "--db", "a.duckdb"]) == 0
    run_id, original = scores("a.duckdb")
    assert len(original) == 3

    assert main(["export-fields", "--db", "a.duckdb", "--run", run_id[:10], "--out", "fields",
                 "--quiet"]) == 0
    assert "wrote 3 fields to fields" in capsys.readouterr().out
    files = sorted(p.name for p in (workdir / "fields").glob("disp_*"))
    assert files == sorted(f"disp_{f}_{m}.nii.gz" for f, m in original)
    first = nib.load(workdir / "fields" / files[0])
    assert first.shape == (*SHAPE, 3) and first.get_data_dtype() == np.float32
    manifest = json.loads((workdir / "fields" / "fields.json").read_text())
    assert manifest["run_id"] == run_id and manifest["method"] == "affine"

    assert main(["run", "--quiet", "--method", "precomputed:fields", "--dataset", "tiny",
                 "--db", "b.duckdb"]) == 0
    _, again = scores("b.duckdb")
    assert again.keys() == original.keys()
    for pair, values in original.items():
        assert again[pair] == pytest.approx(values, rel=1e-12, abs=1e-12), pair
    run = Store("b.duckdb").runs().iloc[0]
    params = json.loads(run["params"])
    assert run["method"] == "precomputed" and run["preset"] == "fields"
    assert params["folder"] == str((workdir / "fields").resolve()) and params["files"]

    # the same through .npz files in a per-dataset subfolder
    assert main(["export-fields", "--db", "a.duckdb", "--run", run_id, "--out", "npz/tiny",
                 "--format", "npz", "--quiet"]) == 0
    assert main(["run", "--quiet", "--method", "precomputed:npz", "--dataset", "tiny",
                 "--db", "c.duckdb"]) == 0
    _, from_npz = scores("c.duckdb")
    for pair, values in original.items():
        assert from_npz[pair] == pytest.approx(values, rel=1e-12, abs=1e-12), pair


def test_export_fields_refuses_what_it_cannot_recreate(workdir, capsys):
    assert main(["run", "--quiet", "--method", "identity", "--dataset", "tiny", "--db", "a.duckdb"]) == 0
    run_id = Store("a.duckdb").runs()["run_id"].iloc[0]
    (workdir / "other.yaml").write_text(CONFIG.replace("pairs: {test: 3}", "pairs: {test: 2}"))
    for args, message in [
        (["--run", "ffffffff"], "no run 'ffffffff'"),
        (["--run", run_id, "--config", "other.yaml"], "is not the one run"),
        (["--run", run_id, "--db", "missing.duckdb"], "missing.duckdb: no such file"),
    ]:
        argv = ["export-fields", "--db", "a.duckdb", "--out", "f", "--quiet", *args]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_missing_and_malformed_files_fail_only_their_pair_naming_the_file(workdir):
    assert main(["run", "--quiet", "--method", "identity", "--dataset", "tiny", "--db", "a.duckdb"]) == 0
    run_id = Store("a.duckdb").runs()["run_id"].iloc[0]
    assert main(["export-fields", "--db", "a.duckdb", "--run", run_id, "--out", "f", "--quiet"]) == 0
    files = sorted((workdir / "f").glob("disp_*"))
    files[0].unlink()
    nib.save(nib.Nifti1Image(np.zeros((12, 14, 12, 3), np.float32), np.eye(4)), files[1])
    assert main(["run", "--quiet", "--method", "precomputed:f", "--dataset", "tiny",
                 "--db", "b.duckdb"]) == 1
    pairs = Store("b.duckdb").pairs()
    by_file = {f"disp_{r['fixed']}_{r['moving']}.nii.gz": r for r in pairs.to_dict("records")}
    missing, malformed, good = (by_file[f.name] for f in files)
    assert missing["status"] == "failed" and "FileNotFoundError: no field for" in missing["error"]
    assert f"disp_{missing['fixed']}_{missing['moving']}.nii.gz" in missing["error"]
    assert malformed["status"] == "failed"
    assert f"{files[1].name}: shape (12, 14, 12, 3); expected (D, H, W, 3) = (24, 28, 24, 3)" \
        in malformed["error"]
    assert good["status"] == "ok"


def test_without_a_folder_the_method_says_how_to_give_one(workdir):
    assert main(["run", "--quiet", "--method", "precomputed", "--dataset", "tiny", "--db", "a.duckdb"]) == 1
    assert "--method precomputed:path/to/fields" in Store("a.duckdb").pairs()["error"].iloc[0]
    assert main(["run", "--quiet", "--method", "precomputed:no/such/folder", "--dataset", "tiny"]) == 2


def test_field_files_are_channels_last_voxels_and_read_back_exactly(tmp_path):
    disp = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype(np.float32)
    for fmt in ("nii.gz", "nii", "npz", "npy"):
        path = write_field(tmp_path / f"disp_a_b.{fmt}", disp)
        np.testing.assert_array_equal(read_field(path, SHAPE), disp)
    stored = nib.load(tmp_path / "disp_a_b.nii.gz").get_fdata()
    np.testing.assert_allclose(stored[1, 2, 3, :], disp[:, 1, 2, 3])  # channels last on disk
    # NIfTI vector fields carry an empty time axis: (D, H, W, 1, 3)
    nib.save(nib.Nifti1Image(np.moveaxis(disp, 0, -1)[:, :, :, None, :], np.eye(4)),
             tmp_path / "five.nii.gz")
    np.testing.assert_array_equal(read_field(tmp_path / "five.nii.gz", SHAPE), disp)
    # Learn2Reg's half-precision npz is widened to float32
    np.savez(tmp_path / "half.npz", np.moveaxis(disp, 0, -1).astype(np.float16))
    assert read_field(tmp_path / "half.npz", SHAPE).dtype == np.float32


def test_field_files_are_read_without_pickle(tmp_path):
    np.savez(tmp_path / "evil.npz", disp=np.array([{"code": "anything"}], dtype=object))
    with pytest.raises(FieldFileError, match="evil.npz: cannot read"):
        read_field(tmp_path / "evil.npz", SHAPE)
    np.save(tmp_path / "evil.npy", np.array([None], dtype=object), allow_pickle=True)
    with pytest.raises(FieldFileError, match="evil.npy: cannot read"):
        read_field(tmp_path / "evil.npy", SHAPE)
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(FieldFileError, match=r"holds arrays \['a', 'b'\]"):
        read_field(tmp_path / "two.npz", SHAPE)


def test_a_dataset_subfolder_wins_and_the_pair_ids_find_the_file(tmp_path):
    disp = np.ones((3, *SHAPE), np.float32)
    write_field(tmp_path / "disp_a_b.npz", disp)
    write_field(tmp_path / "tiny" / "disp_a_b.npz", 2 * disp)
    assert find_field(tmp_path, "a", "b", "tiny") == tmp_path / "tiny" / "disp_a_b.npz"
    assert find_field(tmp_path, "a", "b", "other") == tmp_path / "disp_a_b.npz"
    assert find_field(tmp_path, "b", "a") is None
    method = PrecomputedMethod()
    params = method.presets[str(tmp_path)]
    image = np.zeros(SHAPE, np.float32)
    field = method.register(image, image, params, "cpu", pair=PairIds("tiny", "a", "b"))
    assert field.shape == (3, *SHAPE) and float(field.max()) == 2.0


def test_a_dataset_name_or_pair_id_that_is_not_one_path_component_is_refused(tmp_path):
    disp = np.ones((3, *SHAPE), np.float32)
    write_field(tmp_path / "escape" / "disp_a_b.npz", disp)  # beside the folder, not in it
    method = PrecomputedMethod()
    (tmp_path / "fields").mkdir()
    params = method.presets[str(tmp_path / "fields")]
    image = np.zeros(SHAPE, np.float32)
    with pytest.raises(UnsafePathError, match=r"dataset name '\.\./escape' cannot be part of"):
        method.register(image, image, params, "cpu", pair=PairIds("../escape", "a", "b"))
    for fixed, moving in [("../escape", "b"), ("a", "x/../../escape/disp_a_b")]:
        with pytest.raises(UnsafePathError, match="subject id"):
            find_field(tmp_path / "fields", fixed, moving)
        with pytest.raises(UnsafePathError, match="subject id"):
            field_name(fixed, moving)


def test_a_field_file_linked_to_outside_the_folder_fails_its_pair_naming_the_file(workdir):
    assert main(["run", "--quiet", "--method", "identity", "--dataset", "tiny",
                 "--db", "a.duckdb"]) == 0
    run_id = Store("a.duckdb").runs()["run_id"].iloc[0]
    assert main(["export-fields", "--db", "a.duckdb", "--run", run_id, "--out", "f",
                 "--quiet"]) == 0
    linked, inner, good = sorted((workdir / "f").glob("disp_*"))
    (workdir / "outside").mkdir()
    linked.rename(workdir / "outside" / linked.name)
    linked.symlink_to(workdir / "outside" / linked.name)
    inner.rename(workdir / "f" / "kept.nii.gz")  # a link that stays inside the folder is read
    inner.symlink_to("kept.nii.gz")
    assert main(["run", "--quiet", "--method", "precomputed:f", "--dataset", "tiny",
                 "--db", "b.duckdb"]) == 1
    pairs = {f"disp_{r['fixed']}_{r['moving']}.nii.gz": r
             for r in Store("b.duckdb").pairs().to_dict("records")}
    assert pairs[linked.name]["status"] == "failed"
    assert f"{linked}: leads to {workdir / 'outside' / linked.name}, outside the folder" \
        in pairs[linked.name]["error"]
    assert pairs[inner.name]["status"] == pairs[good.name]["status"] == "ok"


def test_a_subfolder_linked_to_outside_is_refused_and_a_dangling_link_is_no_field(tmp_path):
    write_field(tmp_path / "outside" / "disp_a_b.npy", np.ones((3, *SHAPE), np.float32))
    (tmp_path / "fields").mkdir()
    (tmp_path / "fields" / "tiny").symlink_to(tmp_path / "outside")
    with pytest.raises(FieldFileError, match=r"tiny/disp_a_b\.npy: leads to .*outside the folder"):
        find_field(tmp_path / "fields", "a", "b", "tiny")
    (tmp_path / "fields" / "disp_c_d.npy").symlink_to(tmp_path / "nowhere")
    assert PrecomputedMethod().presets[str(tmp_path / "fields")]["files"]
    assert find_field(tmp_path / "fields", "c", "d") is None


def test_a_field_name_that_names_two_pairs_of_the_dataset_is_refused(tmp_path):
    write_field(tmp_path / "disp_a_b_c.npy", np.ones((3, *SHAPE), np.float32))
    subjects = ["a", "a_b", "b_c", "c"]
    for fixed, moving in [("a", "b_c"), ("a_b", "c")]:
        with pytest.raises(FieldFileError, match=r"disp_a_b_c\.\*: the name is ambiguous, it "
                                                 r"names the pairs a <- b_c and a_b <- c of"):
            find_field(tmp_path, fixed, moving, subjects=subjects)
    # with ids that split only one way, the name is that pair's
    assert find_field(tmp_path, "a", "b_c", subjects=["a", "b_c"]) == tmp_path / "disp_a_b_c.npy"
    assert find_field(tmp_path, "a_b", "c", subjects=["a_b", "c", "d"]) \
        == tmp_path / "disp_a_b_c.npy"


def test_a_run_refuses_a_field_name_that_names_two_of_its_pairs(tmp_path, monkeypatch):
    """The runner gives the method the dataset's subject ids, so `warpbench run` never scores
    one file as two pairs: with subjects a, a_b, b_c and c, disp_a_b_c is a <- b_c or a_b <- c."""
    from test_bad_subjects import box, save

    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  ids:\n    plugin: decathlon\n    root: ids\n    grid: [8, 8, 8]\n"
        "    labels: {1: a, 2: b}\n    split: {test: 1.0}\n    pairs: {test: all}\n")
    image, labels = box()
    for subject in ("a", "a_b", "b_c", "c"):
        save(tmp_path / "ids" / "imagesTr" / f"{subject}.nii.gz", image)
        save(tmp_path / "ids" / "labelsTr" / f"{subject}.nii.gz", labels)
    write_field(tmp_path / "fields" / "disp_a_b_c.npy", np.zeros((3, 8, 8, 8), np.float32))
    assert main(["run", "--quiet", "--method", "precomputed:fields", "--dataset", "ids",
                 "--db", "a.duckdb"]) == 1
    pairs = {(r["fixed"], r["moving"]): r for r in Store("a.duckdb").pairs().to_dict("records")}
    for pair in [("a", "b_c"), ("a_b", "c")]:
        assert pairs[pair]["status"] == "failed"
        assert "disp_a_b_c.*: the name is ambiguous" in pairs[pair]["error"]
