"""Domain shift: learning methods trained on one dataset and tested on others, against classical
methods, which need no training."""

from __future__ import annotations

import streamlit as st
from warpbench import study

from warpbench_leaderboard import figures, loaders, tables

TITLE = "Domain shift"
ICON = ":material/swap_horiz:"
URL_PATH = "domain-shift"


def render(db_path: str) -> None:
    summary = loaders.page_start(
        db_path, "Domain shift",
        "The study's third finding: trained on one dataset (OASIS) and tested on others, the "
        "advantage of label-supervised methods vanishes while classical methods stay robust.",
        loaders.load_leaderboard,  # no CIs needed
    )
    if summary is None:
        return
    pairs = loaders.read_or_explain(db_path, loaders.load_pair_scores)
    if pairs is None:
        return
    trained = tables.learning_configs(summary)

    st.header("Training x test dataset")
    if trained.empty:
        st.info(tables.waiting_message(
            "learning methods trained on a dataset and tested on several",
            f"None of the {len(summary)} configurations in the store was trained (every run's "
            "training dataset is empty).",
            "A learning method trains on each of a suite's `train_on` datasets and every network "
            "is evaluated on each compatible dataset (`warpbench run --suite learning`); the heat "
            "map of mean Dice (training dataset x test dataset) for each learning method appears "
            "here once such runs are in the store."))
    else:
        options = sorted({f"{m}:{p}" for m, p in zip(trained["method"], trained["preset"])})
        choice = st.selectbox("Method", options, key="shift_method", bind="query-params")
        if choice:
            method, _, preset = choice.partition(":")
            st.plotly_chart(figures.domain_heatmap_figure(
                tables.domain_matrix(summary, method, preset), title=choice), key="shift_heatmap")

    st.header("Per test dataset: every method")
    st.caption("Boxes of the per-pair mean Dice (quartiles, whiskers within 1.5 IQR), coloured by "
               "family, one panel per test dataset.")
    st.plotly_chart(figures.box_figure(figures.box_stats(pairs, summary)), key="shift_boxes")

    st.header("Drop from in-domain to shifted")
    drops = tables.domain_drops(summary)
    if drops.empty:
        st.info(tables.waiting_message(
            "a learning method tested both on its training dataset and on others",
            "No configuration in the store has a training dataset.",
            "The drop (in-domain minus mean shifted Dice) per method appears here, with classical "
            "methods on the same datasets for reference."))
    else:
        st.plotly_chart(figures.domain_drop_figure(drops), key="shift_drops")
        st.dataframe(drops, hide_index=True)

    st.header("Is the change significant?")
    st.caption(
        "Per test dataset and learning configuration trained both on it and elsewhere: per pair, "
        "the mean score of the networks trained elsewhere minus the in-domain network's, with a "
        "two-sided Wilcoxon p and its Holm adjustment. A classical method scores a pair the same "
        "whatever a network was trained on, so this change is also the change of the network's "
        "margin over it (`warpbench study` prints the same).")
    changes = study.shift_changes(study.pair_scores(summary, pairs))
    if changes.empty:
        st.caption("No configuration is tested both in domain and shifted on the same dataset.")
    else:
        st.dataframe(changes, hide_index=True, key="shift_changes")
