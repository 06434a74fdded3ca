"""warpbench.stats on cases whose answers are known by hand or from textbooks."""

import math

import numpy as np
import pandas as pd
import pytest

from warpbench import stats


# --- bootstrap, worst 30 % -----------------------------------------------------------------------
def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(0.8, 0.05, size=200)
    low, high = stats.bootstrap_ci(x)
    assert low < x.mean() < high
    assert stats.bootstrap_ci(x) == (low, high)  # same seed, same interval
    assert stats.bootstrap_ci(x, seed=1) != (low, high)
    # For a mean of 200 normal values the interval is close to mean +- 1.96 * sd / sqrt(n).
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert high - low == pytest.approx(2 * half, rel=0.15)
    wider = stats.bootstrap_ci(x, confidence=0.99)
    assert wider[0] < low and wider[1] > high


def test_bootstrap_cis_of_many_samples_are_the_plain_resampling():
    rng = np.random.default_rng(3)
    samples = [rng.random(50), rng.random(50), rng.random(9), [0.4], [], [np.nan, 0.2, 0.3]]

    def by_hand(x):  # resample the values, average each resample, take the percentiles
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        draws = np.random.default_rng(stats.SEED).integers(0, x.size, size=(stats.RESAMPLES, x.size))
        return tuple(np.quantile(x[draws].mean(axis=1), [0.025, 0.975]))

    together = stats.bootstrap_cis(samples)
    for k in (0, 1, 2, 5):
        assert together[k] == pytest.approx(by_hand(samples[k]), abs=1e-12)
        assert together[k] == pytest.approx(stats.bootstrap_ci(samples[k]), abs=1e-12)
    assert together[3] == (0.4, 0.4) and all(math.isnan(v) for v in together[4])


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(v) for v in stats.bootstrap_ci([]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([np.nan, np.nan]))
    assert stats.bootstrap_ci([0.7]) == (0.7, 0.7)
    assert stats.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    low, high = stats.bootstrap_ci([0.0, 1.0, np.nan])  # NaN left out
    assert 0.0 <= low <= high <= 1.0


def test_worst_thirty_percent():
    x = np.arange(1, 11, dtype=float)  # 1..10
    # Learn2Reg's aggregate: pandas' 0.3 quantile, linear interpolation: 1 + 0.3 * 9 = 3.7
    assert stats.worst_quantile(x) == pytest.approx(3.7)
    assert stats.worst_quantile(x) == pytest.approx(pd.Series(x).quantile(0.3))
    # the other reading: mean of the lowest 3 of 10
    assert stats.worst_fraction_mean(x) == pytest.approx(2.0)
    assert stats.worst_fraction_mean([5.0, 1.0]) == 1.0  # ceil(0.6) = 1 value
    assert math.isnan(stats.worst_quantile([])) and math.isnan(stats.worst_fraction_mean([np.nan]))


# --- Holm ----------------------------------------------------------------------------------------
def test_holm_on_a_textbook_set():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_nan_out_of_the_family():
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = stats.holm([0.01, np.nan, 0.02])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])
    assert stats.holm([]).size == 0
    assert stats.holm([0.04]) == pytest.approx([0.04])


# --- paired tests --------------------------------------------------------------------------------
def test_paired_tests_known_case():
    b = np.linspace(0.6, 0.8, 10)
    d = 0.01 * np.arange(1, 11)  # every pair favours a, distinct differences
    test = stats.paired_tests(b + d, b)
    assert test.n == 10
    assert test.mean_difference == pytest.approx(0.055)
    assert test.cohens_dz == pytest.approx(0.055 / np.std(d, ddof=1))
    # all 10 signed ranks positive: exact two-sided Wilcoxon p = 2 / 2**10
    assert test.wilcoxon_p == pytest.approx(2 / 1024)
    assert test.rank_biserial == pytest.approx(1.0)
    # paired t: t = mean / (sd / sqrt(n))
    assert test.t_statistic == pytest.approx(0.055 / (np.std(d, ddof=1) / math.sqrt(10)))
    assert test.t_p < 0.001
    mirrored = stats.paired_tests(b, b + d)
    assert mirrored.rank_biserial == pytest.approx(-1.0) and mirrored.cohens_dz < 0
    assert mirrored.wilcoxon_p == pytest.approx(test.wilcoxon_p)


def test_rank_biserial_by_hand():
    # |d| ranks: 0.1 -> 1, 0.2 -> 2, 0.3 -> 3, 0.4 -> 4; positives 1 + 3 + 4 = 8, negative 2
    assert stats.rank_biserial([0.1, -0.2, 0.3, 0.4]) == pytest.approx((8 - 2) / 10)
    assert stats.rank_biserial([0.0, 0.0]) == 0.0


def test_paired_tests_degenerate_cases():
    same = stats.paired_tests([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.t_p == 1.0 and same.wilcoxon_p == 1.0 and same.mean_difference == 0.0
    shifted = stats.paired_tests([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert shifted.t_p == 0.0 and math.isinf(shifted.cohens_dz)
    assert shifted.wilcoxon_p == pytest.approx(0.25)  # 3 positive ranks: 2 / 2**3
    one = stats.paired_tests([0.6, np.nan], [0.5, 0.4])  # the NaN pair is left out
    assert one.n == 1 and math.isnan(one.t_p) and one.mean_difference == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same length"):
        stats.paired_tests([1, 2], [1])


def test_pairwise_tests_use_common_pairs_and_holm_over_the_table():
    base = np.linspace(0.5, 0.7, 8)
    scores = pd.DataFrame({
        "good": base + 0.02 * np.arange(1, 9),
        "base": base,
        "noisy": base + np.array([0.01, -0.02, 0.03, -0.01, 0.02, -0.03, 0.015, np.nan]),
    })
    table = stats.pairwise_paired_tests(scores)
    assert table[["a", "b"]].values.tolist() == [["good", "base"], ["good", "noisy"], ["base", "noisy"]]
    assert table["n"].tolist() == [8, 7, 7]  # noisy has no score on the last pair
    assert table["wilcoxon_p_holm"].tolist() == pytest.approx(stats.holm(table["wilcoxon_p"]))
    assert table["t_p_holm"].tolist() == pytest.approx(stats.holm(table["t_p"]))
    first = table.iloc[0]
    assert first["wilcoxon_p"] == pytest.approx(2 / 2**8)
    assert first["wilcoxon_p_holm"] == pytest.approx(3 * 2 / 2**8)  # the smallest of three
    assert stats.pairwise_paired_tests(scores[["good"]]).empty


# --- correlation, ranks --------------------------------------------------------------------------
def test_correlation_of_known_value():
    # dx = -2..2, dy = -1,-2,1,0,2: sum dx*dy = 8, sum dx^2 = sum dy^2 = 10 -> r = 0.8
    result = stats.correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert result.n == 5
    assert result.pearson_r == pytest.approx(0.8)
    # t = r sqrt(n - 2) / sqrt(1 - r^2) = 2.3094 with 3 degrees of freedom
    assert result.pearson_p == pytest.approx(0.10409, abs=1e-4)
    assert result.spearman_rho == pytest.approx(0.8)
    # exact: 8 of the 120 orderings reach rho >= 0.8, and 8 reach rho <= -0.8
    assert result.spearman_p == pytest.approx(16 / 120)


def test_correlation_edge_cases():
    perfect = stats.correlation([1, 2, 3], [10, 20, 40])
    assert perfect.spearman_rho == pytest.approx(1.0)
    assert perfect.spearman_p == pytest.approx(2 / 6)  # not scipy's approximate 0
    assert math.isnan(stats.correlation([1, 2], [3, 4]).pearson_r)
    assert math.isnan(stats.correlation([1, 2, 3], [5, 5, 5]).pearson_r)
    with_nan = stats.correlation([1, 2, 3, np.nan], [1, 2, 4, 9])
    assert with_nan.n == 3


def test_competition_rank():
    ranks = stats.competition_rank([0.5, 0.7, 0.7, np.nan, 0.1])
    assert ranks[:3].tolist() == [3, 1, 1] and math.isnan(ranks[3]) and ranks[4] == 4
    assert stats.competition_rank([3.0, 1.0, 2.0], higher_is_better=False).tolist() == [3, 1, 2]


# --- box plots, least-squares lines --------------------------------------------------------------
def test_tukey_box_of_a_known_sample():
    box = stats.tukey_box([0.80, 0.82, 0.84, 0.86, np.nan])  # NaN left out
    assert box.n == 4 and box.median == pytest.approx(0.83) and box.mean == pytest.approx(0.83)
    assert (box.q1, box.q3) == pytest.approx((0.815, 0.845))  # linear interpolation
    assert (box.lowerfence, box.upperfence) == pytest.approx((0.80, 0.86))  # no outlier
    # 1..8 and 30: q1 = 3, q3 = 7, so the upper whisker ends at 8 (<= 7 + 1.5 * 4), not at 30
    outlier = stats.tukey_box([1, 2, 3, 4, 5, 6, 7, 8, 30])
    assert (outlier.q1, outlier.q3) == (3.0, 7.0)
    assert (outlier.lowerfence, outlier.upperfence) == (1.0, 8.0)
    assert outlier.mean == pytest.approx(66 / 9)
    empty = stats.tukey_box([np.nan])
    assert empty.n == 0 and math.isnan(empty.median) and math.isnan(empty.upperfence)


def test_least_squares_line():
    slope, intercept = stats.least_squares_line([0, 1, 2, 3, np.nan], [1, 3, 5, 7, 100])
    assert (slope, intercept) == pytest.approx((2.0, 1.0))  # the NaN point is left out
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [0.72, 0.71, 0.74, 0.73, 0.75]
    assert stats.least_squares_line(x, y) == pytest.approx(tuple(np.polyfit(x, y, 1)))
    assert all(math.isnan(v) for v in stats.least_squares_line([2, 2, 2], [1, 2, 3]))
