"""Supervision: classical optimisation against unsupervised and label-supervised deep learning
(DLIR), per dataset."""

from __future__ import annotations

import streamlit as st
from warpbench import study

from warpbench_leaderboard import figures, loaders, tables

TITLE = "Supervision"
ICON = ":material/school:"
URL_PATH = "supervision"


def render(db_path: str) -> None:
    summary = loaders.page_start(
        db_path, "Classical versus unsupervised versus label-supervised",
        "The study's second finding: unsupervised deep learning does not beat classical "
        "optimisation, label-supervised deep learning does, on the data it was trained for. "
        "Each bar is the best configuration of its group on the dataset, with its 95% "
        "bootstrap CI, among the classical methods, the baselines and the networks trained on "
        "that dataset: in domain only, as the finding is stated. Networks tested on another "
        "dataset than their training set are on the domain-shift page.",
    )
    if summary is None:
        return
    grouped = tables.with_groups(tables.with_labels(tables.not_shifted(summary)))
    present = set(grouped.loc[grouped["dice"].notna(), "group"])
    missing = [g for g in tables.SUPERVISION_GROUPS[:3] if g not in present]
    if missing:
        st.info(tables.waiting_message(
            "runs of " + " and ".join(missing),
            "None of the configurations in the store that are tested in domain (or need no "
            "training) belongs to " + ", ".join(f"*{g}*" for g in missing)
            + " (learning methods have family `learning`; supervision `none` or `labels`).",
            "They appear here once learning methods have run on the dataset they were trained "
            "on (`warpbench run --suite learning`); the groups that exist are shown below."))
    best = tables.best_per_group(grouped, "group")
    st.plotly_chart(figures.supervision_figure(best), key="supervision_chart")
    st.dataframe(
        best[["dataset", "group", "config", "dice", "dice_ci_low", "dice_ci_high", "dice_worst30",
              "pairs"]],
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                       for c in ("dice", "dice_ci_low", "dice_ci_high", "dice_worst30")},
    )

    st.header("Paired tests against one classical configuration")
    st.caption(
        "Each learning configuration trained on the dataset it is tested on, against the classical "
        "configuration chosen here on the same pairs: mean paired difference (DLIR minus "
        "classical), two-sided Wilcoxon p and its Holm adjustment within each table "
        "(`warpbench study` prints the same). The reference is chosen, not the best on the test "
        "set, so that choosing it does not bias the test.")
    pairs = loaders.read_or_explain(db_path, loaders.load_pair_scores)
    if pairs is None:
        return
    classical = sorted(grouped.loc[grouped["family"] == "classical", "config"].unique())
    if not classical:
        st.info("No classical configuration in the store to compare against.")
        return
    reference = st.selectbox(
        "Classical reference", classical, key="supervision_reference",
        index=classical.index(study.CLASSICAL) if study.CLASSICAL in classical else 0)
    scores = study.pair_scores(summary, pairs)  # the summary is the leaderboard, plus CIs
    for supervision, title in (("none", "Unsupervised DLIR"), ("labels", "Label-supervised DLIR")):
        table = study.in_domain_margins(scores, supervision, reference)
        st.subheader(f"{title} against {reference}, in domain")
        if table.empty:
            st.caption("No in-domain runs of this kind on a dataset the reference was run on.")
        else:
            st.dataframe(table, hide_index=True, key=f"margins_{supervision}")
