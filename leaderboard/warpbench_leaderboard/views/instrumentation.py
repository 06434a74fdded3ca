"""Instrumentation bias: numbers papers report against warpbench's re-measurement of the same
method on the same dataset, and how far one method moves across its own presets."""

from __future__ import annotations

import streamlit as st

from warpbench_leaderboard import figures, loaders, tables

TITLE = "Instrumentation bias"
ICON = ":material/tune:"
URL_PATH = "instrumentation"


def _reported():
    """The reported results the installed plugins supply, and the loading problems."""
    registry = loaders.load_registry()
    return (tables.reported_table(registry.reported_results.values()),
            [str(p) for p in registry.problems])


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

    st.header("Spread across presets")
    if summary is None:
        return
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
