"""What the store raises for a user to read: a file it cannot use, one kept locked or leased too
long, or a row it holds already."""

from __future__ import annotations


class StoreBusy(RuntimeError):
    """Another process kept the DuckDB file locked, or held the store's writer lease, for longer
    than we were willing to wait."""


class AlreadyStored(StoreBusy):
    """A row whose key the store holds already: another process wrote the same result first."""


class StoreFileError(ValueError):
    """A path given as a store that is missing, not a DuckDB file, not a warpbench store, or one
    written by a newer warpbench."""
