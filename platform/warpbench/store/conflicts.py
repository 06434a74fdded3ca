"""A run the output already holds that a source tells differently: a conflict, which merge refuses.

A run's id is a random UUID, so the same id in two stores is the same run, and an honest copy of
it differs only by having got further: a later status and end, pairs it had not reached, and new
attempts of pairs that had failed (a resumed run retries those). Anything else changes scores the
output already ranks: another provenance, a pair or label row of the same key with other values, a
newer attempt of a pair already scored ok, a pair that a complete run never had. The source's rows
are read from the ``incoming_<table>`` tables the merge staged them in.

A tuning's key is a hash of what decides its trials (:func:`warpbench.tuning.tuning_key`), so the
same key in two stores is the same tuning, and an honest copy of it differs in the same way: it
went on further (more finished trials, a larger budget, a later state), finished a trial the
output holds unfinished, or has pairs of a trial the output has not finished. Anything else is a
conflict: another provenance, other findings after as many trials, a finished trial or a trial's
pair told otherwise, a pair that a trial finished in the output never had (or lacks in the source).
"""

from __future__ import annotations

from warpbench.store.schema import TUNING_TABLES
from warpbench.store.sources import ROW_KEYS, schema_columns
from warpbench.store.tuning import FINISHED_STATES

#: Run columns that a later state of the same run changes.
_PROGRESS_COLUMNS = ("status", "ended_at")
#: Run columns the output states itself for runs stored without them
#: (:func:`warpbench.store.migrations.fill_stated_columns`): compared only where the source has one.
_FILLED_IN_COLUMNS = ("in_domain", "same_labels")


#: Training columns that the training key is a hash of (a preset name is not: presets that
#: differ only in test-time keys share a training): the same key with other values is forged.
_TRAINING_IDENTITY = ("method", "method_version", "train_dataset", "train_dataset_fingerprint",
                      "seed")


#: Tuning columns that a later state of the same tuning changes: the budget asked, what it has
#: used and found so far, and its state.
TUNING_PROGRESS_COLUMNS = ("budget_trials", "budget_seconds", "used_trials", "used_seconds",
                           "best_trial", "best_value", "best_params", "status", "ended_at")
#: What a tuning has found after a number of finished trials: the same in every honest copy that
#: finished as many.
_TUNING_FINDINGS = ("used_seconds", "best_trial", "best_value", "best_params")
#: A trial's columns set when it starts, kept while it runs, is interrupted and resumed; the
#: others are set when it ends (:meth:`warpbench.store.tuning.Tunings.end_trial`).
TRIAL_START_COLUMNS = ("sampled", "params", "started_at")
#: SQL: the trial states of a trial that has ended.
FINISHED = "(" + ", ".join(f"'{state}'" for state in FINISHED_STATES) + ")"


def first_conflict(con, staged: list[str]) -> str | None:
    """What the first run, training or tuning in conflict is and what differs, in one phrase;
    None when none is. ``staged`` names the tables the source has."""
    for find in (_provenance, _pair_values, _new_pairs, _label_values):
        found = find(con)
        if found:
            run_id, what = found
            method, dataset = con.execute(
                "SELECT method, dataset FROM runs WHERE run_id = ?", [run_id]).fetchone()
            return f"run {run_id} ({method} on {dataset}): {what}"
    if "trainings" in staged:
        found = _training_identity(con)
        if found:
            return found
    if any(table in staged for table in TUNING_TABLES):  # none before version 5
        incoming = {table: f"incoming_{table}" if table in staged
                    else f"(SELECT * FROM {table} LIMIT 0)" for table in TUNING_TABLES}
        for find in (_tuning_identity, _trial_values, _tuning_pair_values, _finished_trial_pairs):
            found = find(con, incoming)
            if found:
                key, what = found
                return f"tuning {key} ({_tuning_named(con, key, incoming)}): {what}"
    return None


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


def _tuning_named(con, key: str, incoming: dict[str, str]) -> str:
    """"METHOD on DATASET" of tuning ``key``, as the output (else the source) has it."""
    row = con.execute(f"""SELECT method, dataset FROM tunings WHERE tuning_key = ?
                          UNION ALL SELECT method, dataset FROM {incoming['tunings']}
                          WHERE tuning_key = ? LIMIT 1""", [key, key]).fetchone()
    return f"{row[0]} on {row[1]}" if row else "a tuning neither store describes"


def _tuning_identity(con, incoming):
    """A tuning whose source row has another provenance, or other findings after as many
    finished trials (a resumed tuning keeps the provenance it started with)."""
    identity = [c for c in _value_columns("tunings") if c not in TUNING_PROGRESS_COLUMNS]
    findings = list(_TUNING_FINDINGS)
    row = con.execute(
        f"""SELECT tuning_key FROM {incoming['tunings']} s JOIN tunings t USING (tuning_key)
            WHERE {_differs(identity)} OR (s.used_trials IS NOT DISTINCT FROM t.used_trials
                                           AND ({_differs(findings)}))
            ORDER BY ALL LIMIT 1""").fetchone()
    if not row:
        return None
    return row[0], "its row differs: " + _difference(con, "tunings", row, identity + findings,
                                                     incoming["tunings"])


def _trial_values(con, incoming):
    """A trial whose source row sampled other parameters (or started at another time), or that
    both stores finished with other outcomes."""
    every = _value_columns("tuning_trials")
    row = con.execute(
        f"""SELECT tuning_key, trial FROM {incoming['tuning_trials']} s
            JOIN tuning_trials t USING (tuning_key, trial)
            WHERE {_differs(list(TRIAL_START_COLUMNS))}
               OR (s.state IN {FINISHED} AND t.state IN {FINISHED} AND ({_differs(every)}))
            ORDER BY ALL LIMIT 1""").fetchone()
    if not row:
        return None
    return row[0], (f"trial {row[1]} differs: "
                    + _difference(con, "tuning_trials", row, every, incoming["tuning_trials"]))


def _tuning_pair_values(con, incoming):
    """A validation pair a trial registered that the source scores otherwise."""
    columns = _value_columns("tuning_pairs")
    row = con.execute(
        f"""SELECT {_keys('s', 'tuning_pairs')} FROM {incoming['tuning_pairs']} s
            JOIN tuning_pairs t USING ({', '.join(ROW_KEYS['tuning_pairs'])})
            WHERE {_differs(columns)} ORDER BY ALL LIMIT 1""").fetchone()
    if not row:
        return None
    key, trial, fixed, moving = row
    return key, (f"pair {fixed} <- {moving} of trial {trial} differs: "
                 + _difference(con, "tuning_pairs", row, columns, incoming["tuning_pairs"]))


def _finished_trial_pairs(con, incoming):
    """A pair of a trial the output has finished that the source adds, or, where the source has
    finished it too, lacks: a finished trial's pairs are the ones its scores are over."""
    keys = ", ".join(ROW_KEYS["tuning_pairs"])
    row = con.execute(
        f"""WITH finished AS (SELECT tuning_key, trial FROM tuning_trials
                              WHERE state IN {FINISHED}),
                 both_finished AS (SELECT tuning_key, trial FROM {incoming['tuning_trials']}
                                   WHERE state IN {FINISHED} INTERSECT SELECT * FROM finished)
            (SELECT {keys}, 'source' FROM {incoming['tuning_pairs']}
                 SEMI JOIN finished USING (tuning_key, trial)
             EXCEPT SELECT {keys}, 'source' FROM tuning_pairs)
            UNION ALL
            (SELECT {keys}, 'output' FROM tuning_pairs
                 SEMI JOIN both_finished USING (tuning_key, trial)
             EXCEPT SELECT {keys}, 'output' FROM {incoming['tuning_pairs']})
            ORDER BY ALL LIMIT 1""").fetchone()
    if not row:
        return None
    key, trial, fixed, moving, side = row
    if side == "source":
        return key, (f"pair {fixed} <- {moving} of trial {trial} is in the source but not in "
                     "this trial, finished in the output")
    return key, (f"pair {fixed} <- {moving} of trial {trial} is in the output but not in the "
                 "source, which finished the trial too")


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


def _difference(con, table: str, key, columns: list[str], incoming: str | None = None) -> str:
    """Each of ``columns`` whose value differs between the output's and the source's row of
    ``key`` (the source's in ``incoming``, by default ``incoming_<table>``), with both values;
    the row missing on one side when one is."""
    where = " AND ".join(f"{k} = ?" for k in ROW_KEYS[table])
    select = f"SELECT {', '.join(columns)} FROM {{}} WHERE {where}"
    ours = con.execute(select.format(table), list(key)).fetchone()
    theirs = con.execute(select.format(incoming or f"incoming_{table}"), list(key)).fetchone()
    if ours is None or theirs is None:
        return f"only in the {'source' if ours is None else 'output'}"
    return ", ".join(f"{c} {a!r} in the output, {b!r} in the source"
                     for c, a, b in zip(columns, ours, theirs)
                     if a != b and not (b is None and c in _FILLED_IN_COLUMNS))
