"""Cached reads of the results store, shared by the pages.

Each read opens the DuckDB file read-only and closes it again (see ``warpbench.store``), so the
app never blocks a run that is writing. Every cached read is keyed by the store's content stamp
(``Store.content_stamp()``: row counts and newest times, itself re-read at most once a second):
while the store does not change, a new visitor gets the analyses already computed; once a run
writes a pair, the next rerun reads and computes afresh. Errors are not cached; the page shows
them and the next rerun tries again.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import streamlit as st
from warpbench.store import Store

from warpbench_leaderboard import pairview, tables

STAMP_TTL_SECONDS = 1.0  # how stale a page may be, at most
KEPT_VERSIONS = 4  # cached results per read: a few stores or a few versions of one


@st.cache_data(ttl=STAMP_TTL_SECONDS, show_spinner=False)
def load_stamp(db_path: str) -> tuple:
    """``Store.content_stamp()``: changes whenever the store's content does."""
    return Store(db_path).content_stamp()


def _by_content(compute):
    """Cache ``compute(db_path)`` per store path and content stamp."""

    def by_stamp(db_path: str, stamp: tuple):
        return compute(db_path)

    # Streamlit keys a cache by the function's module, qualified name and source; every
    # by_stamp shares the last two, so give each its own name or they would share one cache.
    by_stamp.__qualname__ = f"{compute.__qualname__}.by_stamp"
    cached = st.cache_data(max_entries=KEPT_VERSIONS, show_spinner=False)(by_stamp)

    @functools.wraps(compute)
    def load(db_path: str):
        return cached(db_path, load_stamp(db_path))

    load.clear = cached.clear
    return load


@_by_content
def load_leaderboard(db_path: str) -> pd.DataFrame:
    """``Store.leaderboard()``: one row per configuration's latest complete run."""
    return Store(db_path).leaderboard()


@_by_content
def load_runs(db_path: str) -> pd.DataFrame:
    """``Store.runs()``: every run with its provenance and pair counts, newest first."""
    return Store(db_path).runs()


@_by_content
def load_datasets(db_path: str) -> pd.DataFrame:
    """``Store.datasets()``: the newest description (and MI) of every dataset."""
    return Store(db_path).datasets()


@_by_content
def load_pair_scores(db_path: str) -> pd.DataFrame:
    """``Store.pair_scores()``: every pair of every latest complete run, keyed by run_id."""
    return Store(db_path).pair_scores()


@_by_content
def load_pairs(db_path: str) -> pd.DataFrame:
    """``Store.pairs()``: the latest attempt of every pair of every run."""
    return Store(db_path).pairs()


@_by_content
def load_failed_pairs(db_path: str) -> pd.DataFrame:
    """``Store.failed_pairs()``: pairs whose latest attempt failed, with the error."""
    return Store(db_path).failed_pairs()


@_by_content
def load_trainings(db_path: str) -> pd.DataFrame:
    """``Store.trainings()``: every training of a learning method, its state and provenance."""
    return Store(db_path).trainings()


@_by_content
def load_training_curves(db_path: str) -> pd.DataFrame:
    """``Store.training_curves()``: the loss-curve points of every training."""
    return Store(db_path).training_curves()


@_by_content
def load_summary(db_path: str) -> pd.DataFrame:
    """The leaderboard with ranks, bootstrap CIs and worst-30 % (``tables.summarise``)."""
    return tables.summarise(load_leaderboard(db_path), load_pair_scores(db_path))


@st.cache_resource(show_spinner=False)
def load_registry():
    """The installed plugins (methods, datasets, reported results), loaded once per server."""
    from warpbench.plugins import load_registry as load

    return load()


@st.cache_resource(show_spinner=False, max_entries=4)
def recompute_pair(config_path: str, config_mtime: float, run: tuple, fixed: str, moving: str):
    """``pairview.recompute_pair``, kept for the last few pairs (``run`` is the run's row as a
    tuple of items, so it hashes; ``config_mtime`` makes an edited datasets.yaml count as new)."""
    return pairview.recompute_pair(config_path, dict(run), fixed, moving, registry=load_registry())


def clear() -> None:
    """Forget every cached read (the sidebar's refresh button)."""
    for loader in (load_stamp, load_leaderboard, load_runs, load_datasets, load_pair_scores,
                   load_pairs, load_failed_pairs, load_trainings, load_training_curves,
                   load_summary):
        loader.clear()


def read_or_explain(db_path: str, load):
    """``load(db_path)``, or None after showing why the store cannot be read (no traceback)."""
    try:
        return load(db_path)
    except Exception as exc:  # a locked, foreign or corrupt file: say so, no traceback
        st.error(tables.read_error_message(db_path, exc))
        return None


def page_start(db_path: str, title: str, caption: str | None = None, load=load_summary
               ) -> pd.DataFrame | None:
    """Every page's opening: its title, what it shows (``caption``), the sidebar's refresh
    button, and the read the page is built on (``load``: by default the summarised leaderboard;
    :func:`load_leaderboard` for a page that needs no bootstrap). None after saying why there
    is nothing to show: the store cannot be read, or that read is empty (with the command that
    fills the store)."""
    st.title(title)
    if caption:
        st.caption(caption)
    with st.sidebar:
        if st.button("Refresh", icon=":material/refresh:", help="Read the store again now"):
            clear()
            st.rerun()
    frame = read_or_explain(db_path, load)
    if frame is None:
        return None
    if frame.empty:
        try:
            runs = load_runs(db_path)
        except Exception:
            runs = None
        st.info(tables.empty_store_message(db_path, runs))
        return None
    return frame


def file_mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0
