"""Supervision: classical optimisation against unsupervised and label-supervised deep learning
(DLIR), per dataset."""

from __future__ import annotations

import streamlit as st

import figures
import loaders
import tables

TITLE = "Supervision"
ICON = ":material/school:"
URL_PATH = "supervision"


def render(db_path: str) -> None:
    st.title("Classical versus unsupervised versus label-supervised")
    st.caption(
        "The study's second finding: unsupervised deep learning does not beat classical "
        "optimisation, label-supervised deep learning does, on the data it was trained for. "
        "Each bar is the best configuration of its group on the dataset, with its 95% bootstrap CI."
    )
    loaders.refresh_button()
    summary = loaders.summary_or_guidance(db_path)
    if summary is None:
        return
    grouped = tables.with_groups(tables.with_labels(summary))
    present = set(grouped.loc[grouped["dice"].notna(), "group"])
    missing = [g for g in tables.SUPERVISION_GROUPS[:3] if g not in present]
    if missing:
        st.info(tables.waiting_message(
            "runs of " + " and ".join(missing),
            "None of the configurations in the store belongs to "
            + ", ".join(f"*{g}*" for g in missing)
            + " (learning methods have family `learning`; supervision `none` or `labels`).",
            "They appear here once learning methods are implemented and run; the groups that "
            "exist are shown below."))
    best = tables.best_per_group(grouped, "group")
    st.plotly_chart(figures.supervision_figure(best), key="supervision_chart")
    st.dataframe(
        best[["dataset", "group", "config", "dice", "dice_ci_low", "dice_ci_high", "dice_worst30",
              "pairs"]],
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                       for c in ("dice", "dice_ci_low", "dice_ci_high", "dice_worst30")},
    )
