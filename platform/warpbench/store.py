"""The results store: one DuckDB file, and the only module that speaks SQL.

Rows are appended, never rewritten (a run's status and end time are the one exception): a pair
that is retried gets a new ``attempt`` row, and the ``latest_pairs`` view picks the newest one.
``latest_runs`` picks the newest complete run of each configuration, which is what the
leaderboard shows.

DuckDB lets one process write or many read, never both at once. So no connection is held open:
every write and every read opens the file, does its work in one transaction and closes it, retrying
while another process holds the lock. That lets the leaderboard app read while a run is writing.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

SCHEMA_VERSION = 1
LOCK_WAIT_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    config_key VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
    method_version VARCHAR,
    family VARCHAR,
    supervision VARCHAR,
    plugin VARCHAR,
    plugin_distribution VARCHAR,
    plugin_version VARCHAR,
    dataset VARCHAR NOT NULL,
    dataset_fingerprint VARCHAR,
    train_dataset VARCHAR,
    seed INTEGER,
    device VARCHAR,
    torch_version VARCHAR,
    cuda_version VARCHAR,
    warpbench_version VARCHAR,
    git_revision VARCHAR,
    host VARCHAR,
    started_at TIMESTAMP,
    ended_at TIMESTAMP,
    status VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS pairs (
    run_id VARCHAR NOT NULL,
    fixed VARCHAR NOT NULL,
    moving VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    error VARCHAR,
    mean_dice DOUBLE,
    mean_hd95 DOUBLE,
    sdlogj DOUBLE,
    folding_percent DOUBLE,
    seconds DOUBLE,
    peak_memory_mb DOUBLE,
    device VARCHAR,
    finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS labels (
    run_id VARCHAR NOT NULL,
    fixed VARCHAR NOT NULL,
    moving VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    label INTEGER NOT NULL,
    dice DOUBLE,
    hd95 DOUBLE
);
CREATE TABLE IF NOT EXISTS datasets (
    dataset VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    kind VARCHAR,
    subjects INTEGER,
    train_subjects INTEGER,
    val_subjects INTEGER,
    test_subjects INTEGER,
    test_pairs INTEGER,
    shape VARCHAR,
    spacing VARCHAR,
    labels VARCHAR,
    mi_bits DOUBLE,
    label_entropy_bits DOUBLE,
    nmi DOUBLE,
    mi_estimator VARCHAR,
    computed_at TIMESTAMP
);
CREATE OR REPLACE VIEW latest_pairs AS
    SELECT * FROM pairs
    QUALIFY row_number() OVER (PARTITION BY run_id, fixed, moving ORDER BY attempt DESC) = 1;
CREATE OR REPLACE VIEW latest_runs AS
    SELECT * FROM runs WHERE status = 'complete'
    QUALIFY row_number() OVER (PARTITION BY config_key ORDER BY started_at DESC) = 1;
CREATE OR REPLACE VIEW latest_datasets AS
    SELECT * FROM datasets
    QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY computed_at DESC) = 1;
"""

LEADERBOARD_COLUMNS = [
    "method", "preset", "family", "supervision", "dataset", "train_dataset", "pairs", "failed",
    "dice", "dice_std", "hd95", "sdlogj", "folding_percent", "seconds", "peak_memory_mb", "run_id",
]

_LEADERBOARD_SQL = """
SELECT r.method, r.preset, r.family, r.supervision, r.dataset, r.train_dataset,
       count(*) FILTER (WHERE p.status = 'ok') AS pairs,
       count(*) FILTER (WHERE p.status <> 'ok') AS failed,
       avg(p.mean_dice) AS dice,
       stddev_samp(p.mean_dice) AS dice_std,
       avg(p.mean_hd95) AS hd95,
       avg(p.sdlogj) AS sdlogj,
       avg(p.folding_percent) AS folding_percent,
       avg(p.seconds) AS seconds,
       max(p.peak_memory_mb) AS peak_memory_mb,
       r.run_id
FROM latest_runs r JOIN latest_pairs p USING (run_id)
GROUP BY ALL
ORDER BY r.dataset, dice DESC NULLS LAST, r.method, r.preset
"""


class StoreBusy(RuntimeError):
    """Another process kept the DuckDB file locked for longer than we were willing to wait."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class RunState:
    """Where a run stands when the scheduler picks it up: what is done, what to (re)try."""

    run_id: str
    resumed: bool
    status: str = "running"  # the run's status before this call
    done: set[tuple[str, str]] = field(default_factory=set)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)


class Store:
    """One DuckDB results file. Cheap to construct; every call opens and closes the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --- connections ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self, read_only: bool):
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    if "lock" in str(exc).lower():
                        raise StoreBusy(f"{self.path} stayed locked by another process: {exc}")
                    raise
                time.sleep(random.uniform(0.005, 0.05))  # jitter: no lock-step with the other side
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params=(), columns: list[str] | None = None) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=columns or [])
        with self._connect(read_only=True) as con:
            if not con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'"
            ).fetchone()[0]:
                return pd.DataFrame(columns=columns or [])
            return con.execute(sql, params).df()

    def initialise(self) -> None:
        """Create the tables and views if they are missing (idempotent)."""
        with self._write() as con:
            con.execute(_SCHEMA)
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )

    # --- writing -------------------------------------------------------------------------------
    def begin_run(self, config_key: str, provenance: dict, restart: bool = False) -> RunState:
        """Resume the newest run of this configuration, or start a new one (always when
        ``restart``). Pairs whose latest attempt succeeded are reported as done."""
        self.initialise()
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
                values = {**provenance, "run_id": run_id, "config_key": config_key,
                          "started_at": _now(), "ended_at": None, "status": "running"}
                names = ", ".join(values)
                con.execute(
                    f"INSERT INTO runs ({names}) VALUES ({', '.join('?' * len(values))})",
                    list(values.values()),
                )
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
        in one transaction, so an interruption never leaves half a pair."""
        with self._write() as con:
            con.execute(
                "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, result.fixed, result.moving, attempt, result.status, result.error,
                 result.mean_dice, result.mean_hd95, result.sdlogj, result.folding_percent,
                 result.seconds, result.peak_memory_mb, result.device, _now()],
            )
            if result.labels:
                con.executemany(
                    "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [[run_id, result.fixed, result.moving, attempt, label, dice, hd95]
                     for label, dice, hd95 in zip(result.labels, result.dice, result.hd95)],
                )

    def end_run(self, run_id: str, status: str) -> None:
        """Mark a run ``complete`` (every pair has an outcome) or ``interrupted``."""
        with self._write() as con:
            con.execute(
                "UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ?", [status, _now(), run_id]
            )

    def record_dataset(self, row: dict) -> None:
        """Append a dataset's description and MI(i;s)."""
        self.initialise()
        values = {**row, "computed_at": _now()}
        with self._write() as con:
            con.execute(
                f"INSERT INTO datasets ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                [json.dumps(v) if isinstance(v, (list, dict, tuple)) else v for v in values.values()],
            )

    # --- reading -------------------------------------------------------------------------------
    def leaderboard(self) -> pd.DataFrame:
        """One row per configuration's latest complete run, with its aggregate scores."""
        return self._read(_LEADERBOARD_SQL, columns=LEADERBOARD_COLUMNS)

    def runs(self) -> pd.DataFrame:
        """Every run with its provenance and its pair counts, newest first."""
        return self._read(
            """SELECT r.*, count(p.run_id) FILTER (WHERE p.status = 'ok') AS pairs_ok,
                      count(p.run_id) FILTER (WHERE p.status <> 'ok') AS pairs_failed
               FROM runs r LEFT JOIN latest_pairs p USING (run_id)
               GROUP BY ALL ORDER BY r.started_at DESC"""
        )

    def pairs(self, run_id: str | None = None) -> pd.DataFrame:
        """The latest attempt of every pair (of one run, or of all)."""
        where = "WHERE run_id = ?" if run_id else ""
        return self._read(
            f"SELECT * FROM latest_pairs {where} ORDER BY run_id, fixed, moving",
            [run_id] if run_id else [],
        )

    def label_scores(self, run_id: str | None = None) -> pd.DataFrame:
        """Per-label Dice and HD95 of the latest attempt of every pair."""
        where = "WHERE l.run_id = ?" if run_id else ""
        return self._read(
            f"""SELECT l.* FROM labels l JOIN latest_pairs p
                  ON l.run_id = p.run_id AND l.fixed = p.fixed AND l.moving = p.moving
                     AND l.attempt = p.attempt {where}""",
            [run_id] if run_id else [],
        )

    def datasets(self) -> pd.DataFrame:
        """The newest description (and MI) of every dataset seen by a run."""
        return self._read("SELECT * FROM latest_datasets ORDER BY dataset")

    def has_dataset(self, name: str, fingerprint: str) -> bool:
        found = self._read(
            "SELECT 1 FROM datasets WHERE dataset = ? AND fingerprint = ?", [name, fingerprint]
        )
        return not found.empty
