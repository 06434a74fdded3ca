"""What the study shows of domain shift: the trained-on x tested-on matrix and the networks
against classical under shift (``warpbench study`` and the domain-shift page), the supervision
page's in-domain bars, and box and drop panels that stay readable with some 40 configurations
per test dataset."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.io
import pytest

from test_app import _open
from test_study import frames
from warpbench import study
from warpbench.store import Store
from warpbench_leaderboard import figures, tables

PAIRS = 12


# --- the study's tables --------------------------------------------------------------------------
@pytest.fixture
def shift_frames():
    """syn on a real dataset and its shifted copy; networks trained on the real one."""
    rng = np.random.default_rng(1)
    classical = 0.80 + 0.02 * rng.standard_normal(PAIRS)
    runs = {
        "syn-h": ("syn", "default", "classical", "none", "hip", None),
        "syn-n": ("syn", "default", "classical", "none", "hip-noise", None),
        "sup-h": ("voxelmorph", "labels", "learning", "labels", "hip", "hip"),  # better at home
        "sup-n": ("voxelmorph", "labels", "learning", "labels", "hip-noise", "hip"),  # worse away
        "vxm-h": ("voxelmorph", "default", "learning", "none", "hip", "hip"),
        "vxm-n": ("voxelmorph", "default", "learning", "none", "hip-noise", "hip"),
    }
    scores = {
        "syn-h": classical, "syn-n": classical - 0.01,
        "sup-h": classical + 0.05 + 0.005 * rng.standard_normal(PAIRS),
        "sup-n": classical - 0.15 + 0.005 * rng.standard_normal(PAIRS),
        "vxm-h": classical - 0.10 + 0.005 * rng.standard_normal(PAIRS),
        "vxm-n": classical - 0.30 + 0.005 * rng.standard_normal(PAIRS),
    }
    return frames(runs, scores, {})


def test_shifted_margins_compare_each_network_away_from_home_with_classical(shift_frames):
    scores = study.pair_scores(*shift_frames)
    supervised = study.shifted_margins(scores, "labels")
    assert supervised[["dataset", "config", "trained_on", "pairs"]].values.tolist() == [
        ["hip-noise", "voxelmorph:labels", "hip", PAIRS]]
    row = supervised.iloc[0]
    assert row["difference"] == pytest.approx(-0.14, abs=0.01)
    syn_noise = scores[scores["run_id"] == "syn-n"]["mean_dice"]
    assert row["classical"] == pytest.approx(syn_noise.mean())
    assert row["verdict"] == "classical better"
    # In domain the same network is better: the in-domain table holds only that run.
    home = study.in_domain_margins(scores, "labels")
    assert home["dataset"].tolist() == ["hip"] and home["verdict"].tolist() == ["DLIR better"]
    assert study.shifted_margins(scores, "none")["difference"].iloc[0] == pytest.approx(
        -0.29, abs=0.01)


def test_the_matrix_has_a_row_per_network_and_the_reference_first(shift_frames):
    matrix = study.domain_matrix(study.pair_scores(*shift_frames))
    assert list(matrix.index) == [("syn:default", study.UNTRAINED), ("voxelmorph:default", "hip"),
                                  ("voxelmorph:labels", "hip")]
    assert list(matrix.columns) == ["hip", "hip-noise"]
    assert matrix.loc[("voxelmorph:labels", "hip"), "hip"] == pytest.approx(0.85, abs=0.02)
    assert matrix.loc[("voxelmorph:labels", "hip"), "hip-noise"] == pytest.approx(0.65, abs=0.02)


def test_the_report_shows_the_matrix_and_the_margins_under_shift(shift_frames):
    text = study.report(*shift_frames)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Unsupervised DLIR against classical, in domain",
        "## Label-supervised DLIR against classical, in domain",
        "## Trained on x tested on",
        "## Unsupervised DLIR against classical, under shift",
        "## Label-supervised DLIR against classical, under shift",
        "## The DLIR margin under domain shift",
        "## More training steps, in domain"]
    assert "| config | trained_on | hip | hip-noise |" in text
    assert "| voxelmorph:labels | hip | **0.85" in text  # in bold on its own training set
    assert "| hip-noise | voxelmorph:labels | hip | own | 12 |" in text


# --- the supervision page: the in-domain finding stays in domain ---------------------------------
def _pair(fixed, moving, dice):
    return SimpleNamespace(
        fixed=fixed, moving=moving, status="ok", error=None, mean_dice=dice, mean_hd95=3.0,
        sdlogj=0.05, folding_percent=0.0, seconds=0.5, peak_memory_mb=128.0, device="cpu",
        labels=[1], dice=[dice], hd95=[3.0])


SHIFT_STORE = (  # method, preset, family, supervision, trained on, tested on, base Dice
    ("syn", "default", "classical", "none", None, "hip", 0.80),
    ("syn", "default", "classical", "none", None, "hip-noise", 0.78),
    ("vxm", "labels", "learning", "labels", "hip", "hip", 0.84),
    ("vxm", "labels", "learning", "labels", "hip", "hip-noise", 0.70),
    ("vxm", "labels", "learning", "labels", "hip-noise", "hip-noise", 0.74),
    ("vxm", "labels", "learning", "labels", "hip-noise", "hip", 0.90),  # better away from home
    ("vxm", "default", "learning", "none", "hip", "hip", 0.60),
    ("vxm", "default", "learning", "none", "hip", "hip-noise", 0.50),
)


@pytest.fixture(scope="module")
def shift_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shift") / "warpbench.duckdb"
    store = Store(path)
    for method, preset, family, supervision, train, dataset, base in SHIFT_STORE:
        run = store.begin_run(f"{method}/{preset}/{train}/{dataset}", {
            "method": method, "preset": preset, "params": "{}", "family": family,
            "supervision": supervision, "dataset": dataset, "train_dataset": train,
            "in_domain": None if train is None else train == dataset, "seed": 0})
        for k in range(4):
            store.record_pair(run.run_id, 1, _pair(f"s{k}", f"s{k + 1}", base + 0.01 * k))
        store.end_run(run.run_id, "complete")
    return path


def test_supervision_bars_take_only_in_domain_networks(monkeypatch, shift_db):
    at = _open(monkeypatch, shift_db, "supervision")
    assert not at.exception and not at.info
    assert "in domain only" in at.caption[0].value
    best = at.dataframe[0].value.set_index(["dataset", "group"])
    # On hip the network trained on hip-noise scores 0.915: shifted, so not the group's bar.
    assert best.loc[("hip", "DLIR, label-supervised"), "config"] == "vxm:labels [hip]"
    assert best.loc[("hip-noise", "DLIR, label-supervised"), "config"] == "vxm:labels [hip-noise]"
    assert ("hip-noise", "DLIR, unsupervised") not in best.index  # trained on hip only
    assert "in domain" in _charts(at)[0].layout.yaxis.title.text


def test_not_shifted_keeps_untrained_and_in_domain_rows():
    board = pd.DataFrame({"run_id": list("abcd"), "in_domain": [None, True, False, pd.NA]})
    assert tables.not_shifted(board)["run_id"].tolist() == ["a", "b", "d"]


# --- the domain-shift page ------------------------------------------------------------------------
def _charts(at) -> list:
    """The page's plotly figures, as the app sent them."""
    return [plotly.io.from_json(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_domain_shift_page_shows_the_matrix_and_the_margins_under_shift(monkeypatch, shift_db):
    at = _open(monkeypatch, shift_db, "domain-shift", {"shift_method": "vxm:labels"})
    assert not at.exception and not at.info
    assert at.selectbox(key="shift_reference").value == "syn:default"
    heatmap = _charts(at)[0].data[0]
    assert list(heatmap.y) == ["hip", "hip-noise", "syn:default (not trained)"]
    assert list(heatmap.x) == ["hip", "hip-noise"]
    assert list(heatmap.text[2]) == ["0.815", "0.795"]  # the values written in
    # drops, the change under shift, the two tables against classical, the whole matrix
    drops, changes, unsupervised, supervised, matrix = (d.value for d in at.dataframe)
    assert supervised[["dataset", "trained_on"]].values.tolist() == [["hip", "hip-noise"],
                                                                     ["hip-noise", "hip"]]
    assert unsupervised[["dataset", "config", "trained_on"]].values.tolist() == [
        ["hip-noise", "vxm:default", "hip"]]
    assert matrix["config"].tolist()[0] == "syn:default"
    assert len(matrix) == 1 + 3  # the reference, vxm:default [hip], vxm:labels on each


def test_the_reader_picks_the_test_datasets_and_training_sets_of_the_boxes(monkeypatch, shift_db):
    at = _open(monkeypatch, shift_db, "domain-shift")
    assert at.multiselect(key="shift_box_datasets").value == ["hip"]  # one panel to start with
    assert at.multiselect(key="shift_box_trained").options == [tables.NOT_TRAINED, "hip",
                                                               "hip-noise"]

    def boxes():
        figure = _charts(at)[1]
        titles = [a.text for a in figure.layout.annotations]
        return titles, sorted(y for trace in figure.data for y in trace.y)

    assert boxes() == (["hip"], sorted(["syn:default", "vxm:default [hip]", "vxm:labels [hip]",
                                        "vxm:labels [hip-noise]"]))
    at.multiselect(key="shift_box_datasets").select("hip-noise").run()
    at.multiselect(key="shift_box_trained").select(tables.NOT_TRAINED).select("hip").run()
    assert not at.exception
    titles, configs = boxes()
    assert titles == ["hip", "hip-noise"]
    assert configs == sorted(["syn:default", "vxm:default [hip]", "vxm:labels [hip]"] * 2)
    at.multiselect(key="shift_box_datasets").unselect("hip").unselect("hip-noise").run()
    assert "Pick at least one test dataset." in [c.value for c in at.caption]


# --- readable at some 40 configurations per test dataset ------------------------------------------
def _many_boxes(datasets=5, configs=40) -> pd.DataFrame:
    rows = []
    for d in range(datasets):
        for c in range(configs):
            median = 0.5 + 0.01 * c
            rows.append({"dataset": f"dataset-{d}", "config": f"voxelmorph:labels-long [train-{c}]",
                         "family": "learning" if c % 2 else "classical", "train_dataset": None,
                         "n": 20, "q1": median - 0.05, "median": median, "q3": median + 0.05,
                         "lowerfence": median - 0.1, "upperfence": median + 0.1, "mean": median})
    return pd.DataFrame(rows)


def test_box_panels_give_every_configuration_a_line_and_every_title_its_own_gap():
    fig = figures.box_figure(_many_boxes())
    layout = fig.layout
    assert all(trace.orientation == "h" for trace in fig.data)  # names as horizontal text
    plot_px = layout.height - layout.margin.t - layout.margin.b
    domains = sorted((layout[f"yaxis{k if k > 1 else ''}"].domain for k in range(1, 6)),
                     reverse=True)
    for top, below in zip(domains, domains[1:]):
        assert (top[0] - below[1]) * plot_px >= 80  # room for ticks, axis title and next title
    for low, high in domains:
        assert (high - low) * plot_px / 40 >= 18  # at least 18 px per configuration's line
    titles = sorted((a.y for a in layout.annotations), reverse=True)
    for title, (low, high) in zip(titles, domains):
        assert high <= title <= high + 30 / plot_px  # just above its own panel
    order = list(layout.yaxis.categoryarray)
    assert order[-1] == "voxelmorph:labels-long [train-39]"  # best median at the top


def test_drop_bars_are_horizontal_and_grow_with_their_number():
    drops = pd.DataFrame({
        "config": [f"vxm:labels [d{k}]" for k in range(60)], "family": "learning",
        "group": "DLIR, label-supervised", "train_dataset": [f"d{k}" for k in range(60)],
        "in_domain": 0.8, "shifted": 0.7, "shifted_datasets": 2,
        "drop": np.linspace(-0.1, 0.2, 60)})
    fig = figures.domain_drop_figure(drops)
    assert fig.data[0].orientation == "h" and fig.layout.height >= 60 * 18
    assert list(fig.layout.yaxis.categoryarray)[-1] == "vxm:labels [d59]"  # largest drop on top
    assert list(fig.data[0].y)[0] == "vxm:labels [d0]"  # a network's name, once


def test_the_heat_map_reads_against_the_classical_reference():
    summary = pd.DataFrame({
        "method": ["vxm", "vxm", "syn", "syn", "syn"], "preset": "default",
        "train_dataset": ["a", "a", None, None, None], "dataset": ["a", "b", "a", "b", "c"],
        "dice": [0.9, 0.6, 0.8, 0.79, 0.7]})
    matrix = tables.domain_matrix(summary, "vxm", "default", "syn:default")
    assert list(matrix.index) == ["a", "syn:default (not trained)"]
    assert list(matrix.columns) == ["a", "b"]
    assert matrix.loc["syn:default (not trained)"].tolist() == pytest.approx([0.8, 0.79])
    assert list(tables.domain_matrix(summary, "vxm", "default").index) == ["a"]
