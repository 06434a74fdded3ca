"""MI(i;s) against Dice: how much the image says about the labels bounds the Dice a method
reaches."""

from __future__ import annotations

import streamlit as st

from warpbench_leaderboard import figures, loaders, tables

TITLE = "MI vs Dice"
ICON = ":material/scatter_plot:"
URL_PATH = "mi-vs-dice"
MIN_DATASETS = 3


def render(db_path: str) -> None:
    summary = loaders.page_start(
        db_path, "MI(i;s) versus Dice",
        "The study's fourth finding: across datasets, the Dice classical methods reach tracks the "
        "mutual information between image intensity and label map. One point per dataset and "
        "method family (its best configuration on the dataset).",
        loaders.load_leaderboard,  # no CIs needed
    )
    if summary is None:
        return
    datasets = loaders.read_or_explain(db_path, loaders.load_datasets)
    if datasets is None:
        return
    measure = st.radio("MI measure", list(tables.MI_MEASURES), key="mi",
                       format_func=tables.MI_MEASURES.get, horizontal=True, bind="query-params")
    points = tables.mi_points(summary, datasets, measure or "mi_bits")
    correlations = tables.mi_correlations(points)
    with_mi = points["dataset"].nunique()
    if with_mi < MIN_DATASETS:
        st.info(tables.waiting_message(
            f"runs on at least {MIN_DATASETS} datasets with MI(i;s)",
            f"The store has scored runs with MI on {with_mi} dataset(s); a correlation needs "
            f"{MIN_DATASETS} or more.",
            "Run a method on more datasets, e.g. `warpbench run --suite default` (four synthetic "
            "datasets that differ in how much their intensities say about their labels)."))
    st.plotly_chart(figures.mi_dice_figure(points, correlations,
                                           tables.MI_MEASURES[measure or "mi_bits"]),
                    key="mi_chart")
    for row in correlations.to_dict("records"):
        st.markdown(f"- {figures.correlation_text(row)}")
    if not datasets.empty and "mi_estimator" in datasets.columns:
        estimator = datasets["mi_estimator"].dropna()
        if not estimator.empty:
            st.caption(f"Estimator: {estimator.iloc[0]}.")
    st.dataframe(points, hide_index=True,
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("mi", "dice")})
