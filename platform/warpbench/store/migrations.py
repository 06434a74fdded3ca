"""Bringing an older store up to this version's schema in place, and refusing a newer one.

A store records its schema version in ``meta`` (key ``schema_version``); a file with the tables
but no recorded version is version 1. This code's first write to an older file upgrades it, by
every step from its version to ``SCHEMA_VERSION`` in order, in the transaction of that write (so
an upgrade is whole or not at all), and records the new version. A file of a newer version is
refused by reads and writes alike: this code cannot know what the newer columns mean, and a write
would leave the file claiming a version whose rules it did not follow.

Reads never upgrade: they see an older file as it stands, and state what a later step would
compute (the ``in_domain`` of trained runs stored without it) the same way. A read has to work
where a write cannot or should not happen: the leaderboard app reads while a run holds the write
lock, and a reader may not be allowed to change the file at all (a downloaded CI artifact, a
read-only share, another user's results). The next write by this code upgrades it.

A step that adds a table creates it as :mod:`warpbench.store.schema` declares it today, so a
later step that changes such a table must be idempotent (``ADD COLUMN IF NOT EXISTS``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from warpbench.compatibility import in_domain
from warpbench.store import schema
from warpbench.store.errors import StoreFileError

_logger = logging.getLogger("warpbench.store")


def stored_version(con, tables: set[str]) -> int | None:
    """The file's schema version (``tables``: its table names); None while it has no runs table,
    so is no store yet."""
    if "runs" not in tables:
        return None
    if "meta" not in tables:
        return 1
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 1


def refuse_newer(path: Path, version: int | None) -> None:
    """Raise :class:`StoreFileError`, naming the file and both versions, for a newer store."""
    if version is not None and version > schema.SCHEMA_VERSION:
        raise StoreFileError(
            f"{path}: written by a newer warpbench (store schema version {version}; this "
            f"warpbench knows versions up to {schema.SCHEMA_VERSION}): upgrade warpbench to use it")


def prepare_for_writing(con, path: Path) -> None:
    """Create the schema in a file that has none, upgrade an older one, refuse a newer one."""
    version = stored_version(con, schema.table_names(con))
    refuse_newer(path, version)
    if version == schema.SCHEMA_VERSION:
        return
    if version is None:
        schema.create(con)
    else:
        con.execute(schema.TABLES["meta"])  # the first files had none
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            STEPS[target](con)
        con.execute(schema.VIEWS)
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                [str(schema.SCHEMA_VERSION)])


def _add_trainings(con) -> None:
    """Version 2: trainings and their loss curves; a run names its training and says whether it
    was tested on its training dataset."""
    for table in schema.TRAINING_TABLES:
        con.execute(schema.TABLES[table])
    con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS in_domain BOOLEAN")
    con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS training_key VARCHAR")


def fill_in_domain(con) -> None:
    """Version 3: every trained run's ``in_domain`` is stated, so readers take it from the store
    instead of working it out. Also applied to rows that come from elsewhere (a bulk append, a
    merged store) and may lack it."""
    missing = con.execute(
        "SELECT DISTINCT train_dataset, dataset FROM runs "
        "WHERE train_dataset IS NOT NULL AND in_domain IS NULL").fetchall()
    for train_dataset, dataset in missing:
        con.execute(
            "UPDATE runs SET in_domain = ? "
            "WHERE train_dataset = ? AND dataset = ? AND in_domain IS NULL",
            [in_domain(train_dataset, dataset), train_dataset, dataset])


#: Where an older store has several rows of a key, version 4 keeps the first in this order: the
#: first stored of a pair and of its labels (one transaction stored a pair with its labels, and
#: one writer's transactions followed another's), a dataset's newest description (the one read).
_KEEP_FIRST_BY = {"pairs": "rowid", "labels": "rowid", "datasets": "computed_at DESC, rowid"}


def _unique_keys(con) -> None:
    """Version 4: pairs, labels and datasets have their primary keys (``schema.KEYS``), so a
    duplicate can never be stored. Each table is rebuilt as the schema declares it, in its row
    order, keeping one row per key (``_KEEP_FIRST_BY``: two runs that wrote one store at once left
    duplicates), and says how many rows it dropped."""
    dropped = {}
    for table, order in _KEEP_FIRST_BY.items():
        con.execute(f"ALTER TABLE {table} RENAME TO {table}_before_keys")
        con.execute(schema.TABLES[table])
        before = con.execute(f"SELECT count(*) FROM {table}_before_keys").fetchone()[0]
        kept = con.execute(
            f"""INSERT INTO {table} BY NAME SELECT * FROM {table}_before_keys
                QUALIFY row_number() OVER (PARTITION BY {', '.join(schema.KEYS[table])}
                                           ORDER BY {order}) = 1
                ORDER BY rowid""").fetchone()[0]
        con.execute(f"DROP TABLE {table}_before_keys")
        dropped[table] = before - kept
    if any(dropped.values()):
        (path,) = con.execute("SELECT path FROM duckdb_databases() "
                              "WHERE database_name = current_database()").fetchone()
        counts = ", ".join(f"{count} {table} rows" for table, count in dropped.items())
        _logger.warning(f"{path}: upgraded to schema version 4, which stores each result once: "
                        f"dropped the duplicates of older writes ({counts})")


def _add_tunings(con) -> None:
    """Version 5: tunings, their trials and the validation pairs each trial registered
    (:mod:`warpbench.tuning`); the view ``tuned_presets`` comes with the views."""
    for table in schema.TUNING_TABLES:
        con.execute(schema.TABLES[table])


def fill_same_labels(con) -> None:
    """Version 6: a trained run says whether it was scored on the label protocol its network was
    trained on. Before version 6 a network was evaluated only where the label names agreed, so a
    trained run stored without it was. Also applied to rows that come from elsewhere."""
    con.execute("UPDATE runs SET same_labels = true "
                "WHERE train_dataset IS NOT NULL AND same_labels IS NULL")


def fill_stated_columns(con) -> None:
    """Every run column the store states itself for rows stored without it (a bulk append, a
    merged source of an older version): ``in_domain`` and ``same_labels``."""
    fill_in_domain(con)
    fill_same_labels(con)


def _add_run_conditions(con) -> None:
    """Version 6: a run records whether its network is scored on the label protocol it was
    trained on (``same_labels``) and whether its dataset declared itself affinely pre-aligned
    (``pre_aligned``, unknown for older runs)."""
    con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS same_labels BOOLEAN")
    con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS pre_aligned BOOLEAN")
    fill_same_labels(con)


#: The step that brings a store to each version from the one before; released steps never change.
STEPS = {2: _add_trainings, 3: fill_in_domain, 4: _unique_keys, 5: _add_tunings,
         6: _add_run_conditions}
