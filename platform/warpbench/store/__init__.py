"""The results store: one DuckDB file, and the only code that speaks SQL.

A run's pairs and labels, the datasets it saw, trainings and their loss curves: rows are appended
and never rewritten (a run's status and end time, and a training's state, are the exceptions),
and a result is stored once (primary keys). One process writes a store at a time (its lease).
``latest_runs`` picks the newest complete run of each configuration, which is what the
leaderboard shows; a run of a learning method names its training.

The package, one module per idea: :mod:`~warpbench.store.schema` (the tables of this version),
:mod:`~warpbench.store.migrations` (upgrading an older file in place, refusing a newer one),
:mod:`~warpbench.store.locks` (opening the file while another process may hold it),
:mod:`~warpbench.store.lease` (one writer at a time, for as long as its run lasts),
:mod:`~warpbench.store.connection` (a connection and a transaction per call, so the leaderboard
app reads while a run writes), :mod:`~warpbench.store.writes`, :mod:`~warpbench.store.reads`, and
:mod:`~warpbench.store.exchange` (merge and export), :mod:`~warpbench.store.tuning` (tunings, their
trials and the tuned presets). :class:`Store` is all of them on one file.
"""

from __future__ import annotations

from warpbench.store.errors import AlreadyStored, StoreBusy, StoreFileError
from warpbench.store.exchange import Exchange
from warpbench.store.reads import LEADERBOARD_COLUMNS, PAIR_SCORE_COLUMNS, Reads
from warpbench.store.schema import SCHEMA_VERSION
from warpbench.store.tuning import Tunings, TuningState
from warpbench.store.writes import RunState, Writes


class Store(Writes, Reads, Exchange, Tunings):
    """One DuckDB results file. Cheap to construct; every call opens and closes the file."""


__all__ = ["AlreadyStored", "LEADERBOARD_COLUMNS", "PAIR_SCORE_COLUMNS", "SCHEMA_VERSION",
           "RunState", "Store", "StoreBusy", "StoreFileError", "TuningState"]
