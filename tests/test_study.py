"""The study's comparisons on scores whose outcome is known by construction."""

import json

import numpy as np
import pandas as pd
import pytest

from warpbench import study

PAIRS = 12


def frames(runs: dict[str, tuple], scores: dict[str, np.ndarray], params: dict[str, dict]):
    """The leaderboard, pair-score and run frames as the store returns them: ``runs`` maps a run
    id to (method, preset, family, supervision, dataset, train_dataset); ``in_domain`` and
    ``same_labels`` are what the store records with a trained run (a training dataset named
    ``other-...`` has another label protocol)."""
    board = pd.DataFrame(
        [dict(zip(["method", "preset", "family", "supervision", "dataset", "train_dataset"], v),
              run_id=k, in_domain=None if v[5] is None else v[5] == v[4],
              same_labels=None if v[5] is None else not v[5].startswith("other-"))
         for k, v in runs.items()])
    pairs = pd.DataFrame([
        {"run_id": run_id, "fixed": f"f{i}", "moving": f"m{i}", "status": "ok", "mean_dice": dice}
        for run_id, values in scores.items() for i, dice in enumerate(values)])
    settings = pd.DataFrame([{"run_id": k, "params": json.dumps(params.get(k, {}))} for k in runs])
    return board, pairs, settings


@pytest.fixture
def store_frames():
    rng = np.random.default_rng(0)
    classical = 0.85 + 0.03 * rng.standard_normal(PAIRS)
    runs = {
        "syn": ("syn", "default", "classical", "none", "a", None),
        "vxm-a": ("voxelmorph", "default", "learning", "none", "a", "a"),  # clearly worse
        "vxm-b": ("voxelmorph", "default", "learning", "none", "a", "b"),  # worse still: shifted
        "vxm-o": ("voxelmorph", "default", "learning", "none", "a", "other-c"),  # other labels
        "sup-a": ("voxelmorph", "labels", "learning", "labels", "a", "a"),  # clearly better
        "tie-a": ("lkunet", "default", "learning", "none", "a", "a"),  # the same up to noise
        "long-a": ("voxelmorph", "default-long", "learning", "none", "a", "a"),  # 4x steps
    }
    scores = {
        "syn": classical,
        "vxm-a": classical - 0.20 + 0.01 * rng.standard_normal(PAIRS),
        "vxm-b": classical - 0.30 + 0.01 * rng.standard_normal(PAIRS),
        "vxm-o": classical - 0.30 + 0.01 * rng.standard_normal(PAIRS),
        "sup-a": classical + 0.05 + 0.01 * rng.standard_normal(PAIRS),
        "tie-a": classical + 0.001 * np.where(np.arange(PAIRS) % 2, 1, -1),
    }
    scores["long-a"] = scores["vxm-a"] + 0.05 + 0.01 * rng.standard_normal(PAIRS)
    network = {"steps": 300, "supervision": "none", "learning_rate": 1e-3}
    params = {"vxm-a": network, "vxm-b": network, "vxm-o": network, "long-a": {**network, "steps": 1200},
              "sup-a": {**network, "supervision": "labels"}, "tie-a": network}
    return frames(runs, scores, params)


def test_in_domain_margins_say_which_side_wins_on_the_same_pairs(store_frames):
    scores = study.pair_scores(*store_frames)
    unsupervised = study.in_domain_margins(scores, "none").set_index("config")
    # Only in-domain networks: the one trained on b is not part of this comparison.
    assert list(unsupervised.index) == ["lkunet:default", "voxelmorph:default",
                                        "voxelmorph:default-long"]
    assert unsupervised.loc["voxelmorph:default", "verdict"] == "classical better"
    assert unsupervised.loc["voxelmorph:default", "difference"] == pytest.approx(-0.20, abs=0.01)
    assert unsupervised.loc["lkunet:default", "verdict"] == "no significant difference"
    assert (unsupervised["pairs"] == PAIRS).all()
    supervised = study.in_domain_margins(scores, "labels")
    assert supervised["verdict"].tolist() == ["DLIR better"]


def test_holm_adjusts_within_each_table(store_frames):
    table = study.in_domain_margins(study.pair_scores(*store_frames), "none")
    assert (table["p_holm"] >= table["p"]).all()
    smallest = table["p"].idxmin()
    assert table.loc[smallest, "p_holm"] == pytest.approx(min(1, len(table) * table.loc[smallest, "p"]))


def test_the_shift_change_is_the_networks_own_drop(store_frames):
    table = study.shift_changes(study.pair_scores(*store_frames))
    assert table["config"].tolist() == ["voxelmorph:default"]  # the only one trained twice
    row = table.iloc[0]
    assert row["trained_on"] == "b, other-c (other labels)"
    assert row["change"] == pytest.approx(-0.10, abs=0.01)
    assert row["verdict"] == "worse under shift"


def test_a_shifted_network_on_another_label_protocol_is_marked_so(store_frames):
    scores = study.pair_scores(*store_frames)
    table = study.shifted_margins(scores, "none").set_index("trained_on")
    assert table["labels"].to_dict() == {"b": "own", "other-c": "other"}
    assert (table["verdict"] == "classical better").all()
    text = study.report(*store_frames)
    assert "| voxelmorph:default | other-c | 0." in text and " † |" in text
    assert "| a | voxelmorph:default | other-c | other | 12 |" in text


def test_failed_pairs_are_left_out_of_every_comparison(store_frames):
    board, pairs, _ = store_frames
    pairs.loc[(pairs["run_id"] == "vxm-a") & (pairs["fixed"] == "f0"), ["status", "mean_dice"]] = \
        ["failed", np.nan]
    table = study.in_domain_margins(study.pair_scores(board, pairs), "none").set_index("config")
    assert table.loc["voxelmorph:default", "pairs"] == PAIRS - 1


def test_more_training_is_compared_only_between_configurations_that_differ_in_budget(
        store_frames):
    table = study.budget_changes(study.pair_scores(*store_frames))
    # labels-supervised and lkunet differ in more than the steps: not compared
    assert table[["longer", "shorter"]].values.tolist() == [
        ["voxelmorph:default-long", "voxelmorph:default"]]
    row = table.iloc[0]
    assert row["change"] == pytest.approx(0.05, abs=0.01)
    assert row["verdict"] == "better with more training"


def test_the_report_names_a_missing_classical_reference(store_frames):
    with pytest.raises(ValueError, match="no scored pairs of 'greedy:default'.*syn:default"):
        study.report(*store_frames, classical="greedy:default")
    text = study.report(*store_frames)
    assert "## Unsupervised DLIR against classical, in domain" in text
    assert "3 comparisons: " in text and "| a | voxelmorph:default | 12 |" in text
    assert "## More training steps, in domain" in text
