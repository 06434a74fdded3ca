"""Opening the DuckDB file, waiting while another process holds it.

DuckDB lets one process write or many read, never both at once, and says so with the same
``IOException`` it raises for a missing folder, a directory, a permission error or a file that is
not a database; only its message tells them apart, and messages change between releases. The lock
itself is an OS record lock on the file (``fcntl``, POSIX: write-locked by a writer, read-locked
by readers), so after a failed open we ask the OS whether another process holds a conflicting one:
if so we wait and retry, if not the file is unusable and we say so at once.

The probe opens and closes the file, which in POSIX drops every record lock *this* process holds
on it; it runs only after DuckDB failed to open the file, which DuckDB's own attempt already did.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from pathlib import Path

import duckdb

from warpbench.store.errors import StoreBusy, StoreFileError

LOCK_WAIT_SECONDS = 60.0
#: Failed opens in a row, with no conflicting lock seen, before the file is called unusable: the
#: other side may release its lock between DuckDB's attempt and the probe.
_UNEXPLAINED_FAILURES = 3
#: A DuckDB file's magic bytes and where they are (after the header's checksum).
_MAGIC, _MAGIC_AT = b"DUCK", 8


def connect(path: Path, read_only: bool, sealed: bool | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to ``path``, once no other process holds a conflicting lock; raises
    :class:`StoreBusy` after ``LOCK_WAIT_SECONDS`` of waiting, :class:`StoreFileError` naming
    the file when it cannot be opened for another reason.

    A read-only connection is ``sealed`` unless told otherwise: it cannot touch any file but the
    store, so a view stored in a file someone else wrote (a downloaded CI store, say) cannot
    read the reader's files (``read_text('~/.ssh/...')``)."""
    sealed = read_only if sealed is None else sealed
    config = {"enable_external_access": False} if sealed else {}
    return _retrying(path, read_only,
                     lambda: duckdb.connect(str(path), read_only=read_only, config=config))


def attach_read_only(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> None:
    """Attach the store ``path`` read-only to ``con`` as ``alias``, waiting as :func:`connect`
    does. An attached file's macros never shadow the connection's built-in functions, as they
    do in a file opened as the default database."""
    literal = "'" + str(Path(path).resolve()).replace("'", "''") + "'"
    _retrying(path, True, lambda: con.execute(f"ATTACH {literal} AS {alias} (READ_ONLY)"))


def _retrying(path: Path, read_only: bool, open_file):
    """``open_file()``, retried while another process holds a conflicting lock on ``path``."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    unexplained = 0
    while True:
        try:
            return open_file()
        except duckdb.IOException as exc:
            if not held_by_another_process(path, exclusive=not read_only):
                unexplained += 1
                if unexplained == _UNEXPLAINED_FAILURES:
                    raise _unusable(path, exc) from None
                continue
            unexplained = 0
            if time.monotonic() > deadline:
                raise StoreBusy(f"{path} stayed locked by another process: {exc}") from None
        except duckdb.Error as exc:  # not an I/O error: a damaged file, say
            raise _unusable(path, exc) from None
        time.sleep(random.uniform(0.005, 0.05))  # jitter: no lock-step with the other side


def held_by_another_process(path: Path, exclusive: bool) -> bool:
    """Whether another process holds a lock on ``path`` that conflicts with the one an open for
    writing (``exclusive``) or for reading would take. False when the file cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR if exclusive else os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:  # EAGAIN or EACCES: someone else's lock is in the way
        return True
    finally:
        os.close(fd)  # also releases the probe's own lock
    return False


def _unusable(path: Path, exc: duckdb.Error) -> StoreFileError:
    """The error for a file DuckDB cannot open: one that is not a DuckDB file at all (by its
    magic bytes), or one it cannot open or create (a directory, a permission, damage)."""
    try:
        with open(path, "rb") as file:
            header = file.read(_MAGIC_AT + len(_MAGIC))
    except OSError:  # missing, a directory, not readable
        header = None
    if header is not None and header[_MAGIC_AT:] != _MAGIC:
        return StoreFileError(f"{path}: not a DuckDB file ({exc})")
    return StoreFileError(f"{path}: cannot be opened ({exc})")
