"""The networks kept with the project (benchmarks/measured/networks/, and the paper suite's tables
in benchmarks/measured/paper/, each a store's tables with the trainings' weights files) are
evaluated by a fresh clone on a new dataset without training: the folder merged into an empty
store, a run on new hippocampus subjects that trains on the hippocampus block finds its network
there (needs ../shared/data, skipped without it); and the paper suite's folder holds every
network the other folders keep, so that one merge of it brings them all."""

import json
import shutil

import pandas as pd
import pytest
import yaml

from conftest import REPO
from warpbench.cli import main
from warpbench.config import build_dataset, load_config
from warpbench.plugins import load_registry
from warpbench.store import Store

MEASURED = REPO / "benchmarks" / "measured"
#: Folders that keep trainings of their own measurement; the paper suite's folder carries them too.
KEPT_ELSEWHERE = ["networks", "hippocampus-shift"]
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


@pytest.mark.parametrize("kept", KEPT_ELSEWHERE)
def test_the_paper_folder_keeps_every_training_another_folder_keeps(kept):
    paper = MEASURED / "paper"
    remedy = (f"merge benchmarks/measured/{kept} into the paper tables: warpbench merge "
              f"benchmarks/measured/paper benchmarks/measured/{kept} -o S.duckdb, then warpbench "
              "export --db S.duckdb --out benchmarks/measured/paper")
    trainings = pd.read_parquet(MEASURED / kept / "trainings.parquet")
    in_paper = set(pd.read_parquet(paper / "trainings.parquet")["training_key"])
    missing = set(trainings["training_key"]) - in_paper
    assert not missing, (
        f"trainings {sorted(missing)} are not in benchmarks/measured/paper: {remedy}")
    weights = json.loads((MEASURED / kept / "weights.json").read_text())
    paper_weights = json.loads((paper / "weights.json").read_text())
    for key, entry in weights.items():
        assert paper_weights.get(key, {}).get("sha256") == entry["sha256"], (
            f"{kept}'s weights of training {key} are missing from or differ in "
            f"benchmarks/measured/paper: {remedy}")
        assert (paper / paper_weights[key]["file"]).stat().st_size == entry["bytes"]
