"""What the store raises for a user to read: a file it cannot use, or one kept locked too long."""

from __future__ import annotations


class StoreBusy(RuntimeError):
    """Another process kept the DuckDB file locked for longer than we were willing to wait."""


class StoreFileError(ValueError):
    """A path given as a store that is missing, not a DuckDB file, not a warpbench store, or one
    written by a newer warpbench."""
