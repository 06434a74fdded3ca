"""The networks kept with the project (benchmarks/measured/networks/, and the paper suite's tables
in benchmarks/measured/paper/, each a store's tables with the trainings' weights files) are
evaluated by a fresh clone on a new dataset without training: the folder merged into an empty
store, a run on new hippocampus subjects that trains on the hippocampus block finds its network
there. Needs ../shared/data (skipped without it)."""

import shutil

import pytest
import yaml

from conftest import REPO
from warpbench.cli import main
from warpbench.config import build_dataset, load_config
from warpbench.plugins import load_registry
from warpbench.store import Store

MEASURED = REPO / "benchmarks" / "measured"
#: The configuration whose training the folder keeps (README: "Networks kept with the project").
KEPT_CONFIGURATION = "voxelmorph:labels-60min"
NEW_SUBJECTS = 3


@pytest.mark.parametrize("kept", ["networks", "paper"])
def test_a_kept_network_is_evaluated_on_new_subjects_with_no_training(kept, tmp_path,
                                                                      hippocampus_root, capsys):
    blocks = yaml.safe_load((REPO / "datasets.yaml").read_text())["datasets"]
    source = build_dataset(load_config(REPO / "datasets.yaml"), "hippocampus",
                           load_registry().dataset_kinds)
    # Subjects the network was not trained on, as a block of their own in the same domain.
    new = tmp_path / "new-scans"
    for folder in ("imagesTr", "labelsTr"):
        (new / folder).mkdir(parents=True)
        for subject in source.subjects("test")[:NEW_SUBJECTS]:
            shutil.copy(hippocampus_root / folder / f"{subject}.nii.gz", new / folder)
    # The hippocampus block as datasets.yaml writes it (its fingerprint is the kept training's),
    # its relative root reaching the same files from the working folder.
    (tmp_path / "shared").symlink_to(hippocampus_root.parents[1])
    work = tmp_path / "work"
    work.mkdir()
    (work / "datasets.yaml").write_text(yaml.safe_dump({"datasets": {
        "hippocampus": blocks["hippocampus"],
        "new-hippocampus": {
            "plugin": "decathlon", "root": str(new), "domain": "hippocampus",
            "grid": blocks["hippocampus"]["grid"], "labels": blocks["hippocampus"]["labels"],
            "split": {"train": 0, "val": 0, "test": 1.0, "seed": 0}, "pairs": {"test": 4}},
    }}))
    db = work / "wb.duckdb"
    assert main(["merge", str(MEASURED / kept), "-o", str(db)]) == 0
    capsys.readouterr()
    code = main(["run", "--db", str(db), "--config", str(work / "datasets.yaml"), "--method",
                 KEPT_CONFIGURATION, "--train-on", "hippocampus", "--dataset", "new-hippocampus"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "0 trainings run, 1 cached, 0 failed" in err
    method, preset = KEPT_CONFIGURATION.split(":")
    board = Store(db).leaderboard().set_index(["method", "preset", "dataset"])
    row = board.loc[(method, preset, "new-hippocampus")]
    assert row["pairs"] == 4 and row["train_dataset"] == "hippocampus" and row["in_domain"]
    assert row["dice"] > 0.6  # the trained network (untrained ones stay near identity, ~0.5)
