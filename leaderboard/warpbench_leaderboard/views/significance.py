"""Significance: pairwise paired tests between methods on the same registration pairs of one
dataset, Holm-corrected, with effect sizes."""

from __future__ import annotations

import streamlit as st
from warpbench import stats

from warpbench_leaderboard import figures, loaders, tables

TITLE = "Significance"
ICON = ":material/functions:"
URL_PATH = "significance"


@st.cache_data(max_entries=16, show_spinner=False)
def _tests(db_path: str, stamp: tuple, dataset: str, configs: tuple[str, ...], metric: str):
    """The pairwise tests of one choice, cached per store content (``stamp``)."""
    matrix = tables.score_matrix(loaders.load_pair_scores(db_path),
                                 loaders.load_leaderboard(db_path), dataset, configs, metric)
    return stats.pairwise_paired_tests(matrix), len(matrix)


def render(db_path: str) -> None:
    summary = loaders.page_start(
        db_path, "Significance",
        "Each pair of configurations compared on the registration pairs both scored: paired "
        "t-test and Wilcoxon signed-rank test, p-values Holm-corrected over all comparisons shown, "
        "with the mean paired difference, Cohen's d_z and the rank-biserial correlation.",
        loaders.load_leaderboard,  # no CIs needed
    )
    if summary is None:
        return
    scored = summary[summary["dice"].notna()]
    datasets = sorted(scored["dataset"].unique())
    if not datasets:
        st.info("No configuration has a scored pair yet.")
        return
    left, middle, right = st.columns(3)
    dataset = left.selectbox("Dataset", datasets, key="sig_dataset", bind="query-params")
    metric = middle.selectbox("Score", list(tables.SIGNIFICANCE_METRICS), key="sig_score",
                              format_func=tables.SIGNIFICANCE_METRICS.get, bind="query-params")
    test = right.radio("Test shown in the matrix", list(figures.TESTS), key="sig_test",
                       format_func=figures.TESTS.get, horizontal=True, bind="query-params")
    options = tables.with_labels(scored[scored["dataset"] == dataset])["config"].tolist()
    default = tables.default_comparison(summary, dataset)
    configs = st.multiselect(
        "Configurations (default: each method's best preset)", options, default=default,
        key="sig_configs", bind="query-params")
    if len(configs) < 2:
        st.info("Choose at least two configurations to compare.")
        return
    tests, n_pairs = _tests(db_path, loaders.load_stamp(db_path), dataset, tuple(configs), metric)
    if n_pairs < 2 or tests["n"].max() < 2:
        st.info(tables.waiting_message(
            "at least two registration pairs scored by both sides",
            f"The chosen configurations share {int(tests['n'].max()) if len(tests) else 0} "
            f"scored pair(s) on `{dataset}`.", "Run them on more pairs of the dataset."))
        return
    metric_title = tables.SIGNIFICANCE_METRICS[metric]
    better = "higher" if metric == "mean_dice" else "lower"
    st.plotly_chart(figures.significance_figure(tests, configs, test, metric_title,
                                                higher_is_better=metric == "mean_dice"),
                    key="sig_matrix")
    st.caption(f"Cell: mean of (row − column) over the common pairs ({better} {metric_title} is "
               "better); * p < 0.05, ** p < 0.01, *** p < 0.001 after Holm, ns otherwise. "
               f"{n_pairs} pairs on `{dataset}`.")
    table = tables.significance_table(tests)
    st.dataframe(table, hide_index=True, column_config={
        header: st.column_config.NumberColumn(header, format="%.4f")
        for header in table.columns if header not in ("A", "B", "Pairs")})
