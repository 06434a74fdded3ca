"""One writer at a time: the lease a process holds on a store while it writes.

DuckDB locks the file only while a connection is open, and the store opens one per call (so the
leaderboard app reads while a run writes): between two calls another process may write, and two
``warpbench run`` on one store both resumed the same run and both stored its pairs. So a writer
holds the lease for as long as its work lasts (a whole run: :meth:`StoreFile.writer_lease`), and
every write holds it at least for its own transaction. While one process holds it, another's
writes wait, up to ``LEASE_WAIT_SECONDS``, saying whom they wait for, and are then refused with
:class:`StoreBusy` naming the store and its holder. Reads take no lease.

The lease is a lock file beside the store (``<store>.lock``), ``flock``-ed by its holder and
naming it (host, pid, since when, what for), not a row in the store: the OS drops a ``flock``
when its process ends, however it ends (``kill -9`` included), so a crashed holder never blocks,
and no expiry has to be guessed (a training may write nothing for an hour) or kept fresh by a
heartbeat competing with readers for the store's own lock; a row could tell a dead holder only by
its pid, and only on its own host. A copy of the store carries no lease either. A lock file that
is free but still names a holder was left by one that died: it is taken over, saying so. Release
empties the file and never removes it: removing it would let two writers lock two different files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from warpbench.store.errors import StoreBusy, StoreFileError

LEASE_WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.1
_logger = logging.getLogger("warpbench.store")
#: The stores whose lease this process holds: a write inside a held lease takes it again for free.
_held: set[Path] = set()


def lock_path(store: Path) -> Path:
    """The lock file of the store at ``store``: beside it, named after it."""
    return store.with_name(store.name + ".lock")


@contextmanager
def hold(store: Path, purpose: str):
    """Hold the writer lease of ``store`` for the block (``purpose`` says what for, to whoever
    waits): at once when it is free or already this process's; else after its holder lets go,
    waiting at most ``LEASE_WAIT_SECONDS``."""
    key = store.resolve()
    if key in _held:
        yield
        return
    lock = lock_path(key)  # the resolved path: two names of one store share one lock
    try:
        store.parent.mkdir(parents=True, exist_ok=True)  # a new store's folder
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreFileError(f"{store}: cannot create its lock file {lock} ({exc})") from None
    try:
        _acquire(fd, store)
        _held.add(key)
        try:
            _write_holder(fd, purpose)
            yield
        finally:
            _held.discard(key)
            os.ftruncate(fd, 0)  # a free lock file that names nobody: released, not crashed
    finally:
        os.close(fd)  # drops the flock


def _acquire(fd: int, store: Path) -> None:
    """Lock ``fd``, waiting for another holder at most ``LEASE_WAIT_SECONDS``."""
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
        except OSError as exc:  # a file system without locks
            raise StoreFileError(f"{store}: cannot lock {lock_path(store)} ({exc})") from None
        if time.monotonic() >= deadline:
            raise StoreBusy(f"{store}: being written by {holder}; waited "
                            f"{LEASE_WAIT_SECONDS:g} s for it: try again once it has finished")
        if not said:
            _logger.warning(f"{store}: waiting up to {LEASE_WAIT_SECONDS:g} s for {holder}, "
                            "which is writing it")
            said = True
        time.sleep(_POLL_SECONDS)
    left = _read_holder(fd)
    if left is not None:
        _logger.warning(f"{store}: taking over the writer lease of {_describe(left)}, "
                        "which ended without releasing it")


def _write_holder(fd: int, purpose: str) -> None:
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": since,
              "purpose": purpose}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _read_holder(fd: int) -> dict | None:
    """Who the lock file names: None when it is empty, {} when it cannot be read (its holder
    may be writing it this very moment)."""
    text = os.pread(fd, 4096, 0)
    if not text:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict | None) -> str:
    try:
        return (f"pid {holder['pid']} on host {holder['host']} since {holder['since']} "
                f"({holder['purpose']})")
    except (KeyError, TypeError):
        return "another process"
