"""What ``warpbench merge`` reads of a store it did not write: base tables, checked against this
version's schema, and only their columns; nothing of the source is executed.

A DuckDB file can hold views, macros and generated columns, and reading one runs what it says: a
``datasets`` that is a view over ``read_text('/etc/hostname')`` would copy a file of the merging
machine into the output. So a source is known by its catalog alone. Every name warpbench gives a
table must be a base table there, whose columns have the schema's names and types (an older store
may lack a column the schema lets be NULL; it reads as NULL), and only those columns of those
tables are read; any other object is ignored. Its values are then checked as this code would have
stored them: nothing NULL that the schema requires, a mean Dice on every ok pair, one row per run,
pair attempt, label, dataset, training and its curve point, tuning, trial and trial's pair.
"""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb

from warpbench.store import schema
from warpbench.store.errors import StoreFileError
from warpbench.store.migrations import refuse_newer

#: The table a merge adds, recording where each run came from (not in ``schema.TABLES``: a store
#: nothing was merged into has none).
RUN_SOURCES_TABLE = """CREATE TABLE IF NOT EXISTS run_sources (
    run_id VARCHAR NOT NULL, source VARCHAR NOT NULL, merged_at TIMESTAMP)"""

#: The columns that make two rows the same row.
ROW_KEYS = {
    "trainings": ("training_key",),
    "training_curves": ("training_key", "step", "split", "name"),
    "runs": ("run_id",),
    "pairs": ("run_id", "fixed", "moving", "attempt"),
    "labels": ("run_id", "fixed", "moving", "attempt", "label"),
    "datasets": ("dataset", "fingerprint"),
    **{table: schema.KEYS[table] for table in schema.TUNING_TABLES},
    "run_sources": ("run_id", "source"),
}
#: Tables whose key a source may hold once only: a second row of a pair would be a second score,
#: a second row of a training a second set of weights, of a tuning's trial a second outcome of it
#: (and the output stores each key once).
_UNIQUE_TABLES = ("runs", "pairs", "labels", "datasets", "trainings", "training_curves",
                  *schema.TUNING_TABLES)


@functools.cache
def schema_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    """``{table: {column: (type, nullable)}}`` of every table this version creates, in the file's
    column order, as DuckDB reports them for the schema of :mod:`warpbench.store.schema`."""
    con = duckdb.connect()
    try:
        schema.create(con)
        con.execute(RUN_SOURCES_TABLE)
        rows = con.execute(
            "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable "
            "FROM duckdb_columns() c SEMI JOIN duckdb_tables() t USING (table_oid) "
            "ORDER BY c.table_name, c.column_index").fetchall()
    finally:
        con.close()
    columns: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, data_type, nullable in rows:
        columns.setdefault(table, {})[column] = (data_type, nullable)
    return columns


def quote(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class Source:
    """A store seen as ``catalog`` of the connection ``con``, vetted when made; ``name`` is what
    the user gave (the file, or the export folder it was loaded from) and what every error names.
    Raises :class:`StoreFileError` for anything a warpbench store would not hold."""

    def __init__(self, con, catalog: str, name: Path):
        self.con, self.catalog, self.name = con, catalog, name
        stored = self._stored_columns()
        #: The warpbench tables the source has, each with the columns it stores.
        self.columns = {table: set(columns) for table, columns in stored.items()}
        if "meta" in stored:  # its version first: a newer store's columns are not ours
            self._check_columns("meta", stored["meta"])
        refuse_newer(name, self._version())
        for table, columns in stored.items():
            self._check_columns(table, columns)
        self._check_values()

    def has(self, table: str) -> bool:
        return table in self.columns

    def select(self, table: str) -> str:
        """A query of the table's rows in this schema's columns: the stored ones, and NULL for
        one an older store lacks."""
        items = [quote(column) if column in self.columns[table]
                 else f"CAST(NULL AS {data_type}) AS {quote(column)}"
                 for column, (data_type, _) in schema_columns()[table].items()]
        return f"SELECT {', '.join(items)} FROM {quote(self.catalog)}.main.{quote(table)}"

    def _error(self, message: str) -> StoreFileError:
        return StoreFileError(f"{self.name}: {message}")

    def _stored_columns(self) -> dict[str, dict[str, tuple[str, bool]]]:
        """``{table: {column: (type, generated)}}`` of the source's warpbench tables, from its
        catalog (which lists a view without reading it)."""
        kinds = dict(self.con.execute(
            "SELECT lower(table_name), table_type FROM information_schema.tables "
            "WHERE table_catalog = ? AND table_schema = 'main'", [self.catalog]).fetchall())
        known = schema_columns()
        for table, kind in kinds.items():
            if table in known and kind != "BASE TABLE":
                raise self._error(f"not a warpbench store ({table} is a {kind.lower()}, "
                                  "not a table); nothing of it was read")
        missing = [t for t in schema.REQUIRED_TABLES if t not in kinds]
        if missing:
            raise self._error(f"not a warpbench store (no table {', '.join(missing)})")
        stored: dict[str, dict[str, tuple[str, bool]]] = {}
        for table, column, data_type, generated in self.con.execute(
                "SELECT lower(table_name), lower(column_name), data_type, is_generated "
                "FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main'",
                [self.catalog]).fetchall():
            if table in known and kinds[table] == "BASE TABLE":
                stored.setdefault(table, {})[column] = (data_type, generated)
        return stored

    def _check_columns(self, table: str, stored: dict[str, tuple[str, bool]]) -> None:
        expected = schema_columns()[table]
        for column, (data_type, generated) in stored.items():
            if column not in expected:
                raise self._error(f"table {table} has a column {column!r}, which a warpbench "
                                  "store does not have")
            if generated:
                raise self._error(f"column {table}.{column} is computed when read (GENERATED), "
                                  "not stored")
            if data_type != expected[column][0]:
                raise self._error(f"column {table}.{column} is {data_type}, not "
                                  f"{expected[column][0]}")
        for column, (_, nullable) in expected.items():
            if column not in stored and not nullable:
                raise self._error(f"table {table} has no column {column}")

    def _version(self) -> int | None:
        """The schema version the source records (1 when it records none)."""
        if "meta" not in self.columns:
            return 1
        row = self.con.execute(
            f"SELECT value FROM ({self.select('meta')}) WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 1
        except ValueError:
            raise self._error(f"its schema version {row[0]!r} is not a number") from None

    def _check_values(self) -> None:
        """Refuse values this code never stores: NULL where the schema forbids it, an ok pair
        without its mean Dice, or two rows of one run, pair attempt or label."""
        for table in self.columns:
            for column, (_, nullable) in schema_columns()[table].items():
                if not nullable:
                    self._refuse_rows(table, f"{quote(column)} IS NULL", f"have no {column}")
        lacks = "" if "mean_dice" in self.columns["pairs"] else " (the table has no such column)"
        self._refuse_rows("pairs", "status = 'ok' AND mean_dice IS NULL",
                          f"are ok but have no mean_dice{lacks}")
        # version 1 has no trainings, a version before 5 no tunings
        for table in (t for t in _UNIQUE_TABLES if self.has(t)):
            keys = ", ".join(ROW_KEYS[table])
            row = self.con.execute(
                f"SELECT {keys}, count(*) FROM ({self.select(table)}) GROUP BY ALL "
                "HAVING count(*) > 1 LIMIT 1").fetchone()
            if row:
                where = ", ".join(f"{k} {v!r}" for k, v in zip(ROW_KEYS[table], row))
                raise self._error(f"table {table} has {row[-1]} rows for {where}; a warpbench "
                                  "store has one")

    def _refuse_rows(self, table: str, condition: str, what: str) -> None:
        """Raise, counting them and naming the first, when rows of ``table`` meet ``condition``."""
        key = ROW_KEYS.get(table, ())
        first = ", ".join(key) or "1"
        row = self.con.execute(
            f"SELECT count(*) OVER (), {first} FROM ({self.select(table)}) "
            f"WHERE {condition} LIMIT 1").fetchone()
        if row:
            example = ", ".join(f"{k} {v!r}" for k, v in zip(key, row[1:]))
            raise self._error(f"{row[0]} rows of table {table} {what}"
                              + (f" (the first: {example})" if example else ""))
