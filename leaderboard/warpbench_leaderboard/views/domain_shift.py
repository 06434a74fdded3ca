"""Domain shift: learning methods trained on one dataset and tested on others (other
collections, or the same subjects under acquisition changes), against classical methods, which
need no training."""

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
    labelled = tables.with_labels(summary)
    classical = sorted(labelled.loc[labelled["family"] == "classical", "config"].unique())

    st.header("Training x test dataset")
    reference = None
    if trained.empty:
        st.info(tables.waiting_message(
            "learning methods trained on a dataset and tested on several",
            f"None of the {len(summary)} configurations in the store was trained (every run's "
            "training dataset is empty).",
            "A learning method trains on each of a suite's `train_on` datasets and every network "
            "is evaluated on every dataset of the suite (`warpbench run --suite learning`, or "
            "`--suite hippocampus-shift` for the real hippocampus under acquisition changes); "
            "the heat map of mean Dice (training dataset x test dataset) for each learning "
            "method appears here once such runs are in the store."))
    else:
        options = sorted({f"{m}:{p}" for m, p in zip(trained["method"], trained["preset"])})
        left, right = st.columns(2)
        choice = left.selectbox("Method", options, key="shift_method", bind="query-params")
        if classical:
            reference = right.selectbox(
                "Classical reference", classical, key="shift_reference", bind="query-params",
                index=classical.index(study.CLASSICAL) if study.CLASSICAL in classical else 0)
        if choice:
            method, _, preset = choice.partition(":")
            other_labels = tables.other_label_cells(summary, method, preset)
            st.plotly_chart(figures.domain_heatmap_figure(
                tables.domain_matrix(summary, method, preset, reference), title=choice,
                other_labels=other_labels), key="shift_heatmap")
            if other_labels:
                st.caption("† scored on the test dataset's own labels, another label protocol "
                           "than the network was trained on (the study's OASIS -> Klein "
                           "matrix): Dice over structures the network never saw labelled.")

    _boxes(summary, pairs)

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
    scores = study.pair_scores(summary, pairs)
    changes = study.shift_changes(scores)
    if changes.empty:
        st.caption("No configuration is tested both in domain and shifted on the same dataset.")
    else:
        st.dataframe(changes, hide_index=True, key="shift_changes")
    if reference is not None:
        _against_classical(scores, reference)


def _boxes(summary, pairs) -> None:
    """The per-pair scores of the configurations the reader picks, per test dataset."""
    st.header("Per test dataset: the configurations you pick")
    datasets = tables.filter_options(summary, "dataset")
    left, right = st.columns(2)
    chosen = left.multiselect("Test datasets", datasets, default=datasets[:1],
                              key="shift_box_datasets", bind="query-params")
    training = right.multiselect(
        "Trained on", tables.training_options(summary), key="shift_box_trained",
        bind="query-params", placeholder="All (trained or not)")
    shown = tables.filter_training(tables.filter_leaderboard(summary, chosen), training)
    st.caption(
        "Boxes of the per-pair mean Dice (quartiles, whiskers within 1.5 IQR), coloured by "
        "family, best median at the top, one panel per test dataset; a network's name says in "
        "brackets what it was trained on. Pick the test datasets, and narrow the training "
        "datasets when a panel holds more configurations than you can compare.")
    if not chosen:
        st.caption("Pick at least one test dataset.")
        return
    st.plotly_chart(figures.box_figure(figures.box_stats(pairs, shown)), key="shift_boxes")


def _against_classical(scores, reference: str) -> None:
    """The networks under shift against the chosen classical reference, and the whole matrix."""
    st.header(f"Against {reference} under shift")
    st.caption(
        f"Each network tested on a dataset other than its training set, against {reference} on "
        "the same pairs: mean paired difference (DLIR minus classical), two-sided Wilcoxon p and "
        "its Holm adjustment within each table (`warpbench study` prints the same).")
    for supervision, title in (("none", "Unsupervised DLIR"), ("labels", "Label-supervised DLIR")):
        table = study.shifted_margins(scores, supervision, reference)
        st.subheader(f"{title} against {reference}, under shift")
        if table.empty:
            st.caption("No shifted runs of this kind on a dataset the reference was run on.")
        else:
            st.dataframe(table, hide_index=True, key=f"shifted_margins_{supervision}")
    st.subheader("Every network: trained on x tested on")
    st.caption(f"Mean Dice; {reference} first, for reference (`warpbench study` prints the same).")
    matrix = study.domain_matrix(scores, reference)
    if not matrix.empty:
        st.dataframe(matrix.reset_index(), hide_index=True, key="shift_matrix")
