"""Cached reads of the results store, shared by the pages.

Each read opens the DuckDB file read-only and closes it again (see ``warpbench.store``), so the
app never blocks a run that is writing. Results are cached for a few seconds per store path:
enough to make reruns cheap, short enough that the pages follow a run as it writes. Errors are
not cached; the page shows them and the next rerun tries again.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from warpbench.store import Store

TTL_SECONDS = 3


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def load_leaderboard(db_path: str) -> pd.DataFrame:
    """``Store.leaderboard()``: one row per configuration's latest complete run."""
    return Store(db_path).leaderboard()


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def load_runs(db_path: str) -> pd.DataFrame:
    """``Store.runs()``: every run with its provenance and pair counts, newest first."""
    return Store(db_path).runs()


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def load_datasets(db_path: str) -> pd.DataFrame:
    """``Store.datasets()``: the newest description (and MI) of every dataset."""
    return Store(db_path).datasets()


def clear() -> None:
    """Forget every cached read (the sidebar's refresh button)."""
    for loader in (load_leaderboard, load_runs, load_datasets):
        loader.clear()
