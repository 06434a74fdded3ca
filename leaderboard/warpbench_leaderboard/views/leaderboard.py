"""The leaderboard: each configuration's latest complete run, ranked per dataset and overall,
with bootstrap CIs and the worst-30 % score, filters in the sidebar and a CSV download.

The filters are bound to the URL (``?dataset=...&family=...``) so a filtered view can be shared.
"""

from __future__ import annotations

import streamlit as st

from warpbench_leaderboard import figures, loaders, tables

TITLE = "Leaderboard"
ICON = ":material/leaderboard:"
URL_PATH = "leaderboard"
CHART_MAX_ROWS = 60  # beyond this the CI chart is unreadable; the table still shows everything

FILTERS = (  # (key = URL parameter, label, store column)
    ("dataset", "Dataset", "dataset"),
    ("family", "Family", "family"),
    ("supervision", "Supervision", "supervision"),
    ("preset", "Preset", "preset"),
    ("train", "Training dataset", "train_dataset"),
)


def _number_columns(formats: dict[str, str]) -> dict:
    return {
        header: st.column_config.NumberColumn(header, format=fmt,
                                              help=tables.COLUMN_HELP.get(header))
        for header, fmt in formats.items()
    }


def render(db_path: str) -> None:
    summary = loaders.page_start(db_path, "Leaderboard")
    if summary is None:
        return

    with st.sidebar:
        st.header("Filters")
        chosen = {}
        for key, label, column in FILTERS:
            options = tables.filter_options(summary, column)
            chosen[column] = st.multiselect(
                label, options, key=key, bind="query-params",
                placeholder=f"All ({label.lower()})" if options else "none in the store yet",
            )

    shown = tables.filter_leaderboard(
        summary, chosen["dataset"], chosen["family"], chosen["supervision"], chosen["preset"],
        chosen["train_dataset"],
    )
    st.caption(
        f"{len(shown)} of {len(summary)} configurations: the latest complete run of each, "
        f"from `{db_path}`. Scores average the test pairs that succeeded; ranks are by mean Dice "
        "among the configurations on the dataset whose every pair scored."
    )
    failing = int(tables.incomplete(shown).sum())
    if failing:
        st.warning(tables.incomplete_message(failing), icon=":material/warning:")
    if shown.empty:
        st.info("No configuration matches the filters.")
        return
    table = tables.display_table(shown)
    st.dataframe(table, hide_index=True, column_config=_number_columns(tables.NUMBER_FORMATS))
    st.download_button(
        "Download CSV",
        data=table.assign(**{"Run id": shown["run_id"].to_numpy()}).to_csv(index=False),
        file_name="warpbench-leaderboard.csv", mime="text/csv", icon=":material/download:",
    )

    st.subheader("Overall: mean rank across datasets")
    overall = tables.overall_ranking(shown)
    st.caption(
        "Each configuration's rank on every dataset it was evaluated on, averaged. Means over "
        "different sets of datasets compare poorly: **Datasets** says how many each is over."
    )
    st.dataframe(overall.rename(columns=tables.OVERALL_COLUMNS), hide_index=True,
                 column_config=_number_columns(tables.OVERALL_FORMATS))

    st.subheader("Mean Dice with 95% bootstrap CI")
    if len(shown) <= CHART_MAX_ROWS:
        st.plotly_chart(figures.ci_figure(shown), key="ci_chart")
    else:
        st.caption(f"{len(shown)} configurations: narrow the filters to {CHART_MAX_ROWS} or fewer "
                   "to draw the chart.")
