"""Reading the store: the leaderboard, runs, pairs and labels, datasets, trainings, and what the
leaderboard app's analyses need. Every read opens the file read-only; a table comes back as a
DataFrame (empty, with its columns where it has fixed ones, for a missing file).

``latest_runs`` picks the newest complete run of each configuration; the leaderboard shows those
on each dataset's newest description and of each method's newest version run (a run on data that
has since changed, or of a method version since replaced, stays in the store).
On each dataset it lists the configurations whose every pair scored first, best mean Dice first,
then those with failed pairs (their scores are over the scored pairs only): ranked apart.
"""

from __future__ import annotations

import pandas as pd

from warpbench.compatibility import in_domain
from warpbench.store.connection import StoreFile

#: The leaderboard's columns (new ones go at the end: scripts read them by position).
LEADERBOARD_COLUMNS = [
    "method", "preset", "family", "supervision", "dataset", "train_dataset", "pairs", "failed",
    "dice", "dice_std", "hd95", "sdlogj", "folding_percent", "seconds", "peak_memory_mb", "run_id",
    "in_domain", "same_labels", "pre_aligned",
]

# Each run's columns beside its pairs' aggregates; :meth:`Reads.leaderboard` keeps the
# leaderboard's columns, so a store older than a run column reads with that column empty.
#: The latest complete runs on each dataset's newest description and of each method's newest
#: version: a run on data that has since changed (a new fingerprint), or of a method version
#: that a later run of the same preset on the same data and seed replaced, stays in the store
#: but is no longer the result (else the leaderboard would show two rows of one name, and the
#: study would pair both with every network).
_CURRENT_RUNS = """(SELECT * FROM latest_runs r WHERE (dataset_fingerprint IS NULL
    OR (dataset, dataset_fingerprint) IN (SELECT (dataset, fingerprint) FROM latest_datasets)
    OR dataset NOT IN (SELECT dataset FROM latest_datasets))
    AND NOT EXISTS (SELECT 1 FROM latest_runs q WHERE q.method = r.method
        AND q.preset = r.preset AND q.dataset = r.dataset
        AND q.train_dataset IS NOT DISTINCT FROM r.train_dataset
        AND q.seed IS NOT DISTINCT FROM r.seed
        AND q.method_version IS DISTINCT FROM r.method_version
        AND q.started_at > r.started_at))"""

_LEADERBOARD_SQL = f"""
SELECT r.*, s.* EXCLUDE (run_id)
FROM {_CURRENT_RUNS} r JOIN (
    SELECT run_id,
           count(*) FILTER (WHERE status = 'ok') AS pairs,
           count(*) FILTER (WHERE status <> 'ok') AS failed,
           avg(mean_dice) AS dice,
           stddev_samp(mean_dice) AS dice_std,
           avg(mean_hd95) AS hd95,
           avg(sdlogj) AS sdlogj,
           avg(folding_percent) AS folding_percent,
           avg(seconds) AS seconds,
           max(peak_memory_mb) AS peak_memory_mb
    FROM latest_pairs GROUP BY run_id) s USING (run_id)
ORDER BY r.dataset, s.failed > 0, s.dice DESC NULLS LAST, r.method, r.preset, r.train_dataset
"""

PAIR_SCORE_COLUMNS = [
    "run_id", "fixed", "moving", "status", "mean_dice", "mean_hd95", "sdlogj", "folding_percent",
    "seconds", "peak_memory_mb",
]

_PAIR_SCORES_SQL = f"""
SELECT p.run_id, p.fixed, p.moving, p.status, p.mean_dice, p.mean_hd95, p.sdlogj,
       p.folding_percent, p.seconds, p.peak_memory_mb
FROM latest_pairs p WHERE p.run_id IN (SELECT run_id FROM {_CURRENT_RUNS})
"""


class Reads(StoreFile):
    def leaderboard(self) -> pd.DataFrame:
        """One row per configuration's latest complete run, with its aggregate scores (those with
        failed pairs after the others on their dataset) and whether
        a trained run was tested in its training domain (``in_domain``) and on the label protocol
        it was trained on (``same_labels``), as stored with the run (None for a method that is
        not trained), and whether the dataset declared itself pre-aligned (``pre_aligned``)."""
        board = self._read(_LEADERBOARD_SQL, columns=LEADERBOARD_COLUMNS)
        return _with_run_conditions(board.reindex(columns=LEADERBOARD_COLUMNS))

    def runs(self) -> pd.DataFrame:
        """Every run with its provenance and its pair counts, newest first."""
        return _with_run_conditions(self._read(
            """SELECT r.*, count(p.run_id) FILTER (WHERE p.status = 'ok') AS pairs_ok,
                      count(p.run_id) FILTER (WHERE p.status <> 'ok') AS pairs_failed
               FROM runs r LEFT JOIN latest_pairs p USING (run_id)
               GROUP BY ALL ORDER BY r.started_at DESC"""
        ))

    def finished_pairs(self, config_key: str) -> set[tuple[str, str]]:
        """The (fixed, moving) pairs whose latest attempt succeeded in the newest run of a
        configuration; empty when it has no run. Reads only, unlike ``begin_run``."""
        found = self._read(
            """SELECT fixed, moving FROM latest_pairs WHERE status = 'ok' AND run_id = (
                   SELECT run_id FROM runs WHERE config_key = ?
                   ORDER BY started_at DESC LIMIT 1)""",
            [config_key])
        return set(zip(found["fixed"], found["moving"])) if not found.empty else set()

    def pairs(self, run_id: str | None = None) -> pd.DataFrame:
        """The latest attempt of every pair (of one run, or of all)."""
        where = "WHERE run_id = ?" if run_id else ""
        return self._read(
            f"SELECT * FROM latest_pairs {where} ORDER BY run_id, fixed, moving",
            [run_id] if run_id else [],
        )

    def label_scores(self, run_id: str | None = None) -> pd.DataFrame:
        """Per-label Dice and HD95 of the latest attempt of every pair."""
        where = "WHERE l.run_id = ?" if run_id else ""
        return self._read(
            f"""SELECT l.* FROM labels l JOIN latest_pairs p
                  ON l.run_id = p.run_id AND l.fixed = p.fixed AND l.moving = p.moving
                     AND l.attempt = p.attempt {where}""",
            [run_id] if run_id else [],
        )

    def datasets(self) -> pd.DataFrame:
        """The newest description (and MI) of every dataset seen by a run."""
        return self._read("SELECT * FROM latest_datasets ORDER BY dataset")

    def dataset_description(self, name: str) -> dict | None:
        """The newest stored description of one dataset, or None when no run has seen it."""
        found = self._read("SELECT * FROM latest_datasets WHERE dataset = ?", [name])
        return None if found.empty else found.iloc[0].to_dict()

    def has_dataset(self, name: str, fingerprint: str) -> bool:
        found = self._read(
            "SELECT 1 FROM datasets WHERE dataset = ? AND fingerprint = ?", [name, fingerprint]
        )
        return not found.empty

    # --- trainings -----------------------------------------------------------------------------
    def training(self, key: str) -> dict | None:
        """One training's row (state, weights, provenance), or None when it never started."""
        found = self._read("SELECT * FROM trainings WHERE training_key = ?", [key],
                           table="trainings")
        return found.iloc[0].to_dict() if not found.empty else None

    def trainings(self) -> pd.DataFrame:
        """Every training with its state and provenance, newest first."""
        return self._read("SELECT * FROM trainings ORDER BY started_at DESC", table="trainings")

    def training_curves(self, key: str | None = None) -> pd.DataFrame:
        """Loss-curve points (of one training, or of all), in step order."""
        where = "WHERE training_key = ?" if key else ""
        return self._read(
            f"SELECT * FROM training_curves {where} ORDER BY training_key, split, name, step",
            [key] if key else [], table="training_curves")

    # --- reads for the leaderboard app's analyses ----------------------------------------------
    def pair_scores(self) -> pd.DataFrame:
        """Every pair's latest attempt in each configuration's latest complete run (the runs
        ``leaderboard()`` shows): the raw material of confidence intervals, paired tests and box
        plots. Failed pairs are included (``status`` says so; their scores are NULL).

        The run's description is not repeated on every pair row (at 100,000 rows the repeated
        text costs more than the scores): join on ``run_id`` with ``leaderboard()``."""
        return self._read(_PAIR_SCORES_SQL, columns=PAIR_SCORE_COLUMNS)

    def content_stamp(self) -> tuple:
        """A cheap fingerprint of the store's content (row counts, newest pair and run end,
        complete runs, dataset rows, trainings' states and curve points): rows are only
        appended, and a run's status and end time and a training's state are the only updates,
        so equal stamps mean equal content and cached analyses can be reused. Empty for a
        missing file or one without runs."""
        found = self._read(
            """SELECT (SELECT count(*) FROM runs) AS runs,
                      (SELECT count(*) FILTER (WHERE status = 'complete') FROM runs) AS complete,
                      (SELECT max(ended_at) FROM runs) AS ended,
                      (SELECT count(*) FROM pairs) AS pairs,
                      (SELECT max(finished_at) FROM pairs) AS finished,
                      (SELECT count(*) FROM datasets) AS datasets""")
        trained = self._read(  # empty for a store written before trainings existed
            """SELECT (SELECT count(*) FROM training_curves) AS points,
                      (SELECT max(logged_at) FROM training_curves) AS logged,
                      (SELECT string_agg(status, ',' ORDER BY training_key)
                       FROM trainings) AS states""",
            table="training_curves")
        return tuple(str(v) for frame in (found, trained) if not frame.empty
                     for v in frame.iloc[0])

    def failed_pairs(self) -> pd.DataFrame:
        """Pairs whose latest attempt failed, in every run (complete or not), with the error and
        the run's method, preset and dataset; newest first."""
        return self._read(
            """SELECT r.run_id, r.method, r.preset, r.dataset, r.train_dataset,
                      r.status AS run_status,
                      p.fixed, p.moving, p.attempt, p.error, p.device, p.finished_at
               FROM latest_pairs p JOIN runs r USING (run_id)
               WHERE p.status <> 'ok'
               ORDER BY p.finished_at DESC, r.method, p.fixed, p.moving""",
            columns=["run_id", "method", "preset", "dataset", "train_dataset", "run_status",
                     "fixed", "moving", "attempt", "error", "device", "finished_at"],
        )


#: The run columns that state a condition of the test, read as nullable booleans (NA: unknown,
#: or not trained) whatever the file holds, so a store reads alike before and after an upgrade.
_CONDITION_COLUMNS = ("in_domain", "same_labels", "pre_aligned")


def _with_run_conditions(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the run-condition columns (``in_domain``, ``same_labels``, ``pre_aligned``)
    as nullable booleans, and the first two stated for every trained run: an older
    store that no write has upgraded yet may lack them (a bulk-appended row, a file older than
    the column), and a read cannot upgrade the file, so it states them as the upgrade will
    (:mod:`warpbench.store.migrations`); a store reads the same before and after its upgrade."""
    if not {"in_domain", "train_dataset", "dataset"} <= set(frame.columns):
        return frame
    frame = frame.copy()
    for column in _CONDITION_COLUMNS:
        if column not in frame:  # where the upgrade adds it: at the end of the runs columns
            at = frame.columns.get_loc("status") + 1 if "status" in frame else len(frame.columns)
            frame.insert(at + _CONDITION_COLUMNS.index(column) - 1, column, pd.NA)
        frame[column] = frame[column].astype("boolean")
    trained = frame["train_dataset"].notna()
    missing = frame["in_domain"].isna() & trained
    if missing.any():
        rows = frame.loc[missing]
        frame.loc[missing, "in_domain"] = [in_domain(train, dataset) for train, dataset
                                           in zip(rows["train_dataset"], rows["dataset"])]
    # before schema 6 a network was tested only where the label names agreed
    frame.loc[frame["same_labels"].isna() & trained, "same_labels"] = True
    return frame
