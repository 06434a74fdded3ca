"""Instrumentation bias: numbers papers report against warpbench's re-measurement of the same
method on the same dataset, how far one method moves across its own presets, and each method as
published, as shipped and as tuned under one budget (``warpbench tune``) on the test split, with
the tunings' histories."""

from __future__ import annotations

import streamlit as st
from warpbench.store import Store

from warpbench_leaderboard import figures, loaders, tables, tuned

TITLE = "Instrumentation bias"
ICON = ":material/tune:"
URL_PATH = "instrumentation"


def _reported():
    """The reported results the installed plugins supply, and the loading problems."""
    registry = loaders.load_registry()
    return (tables.reported_table(registry.reported_results.values()),
            [str(p) for p in registry.problems])


@st.cache_data(ttl=loaders.STAMP_TTL_SECONDS, show_spinner=False)
def _tunings(db_path: str):
    """The store's tunings and their trials (small tables: read again at most once a second)."""
    store = Store(db_path)
    return store.tunings(), store.tuning_trials()


def render(db_path: str) -> None:
    # The reported values need no store: they are shown even when it is empty or unreadable.
    summary = loaders.page_start(
        db_path, "Instrumentation bias",
        "Reported numbers carry the choices of whoever ran each method: a classical baseline run "
        "with a poor metric or a short schedule understates it. This page sets published values "
        "beside warpbench's own, and shows how much a method's score moves with its settings.",
    )
    reported, problems = _reported()
    for problem in problems:
        st.warning(f"Plugin problem: {problem}")

    st.header("Reported versus re-measured")
    matches = tables.match_reported(reported, summary if summary is not None else reported.iloc[:0])
    if reported.empty:
        st.info(tables.waiting_message(
            "reported results",
            "No installed plugin registers any (the built-in `warpbench_literature` plugin "
            "does; check `warpbench plugins`).",
            "Install a plugin implementing `register_reported_results`."))
    elif matches.empty:
        mapped = reported[reported["warpbench_method"].notna()
                          & reported["warpbench_dataset"].notna()]
        measured = sorted(summary["method"].unique()) if summary is not None else []
        st.info(tables.waiting_message(
            "a reported result that warpbench has re-measured",
            f"The plugins report {len(reported)} values on "
            f"{', '.join(sorted(reported['dataset'].unique()))} for "
            f"{', '.join(sorted(reported['method'].unique()))}; "
            f"{len(mapped)} of them name a warpbench method and dataset, and none of those has a "
            "complete run in the store. warpbench has measured "
            f"{', '.join(measured) if measured else 'nothing yet'}.",
            "A comparison appears here once warpbench has a dataset block and method for the same "
            "data and method as a reported value (for the TransMorph IXI table: an IXI dataset "
            "plugin and the ANTs SyN, NiftyReg, VoxelMorph and TransMorph methods)."))
    else:
        st.plotly_chart(figures.reported_vs_measured_figure(matches), key="reported_chart")
        st.dataframe(matches, hide_index=True)

    with st.expander(f"Every reported value with its source ({len(reported)})",
                     expanded=matches.empty):
        st.dataframe(
            reported[["method", "dataset", "metric", "value", "family", "supervision", "source",
                      "table", "configuration", "url", "paper", "notes"]],
            hide_index=True,
            column_config={"url": st.column_config.LinkColumn("url"),
                           "value": st.column_config.NumberColumn("value", format="%.3f")},
        )

    if summary is not None:
        _tuned_comparison(db_path, summary)
        _spread(summary)
    _tuning_history(db_path)


def _tuned_comparison(db_path: str, summary) -> None:
    st.header("As published, as shipped, as tuned")
    st.caption("Each method on the test split under its `literature` preset, its `default`, and "
               "the `tuned@DATASET` preset that `warpbench tune` found with the same budget for "
               "every method on validation pairs only; paired tests on the pairs all of them "
               "scored, Holm-adjusted within each method and dataset.")
    pairs = loaders.read_or_explain(db_path, loaders.load_pair_scores)
    runs = loaders.read_or_explain(db_path, loaders.load_runs)
    if pairs is None or runs is None:
        return
    comparison = tuned.preset_comparison(summary, pairs, runs)
    if comparison.scores.empty:
        st.info(tables.waiting_message(
            "a test-split run of a tuned preset",
            "No method in the store has a complete run of a `tuned@DATASET` preset.",
            "Tune and evaluate one, e.g. `warpbench tune greedy --dataset hippocampus --trials "
            "30`, then `warpbench run --method greedy:tuned@hippocampus --method greedy --method "
            "greedy:literature --dataset hippocampus`."))
        return
    st.plotly_chart(tuned.comparison_figure(comparison.scores), key="tuned_chart")
    st.dataframe(comparison.scores.drop(columns="run_id"), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("dice", "hd95", "folding_percent", "sdlogj")})
    st.dataframe(comparison.tests, hide_index=True,
                 column_config={c: st.column_config.NumberColumn(c, format="%.4g")
                                for c in ("mean_a", "mean_b", "mean_difference", "t_p",
                                          "wilcoxon_p", "t_p_holm", "wilcoxon_p_holm")})


def _tuning_history(db_path: str) -> None:
    st.header("Tuning history")
    try:
        tunings, trials = _tunings(db_path)
    except Exception as exc:  # a locked, foreign or corrupt file: say so, no traceback
        st.error(tables.read_error_message(db_path, exc))
        return
    if trials.empty:
        st.info(tables.waiting_message(
            "a tuning", "No method has been tuned into this store.",
            "Run e.g. `warpbench tune greedy --dataset hippocampus --trials 30` (or "
            "`warpbench tune --suite NAME` for the same budget for every method)."))
        return
    st.plotly_chart(tuned.tuning_history_figure(tuned.tuning_history(trials)),
                    key="tuning_history_chart")
    st.dataframe(tuned.tuning_budgets(tunings), hide_index=True)


def _spread(summary) -> None:
    st.header("Spread across presets")
    spread = tables.preset_spread(summary)
    several = spread[spread["presets"] > 1]
    if several.empty:
        st.info(tables.waiting_message(
            "a method measured with more than one preset",
            "Every method in the store was run with a single preset on each dataset, so there is "
            "no spread to show yet.",
            "Run every preset of a method, e.g. `warpbench run --method 'greedy:*' "
            "--dataset synth-grouped`."))
    st.plotly_chart(figures.preset_spread_figure(summary), key="spread_chart")
    st.dataframe(spread.fillna({"train_dataset": tables.MISSING_TEXT}), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("lowest", "highest", "spread")})
