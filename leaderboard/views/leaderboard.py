"""The leaderboard: each configuration's latest complete run, with filters in the sidebar.

The filters are bound to the URL (``?dataset=...&family=...``) so a filtered view can be shared.
"""

from __future__ import annotations

import streamlit as st

import loaders
import tables

TITLE = "Leaderboard"
ICON = ":material/leaderboard:"
URL_PATH = "leaderboard"


def render(db_path: str) -> None:
    st.title("Leaderboard")
    try:
        board = loaders.load_leaderboard(db_path)
    except Exception as exc:  # a locked, foreign or corrupt file: say so, no traceback
        st.error(tables.read_error_message(db_path, exc))
        return

    if board.empty:
        try:
            runs = loaders.load_runs(db_path)
        except Exception:
            runs = None
        st.info(tables.empty_store_message(db_path, runs))
        return

    with st.sidebar:
        st.header("Filters")
        datasets = st.multiselect(
            "Dataset", tables.filter_options(board, "dataset"), key="dataset",
            bind="query-params", placeholder="All datasets",
        )
        families = st.multiselect(
            "Family", tables.filter_options(board, "family"), key="family",
            bind="query-params", placeholder="All families",
        )
        if st.button("Refresh", icon=":material/refresh:", help="Read the store again now"):
            loaders.clear()
            st.rerun()

    shown = tables.filter_leaderboard(board, datasets, families)
    st.caption(
        f"{len(shown)} of {len(board)} configurations: the latest complete run of each, "
        f"from `{db_path}`. Scores average the test pairs that succeeded."
    )
    if shown.empty:
        st.info("No configuration matches the filters.")
        return
    st.dataframe(
        tables.display_table(shown),
        hide_index=True,
        column_config={
            header: st.column_config.NumberColumn(
                header, format=tables.NUMBER_FORMATS.get(header), help=tables.COLUMN_HELP.get(header)
            )
            for header in tables.NUMBER_FORMATS
        },
    )
