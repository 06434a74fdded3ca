"""The store's tunings (schema version 5): each tuning's provenance, budget and best trial, every
trial's parameters and scores, and every validation pair a trial registered.

A trial's pairs are written one at a time as they are scored, and a trial's row when it ends, so
an interruption loses at most the pair in flight, and the next ``warpbench tune`` resumes: the
finished trials are taken as they are, and the unfinished one goes on from its stored pairs.
The view ``tuned_presets`` names each method's ``tuned@DATASET`` preset: the best parameters of
the newest complete tuning, stored in full (``best_params``), so a tuned run is reproducible from
the store alone. The tables travel as every results table does: ``warpbench export`` writes them
and ``warpbench merge`` brings them into another store, where the tuning resumes
(:mod:`warpbench.store.exchange`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from warpbench.store.connection import StoreFile
from warpbench.store.writes import _insert, _now

#: A trial's states once it has ended (the others: running, interrupted).
FINISHED_STATES = ("complete", "pruned", "failed")


@dataclass
class TuningState:
    """What a tuning has done when it is picked up: its trials in order, and the stored pairs of
    each (as dicts of the ``tuning_pairs`` columns, in their order)."""

    trials: list[dict] = field(default_factory=list)
    pairs: dict[int, list[dict]] = field(default_factory=dict)

    @property
    def finished(self) -> list[dict]:
        return [t for t in self.trials if t["state"] in FINISHED_STATES]


class Tunings(StoreFile):
    # --- writes --------------------------------------------------------------------------------
    def begin_tuning(self, key: str, provenance: dict, budget_trials: int | None,
                     budget_seconds: float | None) -> TuningState:
        """Start a tuning (a new row) or resume it, asking for this budget now; return its
        stored trials and pairs. A resumed tuning keeps the provenance it started with."""
        with self._write() as con:
            known = con.execute("SELECT count(*) FROM tunings WHERE tuning_key = ?",
                                [key]).fetchone()[0]
            if known:
                con.execute("UPDATE tunings SET status = 'running', budget_trials = ?, "
                            "budget_seconds = ?, ended_at = NULL WHERE tuning_key = ?",
                            [budget_trials, budget_seconds, key])
            else:
                _insert(con, "tunings", {**provenance, "tuning_key": key, "status": "running",
                                         "budget_trials": budget_trials,
                                         "budget_seconds": budget_seconds, "used_trials": 0,
                                         "used_seconds": 0.0, "started_at": _now()})
            trials = con.execute("SELECT * FROM tuning_trials WHERE tuning_key = ? ORDER BY trial",
                                 [key]).df()
            pairs = con.execute("SELECT * FROM tuning_pairs WHERE tuning_key = ? "
                                "ORDER BY trial, position", [key]).df()
        state = TuningState(trials.to_dict("records"))
        for trial, rows in pairs.groupby("trial", sort=True):
            state.pairs[int(trial)] = rows.to_dict("records")
        return state

    def begin_trial(self, key: str, trial: int, sampled: str, params: str) -> bool:
        """Mark trial ``trial`` as running with these parameters (JSON). An unfinished trial of
        the same number is resumed when it sampled the same parameters (True: its stored pairs
        count); one that sampled others is started again, its pairs dropped (False)."""
        with self._write() as con:
            row = con.execute("SELECT sampled FROM tuning_trials WHERE tuning_key = ? "
                              "AND trial = ?", [key, trial]).fetchone()
            if row is not None and row[0] == sampled:
                con.execute("UPDATE tuning_trials SET state = 'running' WHERE tuning_key = ? "
                            "AND trial = ?", [key, trial])
                return True
            # A different sample for an unfinished trial: only a change of Optuna's sampling
            # (another version) can cause it, and its partial pairs measured other parameters.
            con.execute("DELETE FROM tuning_pairs WHERE tuning_key = ? AND trial = ?", [key, trial])
            con.execute("DELETE FROM tuning_trials WHERE tuning_key = ? AND trial = ?",
                        [key, trial])
            _insert(con, "tuning_trials", {"tuning_key": key, "trial": trial, "state": "running",
                                           "sampled": sampled, "params": params,
                                           "started_at": _now()})
            return False

    def record_tuning_pair(self, key: str, trial: int, position: int, result) -> None:
        """Store one validation pair a trial registered (a :class:`warpbench.runner.PairResult`);
        ``position`` is its place in the tuning's pair order."""
        with self._write() as con:
            _insert(con, "tuning_pairs", {
                "tuning_key": key, "trial": trial, "fixed": result.fixed,
                "moving": result.moving, "position": position, "status": result.status,
                "error": result.error, "mean_dice": result.mean_dice,
                "mean_hd95": result.mean_hd95, "sdlogj": result.sdlogj,
                "folding_percent": result.folding_percent, "seconds": result.seconds,
                "peak_memory_mb": result.peak_memory_mb, "device": result.device,
                "finished_at": _now()})

    def end_trial(self, key: str, trial: int, state: str, scores: dict, *, used_trials: int,
                  used_seconds: float, best: dict | None) -> None:
        """Record how a trial ended (``scores``: value, mean_hd95, sdlogj, folding_percent,
        pairs_scored, pairs_failed, seconds, training_seconds, error) and, in the same
        transaction, the tuning's budget used so far and its best trial (``best``: trial,
        value, params)."""
        columns = ["value", "mean_hd95", "sdlogj", "folding_percent", "pairs_scored",
                   "pairs_failed", "seconds", "training_seconds", "error"]
        with self._write() as con:
            assignments = ", ".join(f"{c} = ?" for c in columns)
            con.execute(f"UPDATE tuning_trials SET state = ?, {assignments}, ended_at = ? "
                        "WHERE tuning_key = ? AND trial = ?",
                        [state, *(scores.get(c) for c in columns), _now(), key, trial])
            best = best or {}
            con.execute("UPDATE tunings SET used_trials = ?, used_seconds = ?, best_trial = ?, "
                        "best_value = ?, best_params = ? WHERE tuning_key = ?",
                        [used_trials, used_seconds, best.get("trial"), best.get("value"),
                         best.get("params"), key])

    def end_tuning(self, key: str, status: str) -> None:
        """Mark a tuning ``complete`` (its budget is spent) or ``interrupted``; an interrupted
        trial is marked so too."""
        with self._write() as con:
            con.execute("UPDATE tunings SET status = ?, ended_at = ? WHERE tuning_key = ?",
                        [status, _now(), key])
            if status != "complete":
                con.execute("UPDATE tuning_trials SET state = 'interrupted' "
                            "WHERE tuning_key = ? AND state = 'running'", [key])

    # --- reads ---------------------------------------------------------------------------------
    def tunings(self) -> pd.DataFrame:
        """Every tuning with its provenance, budget and best trial, newest first."""
        return self._read("SELECT * FROM tunings ORDER BY started_at DESC", table="tunings")

    def tuning_trials(self, key: str | None = None) -> pd.DataFrame:
        """The trials (of one tuning, or of all) with the method and dataset they tuned."""
        where = "WHERE t.tuning_key = ?" if key else ""
        return self._read(
            f"""SELECT g.method, g.dataset, g.preset, g.max_folding, t.*
                FROM tuning_trials t JOIN tunings g USING (tuning_key) {where}
                ORDER BY g.method, g.dataset, t.tuning_key, t.trial""",
            [key] if key else [], table="tuning_trials")

    def tuning_pairs(self, key: str) -> pd.DataFrame:
        """Every validation pair the trials of one tuning registered, in order."""
        return self._read("SELECT * FROM tuning_pairs WHERE tuning_key = ? ORDER BY trial, "
                          "position", [key], table="tuning_pairs")

    def tuned_presets(self) -> pd.DataFrame:
        """One row per tuned preset (method, ``tuned@DATASET``): the newest complete tuning
        that defines it, with its ``best_params`` (the preset, as JSON)."""
        return self._read("SELECT * FROM tuned_presets ORDER BY method, preset",
                          table="tuned_presets")

    def tuning_stamp(self) -> tuple:
        """A cheap fingerprint of the tunings' content: trials and their newest end."""
        found = self._read("SELECT count(*) AS trials, max(ended_at) AS ended, "
                           "string_agg(state, ',' ORDER BY tuning_key, trial) AS states "
                           "FROM tuning_trials", table="tuning_trials")
        return tuple(str(v) for v in found.iloc[0]) if not found.empty else ()
