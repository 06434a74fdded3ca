"""The app's figure functions (``warpbench_leaderboard.figures``) and the table shaping behind
them (``warpbench_leaderboard.tables``), on inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from warpbench import stats
from warpbench.literature import ReportedResult
from warpbench.store import LEADERBOARD_COLUMNS, PAIR_SCORE_COLUMNS
from warpbench_leaderboard import figures, tables


# --- a small study: per-pair scores and the leaderboard built from them --------------------------
CONFIGS = [  # method, preset, family, supervision, train_dataset, dataset, per-pair dice
    ("greedy", "default", "classical", "none", None, "oasis", [0.80, 0.82, 0.84, 0.86]),
    ("greedy", "fast", "classical", "none", None, "oasis", [0.74, 0.76, 0.78, 0.80]),
    ("greedy", "default", "classical", "none", None, "lpba", [0.70, 0.72, 0.74, 0.76]),
    ("identity", "default", "baseline", "none", None, "oasis", [0.50, 0.52, 0.54, 0.56]),
    ("identity", "default", "baseline", "none", None, "lpba", [0.45, 0.47, 0.49, 0.51]),
    ("vxm", "default", "learning", "none", "oasis", "oasis", [0.78, 0.80, 0.82, 0.84]),
    ("vxm", "default", "learning", "none", "oasis", "lpba", [0.60, 0.62, 0.64, 0.66]),
    ("vxm-sup", "default", "learning", "labels", "oasis", "oasis", [0.88, 0.90, 0.92, 0.94]),
    ("vxm-sup", "default", "learning", "labels", "oasis", "lpba", [0.58, 0.60, 0.62, 0.64]),
]


@pytest.fixture
def study() -> pd.DataFrame:
    """Per-pair rows with their run's description (``in_domain`` as the store records it)."""
    rows = []
    for k, (method, preset, family, supervision, train, dataset, dice) in enumerate(CONFIGS):
        for i, value in enumerate(dice):
            rows.append({"run_id": f"r{k}", "method": method, "preset": preset, "family": family,
                         "supervision": supervision, "dataset": dataset, "train_dataset": train,
                         "in_domain": None if train is None else train == dataset, "seed": 0,
                         "fixed": f"s{i}", "moving": f"s{i + 1}", "status": "ok",
                         "mean_dice": value, "mean_hd95": 3.0 - value, "sdlogj": 0.05,
                         "folding_percent": 0.0, "seconds": 1.0, "peak_memory_mb": 100.0})
    rows.append({**rows[0], "fixed": "s8", "moving": "s9", "status": "failed", "mean_dice": None})
    return pd.DataFrame(rows)


@pytest.fixture
def pairs(study) -> pd.DataFrame:
    """What ``Store.pair_scores()`` returns: scores keyed by run, no run description."""
    return study[PAIR_SCORE_COLUMNS]


@pytest.fixture
def summary(study, pairs) -> pd.DataFrame:
    ok = study[study["status"] == "ok"]
    board = ok.groupby("run_id", sort=False).agg(
        method=("method", "first"), preset=("preset", "first"), family=("family", "first"),
        supervision=("supervision", "first"), dataset=("dataset", "first"),
        train_dataset=("train_dataset", "first"), in_domain=("in_domain", "first"),
        pairs=("mean_dice", "size"),
        dice=("mean_dice", "mean"), dice_std=("mean_dice", "std"), hd95=("mean_hd95", "mean"),
        sdlogj=("sdlogj", "mean"), folding_percent=("folding_percent", "mean"),
        seconds=("seconds", "mean"), peak_memory_mb=("peak_memory_mb", "max"),
    ).reset_index()
    board["failed"] = 0
    board["same_labels"] = board["in_domain"].map(lambda d: None if d is None else True)
    board["pre_aligned"] = None
    return tables.summarise(board[LEADERBOARD_COLUMNS], pairs)


DATASETS = pd.DataFrame({"dataset": ["oasis", "lpba"], "mi_bits": [1.2, 0.9], "nmi": [0.4, 0.3]})


# --- tables --------------------------------------------------------------------------------------
def test_summarise_ranks_cis_and_worst_thirty(summary):
    oasis = summary[summary["dataset"] == "oasis"].set_index(["method", "preset"])
    assert oasis.loc[("vxm-sup", "default"), "rank"] == 1
    assert oasis.loc[("greedy", "default"), "rank"] == 2
    assert oasis.loc[("identity", "default"), "rank"] == 5
    greedy = oasis.loc[("greedy", "default")]
    assert greedy["dice"] == pytest.approx(0.83)
    assert greedy["dice_ci_low"] < 0.83 < greedy["dice_ci_high"]
    assert (greedy["dice_ci_low"], greedy["dice_ci_high"]) == stats.bootstrap_ci([0.80, 0.82, 0.84, 0.86])
    assert greedy["dice_worst30"] == pytest.approx(0.80 + 0.3 * 3 * 0.02)  # the failed pair is out


def test_summarise_leaves_a_configuration_without_scores_unranked(summary):
    extra = summary.iloc[:1].assign(run_id="none", dice=np.nan, pairs=0, failed=3)
    board = pd.concat([summary[LEADERBOARD_COLUMNS], extra[LEADERBOARD_COLUMNS]], ignore_index=True)
    out = tables.summarise(board, pd.DataFrame(columns=PAIR_SCORE_COLUMNS))
    assert np.isnan(out.iloc[-1]["rank"]) and out.iloc[:-1]["rank"].notna().all()
    assert out["dice_ci_low"].isna().all()  # no per-pair scores given: no intervals


def test_overall_ranking_is_mean_rank_over_datasets(summary):
    overall = tables.overall_ranking(summary).set_index(["method", "preset"])
    # greedy:default is 2nd of 5 on oasis and 1st of 4 on lpba
    assert overall.loc[("greedy", "default"), "mean_rank"] == pytest.approx(1.5)
    assert overall.loc[("greedy", "default"), "datasets"] == 2
    assert overall.loc[("greedy", "default"), "overall_rank"] == 1
    assert overall.loc[("greedy", "fast"), "datasets"] == 1
    assert overall.loc[("vxm-sup", "default"), "train_dataset"] == "oasis"


def test_filters_cover_every_column(summary):
    shown = tables.filter_leaderboard(summary, supervision=["labels"])
    assert set(shown["method"]) == {"vxm-sup"}
    assert set(tables.filter_leaderboard(summary, presets=["fast"])["method"]) == {"greedy"}
    assert len(tables.filter_leaderboard(summary, train_datasets=["oasis"])) == 4
    assert tables.filter_options(summary, "train_dataset") == ["oasis"]


def test_groups_and_best_per_group(summary):
    grouped = tables.with_groups(tables.with_labels(summary))
    best = tables.best_per_group(grouped, "group").set_index(["dataset", "group"])
    assert best.loc[("oasis", "classical"), "config"] == "greedy:default"
    assert best.loc[("oasis", "DLIR, label-supervised"), "config"] == "vxm-sup:default [oasis]"
    assert best.loc[("lpba", "DLIR, unsupervised"), "dice"] == pytest.approx(0.63)
    assert tables.supervision_group("learning", None) == "DLIR, unsupervised"


def test_preset_spread(summary):
    spread = tables.preset_spread(summary)
    greedy = spread[(spread["method"] == "greedy") & (spread["dataset"] == "oasis")].iloc[0]
    assert greedy["presets"] == 2 and greedy["spread"] == pytest.approx(0.06)
    assert (greedy["best_preset"], greedy["worst_preset"]) == ("default", "fast")


def test_domain_matrix_and_drops(summary):
    matrix = tables.domain_matrix(summary, "vxm-sup", "default")
    assert matrix.loc["oasis", "oasis"] == pytest.approx(0.91)
    assert matrix.loc["oasis", "lpba"] == pytest.approx(0.61)
    drops = tables.domain_drops(summary).set_index("config")
    assert drops.loc["vxm-sup:default [oasis]", "drop"] == pytest.approx(0.30)
    assert drops.loc["vxm:default [oasis]", "drop"] == pytest.approx(0.18)
    assert drops.loc["greedy:default", "drop"] == pytest.approx(0.10)  # classical, for reference
    assert tables.domain_matrix(summary, "greedy", "default").index.tolist() == ["none"]


def test_mi_points_pick_each_familys_best(summary):
    points = tables.mi_points(summary, DATASETS).set_index(["dataset", "family"])
    assert points.loc[("oasis", "learning"), "dice"] == pytest.approx(0.91)
    assert points.loc[("lpba", "classical"), "mi"] == pytest.approx(0.9)
    nmi = tables.mi_points(summary, DATASETS, "nmi")
    assert set(nmi["mi"]) == {0.4, 0.3}


def test_match_reported_pairs_reported_with_measured(summary):
    reported = tables.reported_table([
        ReportedResult(method="Greedy", dataset="OASIS", metric="dice", value=0.70,
                       source="Someone 2020", paper="A paper", table="Table 1",
                       family="classical", configuration="short schedule",
                       warpbench_method="greedy", warpbench_dataset="oasis"),
        ReportedResult(method="SyN", dataset="IXI", metric="dice", value=0.645,
                       source="Chen 2022", paper="TransMorph", table="IXI",
                       family="classical", configuration="MSQ"),
    ])
    matches = tables.match_reported(reported, summary)
    assert sorted(matches["preset"]) == ["default", "fast"]
    default = matches[matches["preset"] == "default"].iloc[0]
    assert default["reported"] == 0.70 and default["difference"] == pytest.approx(0.13)
    fig = figures.reported_vs_measured_figure(matches)
    assert fig.data[0].x.tolist() == [0.70]  # one reported marker, then the measured ones
    assert sorted(fig.data[1].x) == pytest.approx([0.77, 0.83])
    assert tables.match_reported(reported.iloc[1:], summary).empty


# --- figures -------------------------------------------------------------------------------------
def test_family_colours_are_defined_once_and_used():
    assert figures.family_colour("classical") == figures.FAMILY_COLOURS["classical"]
    assert figures.family_colour(None) == figures.OTHER_COLOUR
    assert figures.GROUP_COLOURS["classical"] == figures.FAMILY_COLOURS["classical"]
    assert figures.GROUP_COLOURS["DLIR, label-supervised"] == figures.FAMILY_COLOURS["learning"]


def test_mi_dice_figure_reports_a_correlation_of_known_value():
    # classical: dx = -2..2, dy = -1,-2,1,0,2 -> Pearson r = 0.8, p = 0.104, Spearman exact 0.133
    points = pd.DataFrame({
        "dataset": list("abcde"), "family": "classical", "config": "greedy:default",
        "mi": [1.0, 2.0, 3.0, 4.0, 5.0], "dice": [0.72, 0.71, 0.74, 0.73, 0.75],
    })
    correlations = tables.mi_correlations(points)
    row = correlations.iloc[0]
    assert row["pearson_r"] == pytest.approx(0.8) and row["pearson_p"] == pytest.approx(0.1041, abs=1e-4)
    fig = figures.mi_dice_figure(points, correlations)
    text = " ".join(a.text for a in fig.layout.annotations)
    assert "Pearson r = 0.80 (p = 0.104)" in text
    assert "Spearman ρ = 0.80 (p = 0.133)" in text and "n = 5" in text
    scatter, line = fig.data
    assert scatter.marker.color == figures.FAMILY_COLOURS["classical"]
    assert list(scatter.text) == list("abcde")
    slope = (line.y[1] - line.y[0]) / (line.x[1] - line.x[0])
    assert slope == pytest.approx(np.polyfit(points["mi"], points["dice"], 1)[0])


def test_score_matrix_pairs_configurations_on_their_common_pairs(pairs, summary):
    matrix = tables.score_matrix(pairs, summary, "oasis", ["greedy:default", "vxm-sup:default [oasis]"])
    assert list(matrix.columns) == ["greedy:default", "vxm-sup:default [oasis]"]
    assert len(matrix) == 4  # greedy's failed pair s8 <- s9 is not scored: not a row
    assert matrix.loc[("s0", "s1")].tolist() == pytest.approx([0.80, 0.88])
    tests = stats.pairwise_paired_tests(matrix)
    assert tests.iloc[0]["n"] == 4 and tests.iloc[0]["mean_difference"] == pytest.approx(-0.08)
    assert tables.score_matrix(pairs, summary, "nowhere", ["greedy:default"]).empty


def test_significance_matrix_of_a_known_case():
    base = np.linspace(0.6, 0.8, 10)
    scores = pd.DataFrame({
        "A": base + 0.01 * np.arange(1, 11),  # better than B on every pair
        "B": base,
        "C": base + 0.001 * np.array([1, -1, 2, -2, 3, -3, 4, -4, 5, -5]),  # B up to noise
    })
    tests = stats.pairwise_paired_tests(scores)
    diff, p_holm, text = figures.significance_matrix(tests, ["A", "B", "C"], "wilcoxon")
    assert diff[0, 1] == pytest.approx(0.055) and diff[1, 0] == pytest.approx(-0.055)
    assert np.isnan(diff[0, 0]) and np.isnan(p_holm[1, 1])
    # A vs B: every rank positive, exact p = 2/1024, Holm x3 as the smallest of three
    assert p_holm[0, 1] == pytest.approx(3 * 2 / 1024)
    assert text[0][1] == "+0.055<br>**"
    # B vs C: differences +-0.001..0.005 balance out, no evidence
    assert text[1][2].endswith("ns")
    fig = figures.significance_figure(tests, ["A", "B", "C"], "wilcoxon")
    heatmap = fig.data[0]
    assert list(heatmap.x) == ["A", "B", "C"] and heatmap.zmid == 0
    assert np.asarray(heatmap.z, dtype=float)[0, 1] == pytest.approx(0.055)
    assert "Holm" in fig.layout.title.text and "3 comparisons" in fig.layout.title.text
    t_diff, t_p, _ = figures.significance_matrix(tests, ["A", "B", "C"], "t")
    assert t_p[0, 1] == pytest.approx(tests.iloc[0]["t_p_holm"])
    lower = figures.significance_figure(tests, ["A", "B", "C"], higher_is_better=False)
    assert lower.data[0].reversescale is True


def test_box_stats_are_tukey_boxes(pairs, summary):
    boxes = figures.box_stats(pairs, summary).set_index(["dataset", "config"])
    greedy = boxes.loc[("oasis", "greedy:default")]
    assert greedy["n"] == 4  # the failed pair is left out
    assert greedy["median"] == pytest.approx(0.83)
    assert (greedy["q1"], greedy["q3"]) == pytest.approx((0.815, 0.845))
    assert (greedy["lowerfence"], greedy["upperfence"]) == pytest.approx((0.80, 0.86))
    fig = figures.box_figure(figures.box_stats(pairs, summary))
    assert {trace.name for trace in fig.data} == {"classical", "baseline", "learning"}
    assert all(t.marker.color == figures.family_colour(t.name) for t in fig.data)


def test_the_heat_map_marks_a_test_on_another_label_protocol(summary):
    trained = summary[summary["method"] == "vxm"].iloc[0]
    marked = summary.assign(same_labels=[
        False if run == trained["run_id"] else (None if pd.isna(t) else True)
        for run, t in zip(summary["run_id"], summary["train_dataset"])])
    cells = tables.other_label_cells(marked, "vxm", trained["preset"])
    assert cells == {(trained["train_dataset"], trained["dataset"])}
    fig = figures.domain_heatmap_figure(tables.domain_matrix(marked, "vxm", trained["preset"]),
                                        other_labels=cells)
    daggers = [text for row in fig.data[0].text for text in row if text.endswith(" †")]
    assert len(daggers) == 1


def test_every_figure_builds_on_the_study_and_on_nothing(summary, pairs):
    grouped = tables.with_groups(tables.with_labels(summary))
    built = [
        figures.ci_figure(summary),
        figures.preset_spread_figure(summary),
        figures.supervision_figure(tables.best_per_group(grouped, "group")),
        figures.domain_heatmap_figure(tables.domain_matrix(summary, "vxm", "default")),
        figures.domain_drop_figure(tables.domain_drops(summary)),
        figures.box_figure(figures.box_stats(pairs, summary)),
    ]
    assert all(len(fig.data) > 0 for fig in built)
    empty = summary.iloc[:0]
    nothing = [
        figures.ci_figure(empty), figures.preset_spread_figure(empty),
        figures.supervision_figure(
            tables.best_per_group(tables.with_groups(tables.with_labels(empty)), "group")),
        figures.domain_heatmap_figure(pd.DataFrame()), figures.domain_drop_figure(tables.domain_drops(empty)),
        figures.box_figure(figures.box_stats(pairs.iloc[:0], summary)),
        figures.mi_dice_figure(tables.mi_points(empty, DATASETS), tables.mi_correlations(
            tables.mi_points(empty, DATASETS))),
        figures.significance_figure(pd.DataFrame(), []),
        figures.reported_vs_measured_figure(tables.match_reported(tables.reported_table([]), empty)),
    ]
    for fig in nothing:  # an empty figure says why
        assert not fig.data and fig.layout.annotations[0].text


def test_pair_figures_show_slices_folds_and_grid():
    shape = (6, 8, 10)
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    labels = np.zeros(shape, np.int16)
    labels[2:4, 2:6, 3:7] = 3
    fig = figures.slices_figure({"fixed": image, "moved": image}, {"fixed": labels, "moved": None},
                                (3, 4, 5), spacing=(1.0, 1.0, 2.0))
    assert len(fig.data) == 2 * 3 + 3  # six images, three overlays (moved has no labels)
    assert np.asarray(fig.data[0].z).shape == (8, 10)  # plane perpendicular to axis 0
    overlay = np.asarray(fig.data[1].z, dtype=float)
    assert np.isnan(overlay[0, 0]) and overlay[3, 4] == 3  # background transparent
    assert fig.layout.yaxis.scaleratio == pytest.approx(0.5)  # 1 mm rows over 2 mm columns

    disp = np.zeros((3, *shape), np.float32)
    disp[0, 2, 3, 4] = -5.0  # one voxel folded over its neighbours
    from warpbench.metrics import jacobian_determinant

    det = jacobian_determinant(disp)
    folds = int((det <= 0).sum())
    assert folds > 0
    fig = figures.jacobian_figure(det, (2, 3, 4))
    assert f"{folds} (" in fig.layout.title.text
    fold_layer = np.asarray(fig.data[1].z, dtype=float)
    assert np.nansum(fold_layer) == (det[2] <= 0).sum()

    shift = np.zeros((3, *shape), np.float32)
    shift[2] = 0.5  # everything samples half a voxel further along axis 2
    grid = figures.grid_figure(shift, (3, 4, 5), step=2)
    lines = grid.data[0]
    xs = np.array([x for x in lines.x if x is not None], dtype=float)
    assert xs.min() == pytest.approx(0.5)  # columns (axis 2) moved by the field


def test_a_partly_failed_configuration_is_ranked_apart_and_labelled(summary):
    """3 of 6 pairs failed: its mean over the 3 it scored would rank first; it is not ranked, and
    the CI chart says how many failed."""
    best = summary[summary["dataset"] == "oasis"]["dice"].max()
    extra = summary.iloc[:1].assign(run_id="partial", method="lucky", dice=best + 0.1, pairs=3,
                                    failed=3, dataset="oasis")
    board = pd.concat([summary[LEADERBOARD_COLUMNS], extra[LEADERBOARD_COLUMNS]],
                      ignore_index=True)
    out = tables.summarise(board, pd.DataFrame(columns=PAIR_SCORE_COLUMNS))
    oasis = out[out["dataset"] == "oasis"].set_index("method")
    assert np.isnan(oasis.loc["lucky", "rank"]) and oasis["rank"].min() == 1
    assert "lucky" not in set(tables.overall_ranking(out)["method"])
    labels = {y for trace in figures.ci_figure(out).data for y in trace.y}
    assert "lucky:default (3 failed)" in labels
