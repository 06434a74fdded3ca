"""A dataset whose files change is new data: its fingerprint covers its subjects' files, so a
re-run starts new runs (saying why) instead of resuming the old ones and mixing pairs of two test
splits, and the leaderboard shows the runs on the data as it is now (issue 18, defect 4)."""

import numpy as np

from test_bad_subjects import box, save
from warpbench.cli import main
from warpbench.config import build_dataset, load_config
from warpbench.plugins import load_registry
from warpbench.store import Store

CONFIG = """datasets:
  scans:
    plugin: decathlon
    root: scans
    grid: [8, 8, 8]
    labels: {1: a, 2: b}
    split: {test: 1.0}
    pairs: {test: all}
"""


def write_subject(root, subject, shift=0):
    image, labels = box()
    save(root / "imagesTr" / f"{subject}.nii.gz", np.roll(image, shift, axis=0))
    save(root / "labelsTr" / f"{subject}.nii.gz", np.roll(labels, shift, axis=0))


def fingerprint(config_path):
    return build_dataset(load_config(config_path), "scans", load_registry().dataset_kinds).fingerprint()


def run(tmp_path, capsys):
    code = main(["run", "--db", str(tmp_path / "wb.duckdb"), "--config",
                 str(tmp_path / "datasets.yaml"), "--method", "identity", "--dataset", "scans",
                 "--quiet"])
    return code, capsys.readouterr().err


def test_an_added_or_rewritten_subject_makes_new_runs_and_says_so(tmp_path, capsys):
    (tmp_path / "datasets.yaml").write_text(CONFIG)
    root = tmp_path / "scans"
    for subject in ("a", "b", "c"):
        write_subject(root, subject)
    first = fingerprint(tmp_path / "datasets.yaml")
    assert run(tmp_path, capsys)[0] == 0
    assert fingerprint(tmp_path / "datasets.yaml") == first  # the same files: the same data

    write_subject(root, "d")
    code, err = run(tmp_path, capsys)
    assert code == 0
    assert "dataset 'scans' changed since it was stored" in err and "3 subjects then, 4 now" in err
    store = Store(tmp_path / "wb.duckdb")
    runs = store.runs()
    assert len(runs) == 2  # the old run is kept, not resumed with pairs of another split
    board = store.leaderboard()
    assert len(board) == 1 and board.iloc[0]["pairs"] == 12  # 4 subjects: 12 ordered pairs

    write_subject(root, "a", shift=1)  # same names, new content
    code, err = run(tmp_path, capsys)
    assert code == 0
    assert "changed since it was stored" in err and "subjects then" not in err
    assert len(Store(tmp_path / "wb.duckdb").runs()) == 3
    rewritten = Store(tmp_path / "wb.duckdb").leaderboard()["run_id"].tolist()

    code, err = run(tmp_path, capsys)  # nothing changed: resumed, nothing said
    assert code == 0 and "changed since" not in err and "back to" not in err
    assert len(Store(tmp_path / "wb.duckdb").runs()) == 3

    write_subject(root, "a")  # back to the four subjects as they were: that run is current again
    code, err = run(tmp_path, capsys)
    assert code == 0 and "dataset 'scans' is back to a version stored before" in err
    store = Store(tmp_path / "wb.duckdb")
    assert len(store.runs()) == 3
    board = store.leaderboard()
    assert len(board) == 1 and board.iloc[0]["run_id"] not in rewritten
    runs = store.runs().set_index("run_id")
    assert runs.loc[board.iloc[0]["run_id"], "dataset_fingerprint"] == \
        fingerprint(tmp_path / "datasets.yaml")


def test_two_blocks_with_the_same_options_keep_their_own_leaderboards(tmp_path, capsys):
    """The leaderboard matches a run to its own dataset's newest description, never to another
    block's that happens to have the same fingerprint."""
    (tmp_path / "datasets.yaml").write_text(
        CONFIG + CONFIG.split("\n", 1)[1].replace("  scans:", "  copy:"))
    for subject in ("a", "b"):
        write_subject(tmp_path / "scans", subject)
    assert main(["run", "--quiet", "--db", str(tmp_path / "wb.duckdb"), "--config",
                 str(tmp_path / "datasets.yaml"), "--method", "identity",
                 "--dataset", "scans", "--dataset", "copy"]) == 0
    assert sorted(Store(tmp_path / "wb.duckdb").leaderboard()["dataset"]) == ["copy", "scans"]
