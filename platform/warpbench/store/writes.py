"""Writing to the store: runs and their pairs, dataset descriptions, trainings and their curves,
and bulk appends.

Rows are appended, never rewritten (a run's status and end time, and a training's state, are the
exceptions): a pair that is retried gets a new ``attempt`` row, and the ``latest_pairs`` view
picks the newest one. A pair's attempt, its labels and a dataset's description are stored once
(their primary keys, ``schema.KEYS``): a second pair row for an attempt is refused
(:class:`AlreadyStored`), a second description of a dataset's fingerprint is left out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from warpbench.store.connection import StoreFile
from warpbench.store.errors import AlreadyStored
from warpbench.store.migrations import fill_stated_columns

#: The tables :meth:`Writes.append_frame` takes rows for.
APPENDABLE_TABLES = ("runs", "pairs", "labels", "datasets")


@dataclass
class RunState:
    """Where a run stands when the scheduler picks it up: what is done, what to (re)try."""

    run_id: str
    resumed: bool
    status: str = "running"  # the run's status before this call
    done: set[tuple[str, str]] = field(default_factory=set)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)


class Writes(StoreFile):
    def begin_run(self, config_key: str, provenance: dict, restart: bool = False) -> RunState:
        """Resume the newest run of this configuration, or start a new one (always when
        ``restart``). Pairs whose latest attempt succeeded are reported as done."""
        with self._write() as con:
            row = None
            if not restart:
                row = con.execute(
                    "SELECT run_id, status FROM runs WHERE config_key = ? "
                    "ORDER BY started_at DESC LIMIT 1",
                    [config_key],
                ).fetchone()
            if row is None:
                run_id = uuid.uuid4().hex
                _insert(con, "runs", {**provenance, "run_id": run_id, "config_key": config_key,
                                      "started_at": _now(), "ended_at": None, "status": "running"})
                return RunState(run_id, resumed=False)
            run_id, status = row
            latest = con.execute(
                "SELECT fixed, moving, status, attempt FROM latest_pairs WHERE run_id = ?", [run_id]
            ).fetchall()
            if status != "complete":
                con.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", [run_id])
        return RunState(
            run_id,
            resumed=True,
            status=status,
            done={(f, m) for f, m, outcome, _ in latest if outcome == "ok"},
            attempts={(f, m): attempt for f, m, _, attempt in latest},
        )

    def record_pair(self, run_id: str, attempt: int, result) -> None:
        """Append one pair's outcome (a :class:`warpbench.runner.PairResult`) and its label rows,
        in one transaction, so an interruption never leaves half a pair. Raises
        :class:`AlreadyStored`, storing nothing, when this attempt of the pair is stored already
        (another process is writing the same run)."""
        with self._write() as con:
            stored = con.execute(
                "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING attempt",
                [run_id, result.fixed, result.moving, attempt, result.status, result.error,
                 result.mean_dice, result.mean_hd95, result.sdlogj, result.folding_percent,
                 result.seconds, result.peak_memory_mb, result.device, _now()],
            ).fetchall()
            if not stored:
                raise AlreadyStored(
                    f"{self.path}: attempt {attempt} of pair {result.fixed} <- {result.moving} of "
                    f"run {run_id} is stored already: another process is writing this run")
            if result.labels:
                con.executemany(
                    "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [[run_id, result.fixed, result.moving, attempt, label, dice, hd95]
                     for label, dice, hd95 in zip(result.labels, result.dice, result.hd95)],
                )

    def end_run(self, run_id: str, status: str) -> None:
        """Mark a run ``complete`` (every pair has an outcome) or ``interrupted``."""
        with self._write() as con:
            con.execute("UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ?",
                        [status, _now(), run_id])

    def record_dataset(self, row: dict) -> None:
        """Append a dataset's description and MI(i;s), unless its (dataset, fingerprint) is
        described already (by another process meanwhile, say): one description per key."""
        values = {**row, "computed_at": _now()}
        with self._write() as con:
            _insert(con, "datasets", {name: json.dumps(v) if isinstance(v, (list, dict, tuple))
                                      else v for name, v in values.items()},
                    on_conflict="DO NOTHING")

    def reinstate_dataset(self, name: str, fingerprint: str) -> bool:
        """Make a stored description the dataset's newest again (its data went back to that
        version: the leaderboard follows the newest); False when it already is."""
        with self._write() as con:
            newest = con.execute("SELECT fingerprint FROM latest_datasets WHERE dataset = ?",
                                 [name]).fetchone()
            if newest is None or newest[0] == fingerprint:
                return False
            con.execute("UPDATE datasets SET computed_at = ? WHERE dataset = ? AND fingerprint = ?",
                        [_now(), name, fingerprint])
            return True

    # --- trainings -----------------------------------------------------------------------------
    def begin_training(self, key: str, provenance: dict, folder: str) -> None:
        """Mark a training as running: a new row, or the existing one (an interrupted, failed or
        vanished-weights training being resumed) with this attempt's provenance."""
        with self._write() as con:
            known = con.execute(
                "SELECT count(*) FROM trainings WHERE training_key = ?", [key]).fetchone()[0]
            if known:
                values = {**provenance, "folder": folder, "status": "running", "error": None}
                assignments = ", ".join(f"{name} = ?" for name in values)
                con.execute(
                    f"UPDATE trainings SET {assignments}, attempts = attempts + 1, ended_at = NULL "
                    "WHERE training_key = ?", [*values.values(), key])
                return
            _insert(con, "trainings", {**provenance, "training_key": key, "folder": folder,
                                       "status": "running", "attempts": 1, "seconds": 0.0,
                                       "started_at": _now()})

    def end_training(self, key: str, status: str, *, seconds: float, weights: str | None = None,
                     error: str | None = None, steps: int | None = None,
                     total_steps: int | None = None) -> None:
        """Record how a training attempt ended: ``complete`` (with its weights), ``failed`` (with
        the error) or ``interrupted``; its seconds add to those of earlier attempts."""
        with self._write() as con:
            con.execute(
                """UPDATE trainings SET status = ?, weights = ?, error = ?,
                          steps = coalesce(?, steps), total_steps = coalesce(?, total_steps),
                          seconds = coalesce(seconds, 0) + ?, ended_at = ?
                   WHERE training_key = ?""",
                [status, weights, error, steps, total_steps, seconds, _now(), key])

    def record_curve(self, key: str, points) -> None:
        """Write loss-curve points ``(step, split, name, value)`` of one training in one
        transaction; a point already stored for the same (step, split, name) is replaced."""
        frame = pd.DataFrame(list(points), columns=["step", "split", "name", "value"]).assign(
            training_key=key, logged_at=_now())
        with self._write() as con:  # a frame registered on a connection goes when it closes
            con.register("incoming_curve", frame)
            con.execute(
                """DELETE FROM training_curves t USING incoming_curve i
                   WHERE t.training_key = i.training_key AND t.step = i.step
                     AND t.split = i.split AND t.name = i.name""")
            con.execute("INSERT INTO training_curves BY NAME SELECT * FROM incoming_curve")

    # --- bulk appends --------------------------------------------------------------------------
    def append_frame(self, table: str, frame: pd.DataFrame) -> int:
        """Append the rows of ``frame`` to ``runs``, ``pairs``, ``labels`` or ``datasets`` in one
        transaction, matching columns by name (missing ones are NULL, except a trained run's
        ``in_domain`` and ``same_labels``, which are filled in); returns the row count. For bulk imports and
        benchmarks: one statement instead of a round trip per row. A row whose key is stored
        already (or comes twice) refuses the whole append (``duckdb.ConstraintException``)."""
        if table not in APPENDABLE_TABLES:
            raise ValueError(f"cannot append to {table!r}; tables: {', '.join(APPENDABLE_TABLES)}")
        with self._write() as con:  # a frame registered on a connection goes when it closes
            con.register("incoming_frame", frame)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_frame")
            if table == "runs":
                fill_stated_columns(con)
        return len(frame)


def _insert(con, table: str, values: dict, on_conflict: str = "") -> None:
    """Insert one row given as {column: value}; the columns it omits are NULL. ``on_conflict``:
    what to do when the row's key is stored already (an ``ON CONFLICT`` action; raise if none)."""
    placeholders = ", ".join("?" * len(values))
    conflict = f" ON CONFLICT {on_conflict}" if on_conflict else ""
    con.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({placeholders}){conflict}",
                list(values.values()))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
