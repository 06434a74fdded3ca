"""The results store: one DuckDB file, and the only module that speaks SQL.

Rows are appended, never rewritten (a run's status and end time, and a training's state, are the
exceptions): a pair that is retried gets a new ``attempt`` row, and the ``latest_pairs`` view picks
the newest one. ``latest_runs`` picks the newest complete run of each configuration, which is what
the leaderboard shows. ``trainings`` holds one row per training cache key (its state, weights and
provenance), ``training_curves`` its loss curves; a run of a learning method names its training.

DuckDB lets one process write or many read, never both at once. So no connection is held open:
every write and every read opens the file, does its work in one transaction and closes it, retrying
while another process holds the lock. That lets the leaderboard app read while a run is writing.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

SCHEMA_VERSION = 2
LOCK_WAIT_SECONDS = 60.0

# The provenance a run and a training both carry: which method (and plugin) it was, and where
# and with what it ran. (The order of the columns is the files' order; keep it.)
_METHOD_COLUMNS = """\
    method_version VARCHAR,
    family VARCHAR,
    supervision VARCHAR,
    plugin VARCHAR,
    plugin_distribution VARCHAR,
    plugin_version VARCHAR,
"""
_ENVIRONMENT_COLUMNS = """\
    device VARCHAR,
    torch_version VARCHAR,
    cuda_version VARCHAR,
    warpbench_version VARCHAR,
    git_revision VARCHAR,
    host VARCHAR,
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    config_key VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
{method_columns}    dataset VARCHAR NOT NULL,
    dataset_fingerprint VARCHAR,
    train_dataset VARCHAR,
    in_domain BOOLEAN,
    training_key VARCHAR,
    seed INTEGER,
{environment_columns}    started_at TIMESTAMP,
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
CREATE TABLE IF NOT EXISTS trainings (
    training_key VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
{method_columns}    train_dataset VARCHAR NOT NULL,
    train_dataset_fingerprint VARCHAR,
    seed INTEGER,
{environment_columns}    folder VARCHAR,
    weights VARCHAR,
    status VARCHAR NOT NULL,
    error VARCHAR,
    attempts INTEGER,
    steps INTEGER,
    total_steps INTEGER,
    seconds DOUBLE,
    started_at TIMESTAMP,
    ended_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS training_curves (
    training_key VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    split VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE,
    logged_at TIMESTAMP
);
-- Columns added in schema version 2: a version-1 file gains them on its next write.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS in_domain BOOLEAN;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS training_key VARCHAR;
CREATE OR REPLACE VIEW latest_pairs AS
    SELECT * FROM pairs
    QUALIFY row_number() OVER (PARTITION BY run_id, fixed, moving ORDER BY attempt DESC) = 1;
CREATE OR REPLACE VIEW latest_runs AS
    SELECT * FROM runs WHERE status = 'complete'
    QUALIFY row_number() OVER (PARTITION BY config_key ORDER BY started_at DESC) = 1;
CREATE OR REPLACE VIEW latest_datasets AS
    SELECT * FROM datasets
    QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY computed_at DESC) = 1;
""".format(method_columns=_METHOD_COLUMNS, environment_columns=_ENVIRONMENT_COLUMNS)

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
ORDER BY r.dataset, dice DESC NULLS LAST, r.method, r.preset, r.train_dataset
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
        self._schema_ready = False  # set by the first write through this instance

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
            if not self._schema_ready:
                self._create_schema(con)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params=(), columns: list[str] | None = None,
              table: str = "runs") -> pd.DataFrame:
        """Run a query; empty when the file or the ``table`` it needs does not exist yet."""
        if not self.path.exists():
            return pd.DataFrame(columns=columns or [])
        with self._connect(read_only=True) as con:
            if not con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()[0]:
                return pd.DataFrame(columns=columns or [])
            return con.execute(sql, params).df()

    def _create_schema(self, con) -> None:
        con.execute(_SCHEMA)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
        self._schema_ready = True

    def initialise(self) -> None:
        """Create the tables and views if they are missing (idempotent)."""
        with self._write():
            pass

    # --- writing -------------------------------------------------------------------------------
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

    def finished_pairs(self, config_key: str) -> set[tuple[str, str]]:
        """The (fixed, moving) pairs whose latest attempt succeeded in the newest run of a
        configuration; empty when it has no run. Reads only, unlike :meth:`begin_run`."""
        found = self._read(
            """SELECT fixed, moving FROM latest_pairs WHERE status = 'ok' AND run_id = (
                   SELECT run_id FROM runs WHERE config_key = ? ORDER BY started_at DESC LIMIT 1)""",
            [config_key])
        return set(zip(found["fixed"], found["moving"])) if not found.empty else set()

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
        values = {**row, "computed_at": _now()}
        with self._write() as con:
            con.execute(
                f"INSERT INTO datasets ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                [json.dumps(v) if isinstance(v, (list, dict, tuple)) else v for v in values.values()],
            )

    # --- trainings -----------------------------------------------------------------------------
    def training(self, key: str) -> dict | None:
        """One training's row (state, weights, provenance), or None when it never started."""
        found = self._read("SELECT * FROM trainings WHERE training_key = ?", [key], table="trainings")
        return found.iloc[0].to_dict() if not found.empty else None

    def begin_training(self, key: str, provenance: dict, folder: str) -> None:
        """Mark a training as running: a new row, or the existing one (an interrupted, failed or
        vanished-weights training being resumed) with this attempt's provenance."""
        with self._write() as con:
            if con.execute("SELECT count(*) FROM trainings WHERE training_key = ?", [key]).fetchone()[0]:
                values = {**provenance, "folder": folder, "status": "running", "error": None}
                assignments = ", ".join(f"{name} = ?" for name in values)
                con.execute(
                    f"UPDATE trainings SET {assignments}, attempts = attempts + 1, ended_at = NULL "
                    "WHERE training_key = ?", [*values.values(), key])
                return
            values = {**provenance, "training_key": key, "folder": folder, "status": "running",
                      "attempts": 1, "seconds": 0.0, "started_at": _now()}
            con.execute(
                f"INSERT INTO trainings ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )

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
        with self._write() as con:
            con.register("incoming_curve", frame)
            try:
                con.execute(
                    """DELETE FROM training_curves t USING incoming_curve i
                       WHERE t.training_key = i.training_key AND t.step = i.step
                         AND t.split = i.split AND t.name = i.name""")
                con.execute("INSERT INTO training_curves BY NAME SELECT * FROM incoming_curve")
            finally:
                con.unregister("incoming_curve")

    def trainings(self) -> pd.DataFrame:
        """Every training with its state and provenance, newest first."""
        return self._read("SELECT * FROM trainings ORDER BY started_at DESC", table="trainings")

    def training_curves(self, key: str | None = None) -> pd.DataFrame:
        """Loss-curve points (of one training, or of all), in step order."""
        where = "WHERE training_key = ?" if key else ""
        return self._read(
            f"SELECT * FROM training_curves {where} ORDER BY training_key, split, name, step",
            [key] if key else [], table="training_curves")

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

    # --- reads for the leaderboard app's analyses, and bulk appends ----------------------------
    # (Kept together at the end of the class: the app's pages read through these.)
    def pair_scores(self) -> pd.DataFrame:
        """Every pair's latest attempt in each configuration's latest complete run (the runs
        ``leaderboard()`` shows): the raw material of confidence intervals, paired tests and box
        plots. Failed pairs are included (``status`` says so; their scores are NULL).

        The run's description is not repeated on every pair row (at 100,000 rows the repeated
        text costs more than the scores): join on ``run_id`` with ``leaderboard()``."""
        return self._read(_PAIR_SCORES_SQL, columns=PAIR_SCORE_COLUMNS)

    def content_stamp(self) -> tuple:
        """A cheap fingerprint of the store's content (row counts, newest pair and run end,
        complete runs, dataset rows, trainings' states and curve points): rows are only
        appended, and a run's status and end time and a training's state are the only updates,
        so equal stamps mean equal content and cached analyses can be reused. Empty for a
        missing file or one without runs."""
        found = self._read(
            """SELECT (SELECT count(*) FROM runs) AS runs,
                      (SELECT count(*) FILTER (WHERE status = 'complete') FROM runs) AS complete,
                      (SELECT max(ended_at) FROM runs) AS ended,
                      (SELECT count(*) FROM pairs) AS pairs,
                      (SELECT max(finished_at) FROM pairs) AS finished,
                      (SELECT count(*) FROM datasets) AS datasets""")
        trained = self._read(  # empty for a store written before trainings existed
            """SELECT (SELECT count(*) FROM training_curves) AS points,
                      (SELECT max(logged_at) FROM training_curves) AS logged,
                      (SELECT string_agg(status, ',' ORDER BY training_key) FROM trainings) AS states""",
            table="training_curves")
        return tuple(str(v) for frame in (found, trained) if not frame.empty
                     for v in frame.iloc[0])

    def failed_pairs(self) -> pd.DataFrame:
        """Pairs whose latest attempt failed, in every run (complete or not), with the error and
        the run's method, preset and dataset; newest first."""
        return self._read(
            """SELECT r.run_id, r.method, r.preset, r.dataset, r.train_dataset, r.status AS run_status,
                      p.fixed, p.moving, p.attempt, p.error, p.device, p.finished_at
               FROM latest_pairs p JOIN runs r USING (run_id)
               WHERE p.status <> 'ok'
               ORDER BY p.finished_at DESC, r.method, p.fixed, p.moving""",
            columns=["run_id", "method", "preset", "dataset", "train_dataset", "run_status",
                     "fixed", "moving", "attempt", "error", "device", "finished_at"],
        )

    def append_frame(self, table: str, frame: pd.DataFrame) -> int:
        """Append the rows of ``frame`` to ``runs``, ``pairs``, ``labels`` or ``datasets`` in one
        transaction, matching columns by name (missing ones are NULL); returns the row count.
        For bulk imports and benchmarks: one statement instead of a round trip per row."""
        if table not in _APPENDABLE_TABLES:
            raise ValueError(f"cannot append to {table!r}; tables: {', '.join(_APPENDABLE_TABLES)}")
        with self._write() as con:
            con.register("incoming_frame", frame)
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_frame")
            finally:
                con.unregister("incoming_frame")
        return len(frame)

    # --- merging stores and exporting tables (`warpbench merge`, `warpbench export`) -----------
    # A run's rows share its run_id, which is a random UUID made when the run began, so the same
    # run_id in two files is the same run (a copy, or a later state of it), never a clash.

    #: The tables every warpbench store has, and those that arrived with schema version 2.
    _REQUIRED_TABLES = ("runs", "pairs", "labels", "datasets")
    _TRAINING_TABLES = ("trainings", "training_curves")
    #: The tables that hold results, in the order they are merged and exported.
    RESULT_TABLES = _REQUIRED_TABLES + _TRAINING_TABLES
    #: The columns that make two rows the same row.
    _ROW_KEYS = {
        "trainings": ("training_key",),
        "training_curves": ("training_key", "step", "split", "name"),
        "runs": ("run_id",),
        "pairs": ("run_id", "fixed", "moving", "attempt"),
        "labels": ("run_id", "fixed", "moving", "attempt", "label"),
        "datasets": ("dataset", "fingerprint"),
        "run_sources": ("run_id", "source"),
    }
    _RUN_SOURCES_SCHEMA = """
        CREATE TABLE IF NOT EXISTS run_sources (
            run_id VARCHAR NOT NULL, source VARCHAR NOT NULL, merged_at TIMESTAMP)"""

    def _tables(self, con, catalog: str | None = None) -> set[str]:
        where = "WHERE table_catalog = ?" if catalog else ""
        rows = con.execute(
            f"SELECT table_name FROM information_schema.tables {where}", [catalog] if catalog else []
        ).fetchall()
        return {name for (name,) in rows}

    def check_file(self) -> None:
        """Raise :class:`StoreFileError` naming the file unless it is a warpbench store."""
        if not self.path.is_file():
            raise StoreFileError(f"{self.path}: no such file")
        try:
            with self._connect(read_only=True) as con:
                tables = self._tables(con)
        except StoreBusy:
            raise
        except duckdb.Error as exc:
            raise StoreFileError(f"{self.path}: not a DuckDB file ({exc})") from None
        missing = sorted(set(self._REQUIRED_TABLES) - tables)
        if missing:
            raise StoreFileError(f"{self.path}: not a warpbench store (no table {', '.join(missing)})")

    def export_tables(self, folder: str | Path, fmt: str = "parquet") -> list[Path]:
        """Write each results table to ``folder/<table>.<fmt>``, ``fmt`` being ``parquet`` or
        ``csv`` (with a header row): ``run_sources`` when the store has one, and the training
        tables when it holds a training (a store of classical runs exports as it always did)."""
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"unknown export format {fmt!r}; expected parquet or csv")
        self.check_file()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        written = []
        with self._connect(read_only=True) as con:
            present = self._tables(con)
            tables = [t for t in (*self._REQUIRED_TABLES, "run_sources") if t in present]
            if "trainings" in present and con.execute("SELECT count(*) FROM trainings").fetchone()[0]:
                tables += self._TRAINING_TABLES
            for table in tables:
                path = folder / f"{table}.{fmt}"
                con.execute(f"COPY {table} TO {_sql_string(path)} ({options})")
                written.append(path)
        return written

    def merge_from(self, sources) -> dict[str, int]:
        """Add to this store every row of the ``sources`` that it lacks, and return how many rows
        each table gained. A source is another store, or a folder of tables that
        :meth:`export_tables` wrote (so results kept as files in a repository resume a run on a
        machine that never had its store). Rows are the same when their keys (``_ROW_KEYS``)
        match, so merging a file twice, or two files holding one run, adds each row once; a run
        found in several files keeps the row of its latest end (its most advanced state). Every
        run's provenance columns are kept as they were; ``run_sources`` also records which file
        each run was merged from (and keeps the sources' own records)."""
        sources = [Path(s) for s in sources]
        for source in sources:
            if not source.is_dir():  # a folder is checked as it is read, below
                Store(source).check_file()
        if self.path.exists():
            self.check_file()
        with tempfile.TemporaryDirectory(prefix="warpbench-merge-") as scratch:
            # Every folder is read before the output is touched: a bad file leaves no output.
            files = [_store_from_export(s, Path(scratch) / f"{i}.duckdb") if s.is_dir() else s
                     for i, s in enumerate(sources)]
            self.initialise()
            return self._merge_files(list(zip(sources, files)))

    def _merge_files(self, sources: list[tuple[Path, Path]]) -> dict[str, int]:
        """Merge each (name to record, store file) of ``sources``, one transaction each."""
        # Counts in the order they were always reported (scripts may read it), training last.
        added = dict.fromkeys([*self._REQUIRED_TABLES, "run_sources", *self._TRAINING_TABLES], 0)
        with self._connect(read_only=False) as con:
            con.execute(self._RUN_SOURCES_SCHEMA)
            for index, (source, file) in enumerate(sources):
                alias = f"merge_source_{index}"
                con.execute(f"ATTACH {_sql_string(file.resolve())} AS {alias} (READ_ONLY)")
                try:
                    con.execute("BEGIN TRANSACTION")
                    try:
                        self._merge_one(con, alias, str(source.resolve()), added)
                        con.execute("COMMIT")
                    except BaseException as exc:
                        con.execute("ROLLBACK")
                        if isinstance(exc, duckdb.Error):
                            raise StoreFileError(f"{source}: cannot be merged: {exc}") from None
                        raise
                finally:
                    con.execute(f"DETACH {alias}")
        return added

    def _merge_one(self, con, alias: str, source: str, added: dict[str, int]) -> None:
        def insert_missing(table: str, select: str) -> None:
            same = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in self._ROW_KEYS[table])
            before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({select}) s "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {same})")
            added[table] += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before

        # A run present in both: take the source's status and end when it got further.
        con.execute(
            f"""UPDATE runs SET status = s.status, ended_at = s.ended_at
                FROM {alias}.runs s
                WHERE runs.run_id = s.run_id AND s.ended_at IS NOT NULL
                  AND (runs.ended_at IS NULL OR s.ended_at > runs.ended_at)""")
        source_tables = self._tables(con, alias)
        if "trainings" in source_tables:  # likewise a training, with its weights and steps
            con.execute(
                f"""UPDATE trainings SET status = s.status, ended_at = s.ended_at,
                           weights = s.weights, error = s.error, steps = s.steps,
                           seconds = s.seconds, attempts = s.attempts
                    FROM {alias}.trainings s
                    WHERE trainings.training_key = s.training_key AND s.ended_at IS NOT NULL
                      AND (trainings.ended_at IS NULL OR s.ended_at > trainings.ended_at)""")
        insert_missing("run_sources", f"""
            SELECT run_id, {_sql_string(source)} AS source, now()::TIMESTAMP AS merged_at
            FROM {alias}.runs""")
        if "run_sources" in source_tables:
            insert_missing("run_sources", f"SELECT * FROM {alias}.run_sources")
        for table in self.RESULT_TABLES:
            if table in source_tables:  # a version-1 store has no training tables
                insert_missing(table, f"SELECT * FROM {alias}.{table}")


class StoreFileError(ValueError):
    """A path given as a store that is missing, not a DuckDB file, or not a warpbench store."""


_EXPORT_READERS = {".parquet": "read_parquet({})", ".csv": "read_csv({}, header = true)"}


def _exported_tables(folder: Path) -> dict[str, Path]:
    """The table files of an export folder by table name; :class:`StoreFileError` naming the
    folder when a required table is missing or a table comes in two formats."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in _EXPORT_READERS and path.stem in (*Store.RESULT_TABLES, "run_sources"):
            if path.stem in found:
                raise StoreFileError(f"{folder}: {found[path.stem].name} and {path.name} both hold "
                                     f"table {path.stem}; keep one")
            found[path.stem] = path
    missing = [t for t in Store._REQUIRED_TABLES if t not in found]
    if missing:
        raise StoreFileError(f"{folder}: not an exported warpbench store (no "
                             f"{', '.join(t + '.parquet' for t in missing)} or .csv)")
    return found


def _store_from_export(folder: Path, path: Path) -> Path:
    """Load an export folder's tables into a new store at ``path``; the schema's types decide
    each column's, so a CSV export comes back as the Parquet one does."""
    store = Store(path)
    store.initialise()
    with store._connect(read_only=False) as con:
        con.execute(Store._RUN_SOURCES_SCHEMA)
        for table, file in _exported_tables(folder).items():
            reader = _EXPORT_READERS[file.suffix].format(_sql_string(file))
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {reader}")
            except duckdb.Error as exc:
                raise StoreFileError(f"{file}: cannot be read as table {table}: {exc}") from None
    return path


def _sql_string(value) -> str:
    """A single-quoted SQL string literal (for file paths in COPY and ATTACH, which take no
    parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


_APPENDABLE_TABLES = ("runs", "pairs", "labels", "datasets")

PAIR_SCORE_COLUMNS = [
    "run_id", "fixed", "moving", "status", "mean_dice", "mean_hd95", "sdlogj", "folding_percent",
    "seconds", "peak_memory_mb",
]

_PAIR_SCORES_SQL = """
SELECT p.run_id, p.fixed, p.moving, p.status, p.mean_dice, p.mean_hd95, p.sdlogj,
       p.folding_percent, p.seconds, p.peak_memory_mb
FROM latest_pairs p WHERE p.run_id IN (SELECT run_id FROM latest_runs)
"""
