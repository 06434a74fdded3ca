"""A store file: opened per call, one transaction per write, reads that never create or change it.

DuckDB lets one process write or many read, never both at once. So no connection is held open:
every write and every read opens the file, does its work in one transaction and closes it,
waiting while another process holds the lock (:mod:`warpbench.store.locks`). That lets the
leaderboard app read while a run is writing. Writes also hold the writer lease
(:mod:`warpbench.store.lease`), so that one process at a time writes between those calls.
"""

from __future__ import annotations

from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import pandas as pd

from warpbench.store import lease, locks, migrations, schema
from warpbench.store.errors import StoreFileError


class StoreFile:
    """One DuckDB results file. Cheap to construct; every call opens and closes the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._schema_ready = False  # set by the first write through this instance

    @contextmanager
    def _connect(self, read_only: bool, sealed: bool | None = None):
        """A connection to the file (read-only ones sealed from other files:
        :func:`warpbench.store.locks.connect`)."""
        con = locks.connect(self.path, read_only, sealed)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self):
        """A connection inside one transaction, holding the writer lease, on a file whose schema
        is this version's: the first write through this instance creates it, or upgrades an
        older file in the same transaction (:mod:`warpbench.store.migrations`)."""
        with lease.hold(self.path, "one write"), self._connect(read_only=False) as con:
            with transaction(con):
                if not self._schema_ready:
                    migrations.prepare_for_writing(con, self.path)
                yield con
            self._schema_ready = True

    def writer_lease(self, purpose: str):
        """A context manager holding this store's writer lease for the block: no other process
        writes the store meanwhile (its writes wait, then are refused with :class:`StoreBusy`);
        ``purpose`` tells them what holds it (``"warpbench run"``). Waits for another holder at
        most ``lease.LEASE_WAIT_SECONDS``, then raises :class:`StoreBusy` naming it."""
        return lease.hold(self.path, purpose)

    def _read(self, sql: str, params=(), columns: list[str] | None = None,
              table: str = "runs") -> pd.DataFrame:
        """Run a query; empty when the file or the ``table`` it needs does not exist yet. An older
        file is read as it stands (reads never upgrade; see :mod:`warpbench.store.migrations`)."""
        if not self.path.exists():
            return pd.DataFrame(columns=columns or [])
        with self._connect(read_only=True) as con:
            if table not in self._readable_tables(con):
                return pd.DataFrame(columns=columns or [])
            try:
                return con.execute(sql, params).df()
            except duckdb.PermissionException as exc:  # a sealed read: a crafted view or macro
                raise StoreFileError(f"{self.path}: refused, a view or macro stored in it reads "
                                     f"other files ({exc})") from None

    def _readable_tables(self, con) -> set[str]:
        """The file's tables and views; :class:`StoreFileError` for a store of a newer schema."""
        tables = schema.table_names(con)
        migrations.refuse_newer(self.path, migrations.stored_version(con, tables))
        return tables

    def initialise(self) -> None:
        """Create the tables and views if they are missing, or upgrade an older file
        (idempotent)."""
        with self._write():
            pass


@contextmanager
def transaction(con):
    """Commit what the block did, or roll all of it back when it raises. A COMMIT that fails
    (a full disk) has already ended the transaction; the error raised is then the COMMIT's, not
    the ROLLBACK's "no transaction is active"."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        raise
