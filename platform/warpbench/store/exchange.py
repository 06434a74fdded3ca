"""Merging stores and exporting tables (``warpbench merge``, ``warpbench export``).

A run's rows share its run_id, which is a random UUID made when the run began, so the same
run_id in two files is the same run (a copy, or a later state of it), never a clash. A source is
a store this code did not write: it is read through :mod:`warpbench.store.sources` (base tables of
this schema only, nothing of it executed), and a source that tells a run of the output otherwise
is refused (:mod:`warpbench.store.conflicts`). A tuning's key is a hash of what decides its
trials, so the same key in two files is the same tuning, merged as a run is: each keeps its most
advanced state. A source older than this code's schema is read as it stands (before version 2 it
has no trainings, before version 5 no tunings); a newer one is refused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from warpbench.store import locks, schema
from warpbench.store.conflicts import (FINISHED, TRIAL_START_COLUMNS, TUNING_PROGRESS_COLUMNS,
                                       first_conflict)
from warpbench.store.connection import StoreFile, transaction
from warpbench.store.errors import StoreFileError
from warpbench.store.migrations import fill_stated_columns
from warpbench.store.sources import ROW_KEYS, RUN_SOURCES_TABLE, Source, schema_columns
from warpbench.store.weights import bring_weights, export_weights, read_manifest

#: The tables a source's rows are staged from, in the order they are merged.
_MERGED_TABLES = (*schema.RESULT_TABLES, "run_sources")
#: The tables an export writes only when the store holds a row of the first: a store of
#: classical runs exports as it did before trainings, one never tuned as before tunings.
_EXPORTED_WHEN_USED = (schema.TRAINING_TABLES, schema.TUNING_TABLES)


class Exchange(StoreFile):
    #: The tables that hold results, in the order they are merged and exported.
    RESULT_TABLES = schema.RESULT_TABLES

    def check_file(self) -> None:
        """Raise :class:`StoreFileError` naming the file unless it is a warpbench store of this
        schema version or an older one."""
        if not self.path.is_file():
            raise StoreFileError(f"{self.path}: no such file")
        try:
            with self._connect(read_only=True) as con:
                tables = self._readable_tables(con)
        except duckdb.Error as exc:
            raise StoreFileError(f"{self.path}: not a DuckDB file ({exc})") from None
        missing = sorted(set(schema.REQUIRED_TABLES) - tables)
        if missing:
            raise StoreFileError(
                f"{self.path}: not a warpbench store (no table {', '.join(missing)})")

    def export_tables(self, folder: str | Path, fmt: str = "parquet") -> list[Path]:
        """Write each results table to ``folder/<table>.<fmt>``, ``fmt`` being ``parquet`` or
        ``csv`` (with a header row): ``run_sources`` when the store has one, the training tables
        when it holds a training, with the complete trainings' weights files and their digests
        (:mod:`warpbench.store.weights`), and the tuning tables when it holds a tuning (a store
        of classical runs exports as it always did)."""
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"unknown export format {fmt!r}; expected parquet or csv")
        self.check_file()
        _vet_file(self.path, self.path)  # base tables of this schema only: COPY writes files
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        written = []
        with self._connect(read_only=True, sealed=False) as con:
            present = schema.table_names(con)
            tables = [t for t in (*schema.REQUIRED_TABLES, "run_sources") if t in present]
            used = {group[0]: group[0] in present and con.execute(
                        f"SELECT count(*) FROM {group[0]}").fetchone()[0] > 0
                    for group in _EXPORTED_WHEN_USED}
            for group in _EXPORTED_WHEN_USED:
                if used[group[0]]:
                    tables += [t for t in group if t in present]
            for table in tables:
                path = folder / f"{table}.{fmt}"
                con.execute(f"COPY {table} TO {_sql_string(path)} ({options})")
                written.append(path)
            if used["trainings"]:
                written += export_weights(con, folder)
        return written

    def merge_from(self, sources) -> dict[str, int]:
        """Add to this store every row of the ``sources`` that it lacks, and return how many rows
        each table gained. A source is another store, or a folder of tables that
        :meth:`export_tables` wrote (so results kept as files in a repository resume a run on a
        machine that never had its store). Rows are the same when their keys (``ROW_KEYS``)
        match, so merging a file twice, or two files holding one run, adds each row once; a run
        found in several files keeps its most advanced state (a complete run stays complete), and
        so does a tuning (the one that finished more trials) and each of its trials (finished
        rather than running or interrupted), so an exported tuning resumes anywhere.
        Every run's provenance columns are kept as they were; ``run_sources`` also records which
        file each run was merged from (and keeps the sources' own records).

        Only the base tables of this schema are read from a source, and its values are checked
        first; a source that tells a run of this store otherwise (another score for a pair it
        holds, say) is refused. Either raises :class:`StoreFileError` naming the source, and
        leaves this store as it was: a merge is one transaction. The weights files an export
        folder lists are checked first too, then copied into this store's checkpoint folder
        for its trainings that have none (``weights`` in the counts)."""
        sources = [Path(s) for s in sources]
        weights = []
        for source in sources:
            if source.is_dir():  # a folder's tables are checked as they are read, below
                weights += read_manifest(source)
            else:
                _vet_file(source, source)
        existed = self.path.exists()
        if existed:
            self.check_file()
        with tempfile.TemporaryDirectory(prefix="warpbench-merge-") as scratch:
            # Every source is read before the output is touched: a bad one leaves no output.
            files = []
            for i, source in enumerate(sources):
                if source.is_dir():
                    file = _store_from_export(source, Path(scratch) / f"{i}.duckdb")
                    _vet_file(file, source)
                    files.append(file)
                else:
                    files.append(source)
            self.path.parent.mkdir(parents=True, exist_ok=True)  # where its lease lives
            with self.writer_lease("warpbench merge"):
                self.initialise()
                try:
                    added = self._merge_files(list(zip(sources, files)))
                except StoreFileError:
                    if not existed:  # refused between sources: no output, as for a bad file
                        self.path.unlink(missing_ok=True)
                    raise
                with self._connect(read_only=False) as con, transaction(con):
                    added["weights"] = bring_weights(con, weights,
                                                     self.path.parent / "checkpoints")
                return added

    def _merge_files(self, sources: list[tuple[Path, Path]]) -> dict[str, int]:
        """Merge each (name to record, store file) of ``sources``, all in one transaction."""
        # Counts in the order they were always reported (scripts may read it), new tables last.
        added = dict.fromkeys([*schema.REQUIRED_TABLES, "run_sources", *schema.TRAINING_TABLES,
                               *schema.TUNING_TABLES], 0)
        with self._connect(read_only=False) as con:
            con.execute(RUN_SOURCES_TABLE)
            aliases: list[str] = []
            try:  # attached outside the transaction, so a failed one still detaches them
                for index, (_, file) in enumerate(sources):
                    locks.attach_read_only(con, file, f"merge_source_{index}")
                    aliases.append(f"merge_source_{index}")
                with transaction(con):
                    for alias, (name, _) in zip(aliases, sources):
                        try:
                            self._merge_one(con, Source(con, alias, name), added)
                        except duckdb.Error as exc:
                            raise StoreFileError(f"{name}: cannot be merged: {exc}") from None
            finally:
                for alias in aliases:
                    con.execute(f"DETACH {alias}")
        return added

    def _merge_one(self, con, source: Source, added: dict[str, int]) -> None:
        """Stage the source's tables as ``incoming_<table>``, refuse it on a conflict, then add
        its missing rows and its runs' progress."""
        # version 1 has no trainings, a version before 5 no tunings
        staged = [t for t in _MERGED_TABLES if source.has(t)]
        for table in staged:
            con.execute(f"CREATE OR REPLACE TEMP TABLE incoming_{table} AS {source.select(table)}")
        conflict = first_conflict(con, staged)
        if conflict:
            raise StoreFileError(
                f"{source.name}: refused, it contradicts {self.path} on {conflict}; nothing "
                f"of {source.name} was merged (a run id names one run, a tuning key one "
                "tuning: keep the store that holds its right state and leave the other out)")
        self._add_missing(con, str(source.name.resolve()), staged, added)
        for table in staged:  # the next source may lack one
            con.execute(f"DROP TABLE incoming_{table}")

    def _add_missing(self, con, name: str, staged: list[str], added: dict[str, int]) -> None:
        def insert_missing(table: str, select: str) -> None:
            same = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in ROW_KEYS[table])
            before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({select}) s "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {same})")
            added[table] += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before

        # A run present in both: take the source's status and end when it got further; a
        # complete run never goes back (a later retry of its failed pairs may be interrupted).
        con.execute(
            """UPDATE runs SET status = s.status, ended_at = s.ended_at
               FROM incoming_runs s
               WHERE runs.run_id = s.run_id AND s.ended_at IS NOT NULL
                 AND CASE WHEN runs.status = 'complete'
                          THEN s.status = 'complete' AND s.ended_at > runs.ended_at
                          ELSE s.status = 'complete' OR runs.ended_at IS NULL
                               OR s.ended_at > runs.ended_at END""")
        if "trainings" in staged:  # likewise a training, with its weights and steps, unless
            # it is complete here: this store's runs were evaluated with its own weights
            con.execute(
                """UPDATE trainings SET status = s.status, ended_at = s.ended_at,
                          weights = s.weights, error = s.error, steps = s.steps,
                          seconds = s.seconds, attempts = s.attempts
                   FROM incoming_trainings s
                   WHERE trainings.training_key = s.training_key AND s.ended_at IS NOT NULL
                     AND trainings.status <> 'complete'
                     AND (trainings.ended_at IS NULL OR s.ended_at > trainings.ended_at)""")
        if "tunings" in staged:  # a tuning that finished more trials there, or as many and is
            # complete there only, takes that state (its trials come below)
            con.execute(
                f"""UPDATE tunings SET {_assign(TUNING_PROGRESS_COLUMNS)}
                    FROM incoming_tunings s WHERE tunings.tuning_key = s.tuning_key
                      AND (coalesce(s.used_trials, 0) > coalesce(tunings.used_trials, 0)
                           OR (s.used_trials IS NOT DISTINCT FROM tunings.used_trials
                               AND s.status = 'complete' AND tunings.status <> 'complete'))""")
        if "tuning_trials" in staged:  # a trial unfinished here that the source finished
            ended = [c for c in schema_columns()["tuning_trials"]
                     if c not in (*ROW_KEYS["tuning_trials"], *TRIAL_START_COLUMNS)]
            con.execute(
                f"""UPDATE tuning_trials SET {_assign(ended)}
                    FROM incoming_tuning_trials s
                    WHERE tuning_trials.tuning_key = s.tuning_key AND tuning_trials.trial = s.trial
                      AND tuning_trials.state NOT IN {FINISHED} AND s.state IN {FINISHED}""")
        insert_missing("run_sources", f"""
            SELECT run_id, {_sql_string(name)} AS source,
                   (now() AT TIME ZONE 'UTC')::TIMESTAMP AS merged_at
            FROM incoming_runs""")
        for table in staged:
            insert_missing(table, f"SELECT * FROM incoming_{table}")
        fill_stated_columns(con)  # for runs of a source that predates them


def _assign(columns) -> str:
    """SQL: set each of ``columns`` to the source row ``s``'s value."""
    return ", ".join(f"{c} = s.{c}" for c in columns)


def _vet_file(file: Path, name: Path) -> None:
    """Check the store ``file`` as a source named ``name`` before the output is touched. It is
    attached to an empty database, never opened as the default one, where its macros would
    shadow the built-in functions the check calls."""
    if not file.is_file():
        raise StoreFileError(f"{name}: no such file")
    con = duckdb.connect()
    try:
        locks.attach_read_only(con, file, "vetted_source")
        Source(con, "vetted_source", name)
    finally:
        con.close()


#: How an export folder's files are read. DuckDB's CSV writer quotes an empty string ("") and
#: leaves NULL empty; the reader is told to keep the two apart, or an empty string (an in-process
#: plugin's version) would come back NULL and a store and its export would tell one row otherwise.
_EXPORT_READERS = {".parquet": "read_parquet({})",
                   ".csv": "read_csv({}, header = true, allow_quoted_nulls = false)"}


def _exported_tables(folder: Path) -> dict[str, Path]:
    """The table files of an export folder by table name; :class:`StoreFileError` naming the
    folder when a required table is missing or a table comes in two formats."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in _EXPORT_READERS and path.stem in (*schema.RESULT_TABLES, "run_sources"):
            if path.stem in found:
                raise StoreFileError(f"{folder}: {found[path.stem].name} and {path.name} both hold "
                                     f"table {path.stem}; keep one")
            found[path.stem] = path
    missing = [t for t in schema.REQUIRED_TABLES if t not in found]
    if missing:
        raise StoreFileError(f"{folder}: not an exported warpbench store (no "
                             f"{', '.join(t + '.parquet' for t in missing)} or .csv)")
    return found


def _store_from_export(folder: Path, path: Path) -> Path:
    """Load an export folder's tables into a new store at ``path``; the schema's types decide
    each column's, so a CSV export comes back as the Parquet one does."""
    store = StoreFile(path)
    store.initialise()
    with store._connect(read_only=False) as con:
        con.execute(RUN_SOURCES_TABLE)
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
