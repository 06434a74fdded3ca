"""A run the output already holds that a source tells differently: a conflict, which merge refuses.

A run's id is a random UUID, so the same id in two stores is the same run, and an honest copy of
it differs only by having got further: a later status and end, pairs it had not reached, and new
attempts of pairs that had failed (a resumed run retries those). Anything else changes scores the
output already ranks: another provenance, a pair or label row of the same key with other values, a
newer attempt of a pair already scored ok, a pair that a complete run never had. The source's rows
are read from the ``incoming_<table>`` tables the merge staged them in.
"""

from __future__ import annotations

from warpbench.store.sources import ROW_KEYS, schema_columns

#: Run columns that a later state of the same run changes.
_PROGRESS_COLUMNS = ("status", "ended_at")
#: Run columns the output states itself for runs stored without them
#: (:func:`warpbench.store.migrations.fill_in_domain`): compared only where the source has one.
_FILLED_IN_COLUMNS = ("in_domain",)


#: Training columns that the training key is a hash of (a preset name is not: presets that
#: differ only in test-time keys share a training): the same key with other values is forged.
_TRAINING_IDENTITY = ("method", "method_version", "train_dataset", "train_dataset_fingerprint",
                      "seed")


def first_conflict(con, staged: list[str]) -> str | None:
    """What the first run or training in conflict is and what differs, in one phrase; None when
    none is. ``staged`` names the tables the source has."""
    for find in (_provenance, _pair_values, _new_pairs, _label_values):
        found = find(con)
        if found:
            run_id, what = found
            method, dataset = con.execute(
                "SELECT method, dataset FROM runs WHERE run_id = ?", [run_id]).fetchone()
            return f"run {run_id} ({method} on {dataset}): {what}"
    return _training_identity(con) if "trainings" in staged else None


def _training_identity(con) -> str | None:
    """A training the output holds whose source row names another method, version, dataset or
    seed under the same key (a training finished on two machines is no conflict: the output's
    weights are the ones its runs were evaluated with, and are kept)."""
    row = con.execute(
        f"SELECT training_key, t.method, t.train_dataset FROM incoming_trainings s "
        f"JOIN trainings t USING (training_key) WHERE {_differs(list(_TRAINING_IDENTITY))} "
        "LIMIT 1").fetchone()
    if not row:
        return None
    key, method, dataset = row
    return (f"training {key} ({method} on {dataset}): its row differs: "
            + _difference(con, "trainings", (key,), list(_TRAINING_IDENTITY)))


def _provenance(con):
    columns = [c for c in schema_columns()["runs"] if c not in ("run_id", *_PROGRESS_COLUMNS)]
    row = con.execute(
        f"SELECT run_id FROM incoming_runs s JOIN runs t USING (run_id) "
        f"WHERE {_differs(columns)} LIMIT 1").fetchone()
    return row and (row[0], "its row differs: " + _difference(con, "runs", row, columns))


def _pair_values(con):
    columns = _value_columns("pairs")
    row = con.execute(
        f"SELECT {_keys('s', 'pairs')} FROM incoming_pairs s JOIN pairs t "
        f"USING ({', '.join(ROW_KEYS['pairs'])}) WHERE {_differs(columns)} LIMIT 1").fetchone()
    return row and (row[0], f"{_pair(*row[1:])} differs: "
                    + _difference(con, "pairs", row, columns))


def _new_pairs(con):
    """A source pair row that is not in the output, for a run that is, and is no progress."""
    row = con.execute(
        """WITH last AS (SELECT run_id, fixed, moving, max(attempt) AS attempt,
                                arg_max(status, attempt) AS status
                         FROM pairs GROUP BY ALL)
           SELECT s.run_id, s.fixed, s.moving, s.attempt, last.attempt, last.status, r.status
           FROM incoming_pairs s JOIN runs r USING (run_id)
                LEFT JOIN last USING (run_id, fixed, moving)
           WHERE NOT EXISTS (SELECT 1 FROM pairs t WHERE t.run_id = s.run_id AND
                   t.fixed = s.fixed AND t.moving = s.moving AND t.attempt = s.attempt)
             AND CASE WHEN last.attempt IS NULL THEN r.status = 'complete'
                      ELSE s.attempt < last.attempt OR last.status = 'ok' END
           ORDER BY ALL LIMIT 1""").fetchone()
    if not row:
        return None
    run_id, fixed, moving, attempt, last, last_status, _ = row
    pair = f"pair {fixed} <- {moving}"
    if last is None:
        return run_id, f"{pair} is in the source but not in this complete run in the output"
    if last_status == "ok":
        return run_id, (f"{pair} has attempt {attempt} in the source, but the output's attempt "
                        f"{last} already scored it ok")
    return run_id, f"{pair} attempt {attempt} is in the source, but the output has attempt {last}"


def _label_values(con):
    """A label row of a pair the output holds that the source tells otherwise: another value, a
    label the output's pair lacks, or one of its labels that the source's same pair lacks."""
    keys = ", ".join(ROW_KEYS["pairs"])
    row = con.execute(
        f"""WITH known AS (SELECT DISTINCT {keys} FROM pairs),
                 compared AS (SELECT {keys} FROM incoming_pairs INTERSECT SELECT * FROM known)
            (SELECT * FROM incoming_labels SEMI JOIN known USING ({keys})
             EXCEPT SELECT * FROM labels)
            UNION ALL
            (SELECT * FROM labels SEMI JOIN compared USING ({keys})
             EXCEPT SELECT * FROM incoming_labels)
            ORDER BY ALL LIMIT 1""").fetchone()
    if not row:
        return None
    columns = _value_columns("labels")
    key = row[:len(ROW_KEYS["labels"])]
    return key[0], (f"label {key[-1]} of {_pair(*key[1:-1])} differs: "
                    + _difference(con, "labels", key, columns))


def _value_columns(table: str) -> list[str]:
    return [c for c in schema_columns()[table] if c not in ROW_KEYS[table]]


def _keys(alias: str, table: str) -> str:
    return ", ".join(f"{alias}.{k}" for k in ROW_KEYS[table])


def _differs(columns: list[str]) -> str:
    """SQL: the source row ``s`` and the output row ``t`` differ in one of ``columns``."""
    return " OR ".join(
        f"(s.{c} IS NOT NULL AND s.{c} IS DISTINCT FROM t.{c})" if c in _FILLED_IN_COLUMNS
        else f"s.{c} IS DISTINCT FROM t.{c}" for c in columns)


def _pair(fixed: str, moving: str, attempt: int) -> str:
    return f"pair {fixed} <- {moving} attempt {attempt}"


def _difference(con, table: str, key, columns: list[str]) -> str:
    """Each of ``columns`` whose value differs between the output's and the source's row of
    ``key``, with both values; the row missing on one side when one is."""
    where = " AND ".join(f"{k} = ?" for k in ROW_KEYS[table])
    select = f"SELECT {', '.join(columns)} FROM {{}} WHERE {where}"
    ours = con.execute(select.format(table), list(key)).fetchone()
    theirs = con.execute(select.format(f"incoming_{table}"), list(key)).fetchone()
    if ours is None or theirs is None:
        return f"only in the {'source' if ours is None else 'output'}"
    return ", ".join(f"{c} {a!r} in the output, {b!r} in the source"
                     for c, a, b in zip(columns, ours, theirs)
                     if a != b and not (b is None and c in _FILLED_IN_COLUMNS))
