"""Merging stores and exporting tables (``warpbench merge``, ``warpbench export``).

A run's rows share its run_id, which is a random UUID made when the run began, so the same
run_id in two files is the same run (a copy, or a later state of it), never a clash. A source
older than this code's schema is read as it stands; a newer one is refused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from warpbench.store import schema
from warpbench.store.connection import StoreFile, transaction
from warpbench.store.errors import StoreFileError
from warpbench.store.migrations import fill_in_domain

#: The columns that make two rows the same row.
ROW_KEYS = {
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
            present = schema.table_names(con)
            tables = [t for t in (*schema.REQUIRED_TABLES, "run_sources") if t in present]
            trained = "trainings" in present and con.execute(
                "SELECT count(*) FROM trainings").fetchone()[0]
            if trained:
                tables += schema.TRAINING_TABLES
            for table in tables:
                path = folder / f"{table}.{fmt}"
                con.execute(f"COPY {table} TO {_sql_string(path)} ({options})")
                written.append(path)
        return written

    def merge_from(self, sources) -> dict[str, int]:
        """Add to this store every row of the ``sources`` that it lacks, and return how many rows
        each table gained. A source is another store, or a folder of tables that
        :meth:`export_tables` wrote (so results kept as files in a repository resume a run on a
        machine that never had its store). Rows are the same when their keys (``ROW_KEYS``)
        match, so merging a file twice, or two files holding one run, adds each row once; a run
        found in several files keeps the row of its latest end (its most advanced state). Every
        run's provenance columns are kept as they were; ``run_sources`` also records which file
        each run was merged from (and keeps the sources' own records)."""
        sources = [Path(s) for s in sources]
        for source in sources:
            if not source.is_dir():  # a folder is checked as it is read, below
                type(self)(source).check_file()
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
        added = dict.fromkeys([*schema.REQUIRED_TABLES, "run_sources", *schema.TRAINING_TABLES], 0)
        with self._connect(read_only=False) as con:
            con.execute(_RUN_SOURCES_SCHEMA)
            for index, (source, file) in enumerate(sources):
                alias = f"merge_source_{index}"
                con.execute(f"ATTACH {_sql_string(file.resolve())} AS {alias} (READ_ONLY)")
                try:
                    with transaction(con):
                        self._merge_one(con, alias, str(source.resolve()), added)
                except duckdb.Error as exc:
                    raise StoreFileError(f"{source}: cannot be merged: {exc}") from None
                finally:
                    con.execute(f"DETACH {alias}")
        return added

    def _merge_one(self, con, alias: str, source: str, added: dict[str, int]) -> None:
        def insert_missing(table: str, select: str) -> None:
            same = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in ROW_KEYS[table])
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
        source_tables = schema.table_names(con, alias)
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
        for table in schema.RESULT_TABLES:
            if table in source_tables:  # a version-1 store has no training tables
                insert_missing(table, f"SELECT * FROM {alias}.{table}")
        fill_in_domain(con)  # for runs of a source that predates it


_EXPORT_READERS = {".parquet": "read_parquet({})", ".csv": "read_csv({}, header = true)"}


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
        con.execute(_RUN_SOURCES_SCHEMA)
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
