"""Statistics of the study: confidence intervals, robustness, paired tests, correlation.

Pure functions over numpy arrays (a few take and return DataFrames, for the leaderboard's
tables); nothing reads the store. NaN entries (a failed pair, a missing score) are left out of
every statistic. scipy supplies the test distributions and is imported only where a test is run,
so the leaderboard's first page does not pay for importing ``scipy.stats``.

Definitions, so a reader can check any number the app shows:

- ``bootstrap_ci``: percentile bootstrap of the mean, ``resamples`` resamples with replacement,
  drawn from ``numpy.random.default_rng(seed)``: the same data always give the same interval
  (``bootstrap_cis`` does many samples at once, with the same result).
- ``worst_quantile``: Learn2Reg's robustness aggregate ("30" in its ``evaluation.py``, the DSC30
  of its papers): the 30th percentile of the per-pair scores, linear interpolation (pandas'
  ``quantile(.3)``). ``worst_fraction_mean`` is the other common reading, the mean of the lowest
  30 % of the scores; both are here so the choice is explicit.
- ``paired_tests``: on the pairs both methods scored: paired t-test (``scipy.stats.ttest_rel``)
  and Wilcoxon signed-rank (``scipy.stats.wilcoxon``, zero differences dropped as Wilcoxon did,
  exact distribution for small samples, normal approximation otherwise, both two-sided), with the
  mean paired difference, Cohen's d_z (mean difference / its standard deviation) and the
  matched-pairs rank-biserial correlation (Kerby 2014: positive minus negative rank sums over the
  total rank sum).
- ``holm``: Holm's step-down adjustment of a family of p-values (controls the family-wise error).
- ``correlation``: Pearson's r (p from the t distribution, scipy) and Spearman's rho (p exact by
  enumerating every ordering up to 8 points, where the t approximation fails, scipy's beyond),
  both two-sided; ``least_squares_line``: the line a scatter of them is drawn with.
- ``tukey_box``: the numbers of a Tukey box plot: quartiles (numpy's linear interpolation),
  whiskers at the most extreme values within 1.5 IQR of the box, and the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 0
WORST_FRACTION = 0.3
#: Up to this many points Spearman's p-value is exact (all n! orderings), beyond it scipy's.
EXACT_SPEARMAN_MAX_N = 8
_TIE = 1e-12  # differences this small are rounding, not a difference


def _finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float64, keeping the entries where both are finite."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


# --- one sample ----------------------------------------------------------------------------------
def bootstrap_ci(
    values, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean: ``(low, high)``.

    NaN when there are no values; a single value gives a zero-width interval.
    """
    return bootstrap_cis([values], confidence, resamples, seed)[0]


def _resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """How often each of ``n`` values is drawn in each resample, (resamples, n): the draws of
    ``default_rng(seed).integers(0, n, (resamples, n))``, counted per row."""
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    draws += np.arange(resamples)[:, None] * n
    counts = np.bincount(draws.ravel(), minlength=resamples * n)
    return counts.reshape(resamples, n).astype(np.float64)


def bootstrap_cis(
    samples, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> list[tuple[float, float]]:
    """:func:`bootstrap_ci` of each sample, computed together: samples of the same size share
    one seeded set of resamples, so their resampled means are one matrix product (resample
    counts x values) instead of a gather per sample. Same intervals as one call per sample."""
    tail = (1.0 - confidence) / 2.0
    cleaned = [_finite(values) for values in samples]
    out: list[tuple[float, float]] = [(math.nan, math.nan)] * len(cleaned)
    by_size: dict[int, list[int]] = {}
    for k, x in enumerate(cleaned):
        if x.size == 1:
            out[k] = (float(x[0]), float(x[0]))
        elif x.size > 1:
            by_size.setdefault(x.size, []).append(k)
    for n, members in by_size.items():
        counts = _resample_counts(n, resamples, seed)
        means = counts @ np.stack([cleaned[k] for k in members], axis=1) / n  # (resamples, members)
        bounds = np.quantile(means, [tail, 1.0 - tail], axis=0)
        for column, k in enumerate(members):
            out[k] = (float(bounds[0, column]), float(bounds[1, column]))
    return out


def worst_quantile(values, fraction: float = WORST_FRACTION) -> float:
    """The ``fraction`` quantile of the scores (Learn2Reg's DSC30 for Dice); NaN when empty."""
    x = _finite(values)
    return float(np.quantile(x, fraction)) if x.size else math.nan


def worst_fraction_mean(values, fraction: float = WORST_FRACTION) -> float:
    """Mean of the lowest ``ceil(fraction * n)`` scores (at least one); NaN when empty."""
    x = np.sort(_finite(values))
    if x.size == 0:
        return math.nan
    return float(x[: max(1, math.ceil(fraction * x.size))].mean())


@dataclass(frozen=True)
class BoxStats:
    """What a box plot of one sample draws (:func:`tukey_box`)."""

    n: int
    q1: float
    median: float
    q3: float
    lowerfence: float
    upperfence: float
    mean: float


def tukey_box(values) -> BoxStats:
    """Quartiles, Tukey's whiskers (the most extreme values within 1.5 IQR of the box) and mean
    of the finite ``values``: a figure carries these seven numbers per box instead of every
    score. NaN numbers (and ``n`` 0) when there are none."""
    x = _finite(values)
    if x.size == 0:
        return BoxStats(0, *[math.nan] * 6)
    q1, median, q3 = (float(q) for q in np.quantile(x, [0.25, 0.5, 0.75]))
    reach = 1.5 * (q3 - q1)
    inside = x[(x >= q1 - reach) & (x <= q3 + reach)]
    return BoxStats(int(x.size), q1, median, q3, float(inside.min()), float(inside.max()),
                    float(x.mean()))


# --- multiple comparisons ------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order. NaN entries stay NaN and do not count towards
    the family size.

    The k-th smallest of m p-values is multiplied by (m - k + 1); the running maximum keeps the
    adjusted values in the order of the raw ones, and they are capped at 1.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = present.size
    if m == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


# --- two paired samples --------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedTest:
    """The comparison of two methods on the pairs both scored; differences are ``a - b``."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    cohens_dz: float
    t_statistic: float
    t_p: float
    wilcoxon_statistic: float
    wilcoxon_p: float
    rank_biserial: float


def rank_biserial(differences) -> float:
    """Matched-pairs rank-biserial correlation of paired differences: the sum of the ranks (of
    ``|d|``, ties averaged, zeros dropped) of the positive differences minus that of the negative
    ones, over their total. +1: every pair favours ``a``; -1: every pair favours ``b``."""
    from scipy.stats import rankdata

    d = _finite(differences)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def paired_tests(a, b) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of ``a`` against ``b`` (same length, one entry
    per pair; a pair with NaN on either side is left out), with effect sizes.

    Degenerate cases get a defined answer instead of a warning: fewer than two pairs give NaN
    tests; identical scores on every pair give p = 1 and zero effects; a difference that is the
    same non-zero value on every pair gives t-test p = 0 and infinite d_z (no spread at all).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    n = int(d.size)
    nan = math.nan
    mean_a = float(a.mean()) if n else nan
    mean_b = float(b.mean()) if n else nan
    mean_d = float(d.mean()) if n else nan
    if n < 2:
        return PairedTest(n, mean_a, mean_b, mean_d, nan, nan, nan, nan, nan,
                          rank_biserial(d) if n else nan)
    sd = float(d.std(ddof=1))
    if np.all(np.abs(d) <= _TIE):
        return PairedTest(n, mean_a, mean_b, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)

    from scipy import stats

    if np.ptp(d) <= _TIE * max(1.0, abs(mean_d)):  # the same non-zero difference on every pair
        dz = math.copysign(math.inf, mean_d)
        t_stat, t_p = dz, 0.0
    else:
        dz = mean_d / sd
        result = stats.ttest_rel(a, b)
        t_stat, t_p = float(result.statistic), float(result.pvalue)
    wilcoxon = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return PairedTest(
        n, mean_a, mean_b, mean_d, float(dz), t_stat, t_p,
        float(wilcoxon.statistic), float(wilcoxon.pvalue), rank_biserial(d),
    )


def pairwise_paired_tests(scores: pd.DataFrame) -> pd.DataFrame:
    """Every unordered pair of columns of ``scores`` (rows: registration pairs, columns: methods,
    NaN where a method has no score), tested on the rows both scored.

    One row per comparison ``a`` vs ``b`` (a before b in column order) with the fields of
    :class:`PairedTest`, plus ``t_p_holm`` and ``wilcoxon_p_holm``: Holm's adjustment over all
    the comparisons of the table, separately for each test.
    """
    columns = list(scores.columns)
    rows = []
    values = scores.to_numpy(dtype=np.float64)
    for i in range(len(columns)):
        for j in range(i + 1, len(columns)):
            test = paired_tests(values[:, i], values[:, j])
            rows.append({"a": columns[i], "b": columns[j], **asdict(test)})
    table = pd.DataFrame(rows, columns=["a", "b", *PairedTest.__dataclass_fields__])
    table["t_p_holm"] = holm(table["t_p"].to_numpy()) if len(table) else []
    table["wilcoxon_p_holm"] = holm(table["wilcoxon_p"].to_numpy()) if len(table) else []
    return table


# --- association ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Correlation:
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float


def correlation(x, y) -> Correlation:
    """Pearson and Spearman correlation of ``x`` and ``y`` with two-sided p-values, on the entries
    where both are finite. NaN when fewer than 3 points remain or either side is constant."""
    x, y = _finite_pairs(x, y)
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(n, math.nan, math.nan, math.nan, math.nan)
    from scipy import stats

    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    spearman_p = float(spearman.pvalue)
    if n <= EXACT_SPEARMAN_MAX_N:
        spearman_p = _spearman_exact_p(stats.rankdata(x), stats.rankdata(y),
                                       float(spearman.statistic))
    return Correlation(n, float(pearson.statistic), float(pearson.pvalue),
                       float(spearman.statistic), spearman_p)


def least_squares_line(x, y) -> tuple[float, float]:
    """Slope and intercept of the least-squares line of ``y`` on ``x``, on the entries where both
    are finite; NaN when fewer than two distinct ``x`` remain (no line is defined)."""
    x, y = _finite_pairs(x, y)
    if np.unique(x).size < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _spearman_exact_p(rank_x: np.ndarray, rank_y: np.ndarray, rho: float) -> float:
    """Two-sided permutation p-value of Spearman's rho: the share of all n! orderings of ``y``
    whose |rho| is at least the observed one (scipy's t approximation says p = 0 for a perfect
    rank correlation of 3 points, where the exact answer is 1/3)."""
    from itertools import permutations

    orders = np.array(list(permutations(range(rank_y.size))))
    dx = rank_x - rank_x.mean()
    dy = rank_y[orders] - rank_y.mean()
    rhos = dy @ dx / np.sqrt((dx**2).sum() * (dy**2).sum(axis=1))
    return float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


# --- ranking -------------------------------------------------------------------------------------
def competition_rank(values, higher_is_better: bool = True) -> np.ndarray:
    """Rank 1 for the best value, ties sharing the best rank of their group ("1, 2, 2, 4");
    NaN values get NaN."""
    v = np.asarray(values, dtype=np.float64)
    ranks = np.full(v.shape, np.nan)
    present = np.flatnonzero(~np.isnan(v))
    if present.size:
        key = -v[present] if higher_is_better else v[present]
        ranks[present] = 1 + np.searchsorted(np.sort(key), key, side="left")
    return ranks
