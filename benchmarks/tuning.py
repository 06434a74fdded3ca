"""Equal-budget tuning measured: ``warpbench tune METHOD --dataset D --trials N``, then the tuned
preset's test-split run beside ``literature`` and ``default``, with the paired tests.

Everything it measures is kept under ``benchmarks/measured/tuning/`` (tracked by git) as it
goes, so a sitting that ends early, or a fresh clone, resumes where the last one stopped:

- ``store/``: ``warpbench export`` of the working store (the tunings with their trials and
  pairs, and the test-split runs), rewritten after every trial and after the test-split runs,
  and merged into the working store (``warpbench merge``) before anything runs, so finished
  trials are not registered again and finished runs not run again;
- ``<method>-<dataset>.csv``: one line per trial (state, validation Dice, folding, seconds and
  the sampled parameters), for reading;
- ``timing.json``: each sitting's wall-clock seconds and the trials it finished;
- ``summary.md``: literature / default / tuned on the test split and the paired tests.

    .venv/bin/python benchmarks/tuning.py [--method greedy] [--dataset hippocampus]
        [--trials 30] [--pairs 10] [--db results/tuning/wb.duckdb] [--no-test]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads must not spin

import argparse
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "measured" / "tuning"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="greedy")
    parser.add_argument("--dataset", default="hippocampus")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(REPO / "datasets.yaml"))
    parser.add_argument("--db", default=str(REPO / "results" / "tuning" / "wb.duckdb"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--no-test", action="store_true",
                        help="tune only; do not run the presets on the test split")
    args = parser.parse_args(argv)

    from warpbench.cli import main as warpbench
    from warpbench.config import build_dataset, load_config
    from warpbench.executors import InProcessExecutor
    from warpbench.plugins import load_registry
    from warpbench.store import Store
    from warpbench.tuning import Budget, Tuner, tuned_preset_name

    out = Path(args.out)
    store = Store(args.db)
    restore(store, out)

    registry = load_registry()
    config = load_config(args.config)
    dataset = build_dataset(config, args.dataset, registry.dataset_kinds)
    available, reason = dataset.availability()
    if not available:
        print(f"dataset {args.dataset}: {reason}", file=sys.stderr)
        return 1

    def exported(outcome):
        save(store, out)
        write_trials_csv(store, outcome.key, out / f"{args.method}-{args.dataset}.csv")

    tuner = Tuner(registry, store, InProcessExecutor(), seed=args.seed, on_trial=exported,
                  config=config)
    start = time.perf_counter()
    before = _trials_done(store, args.method, args.dataset)
    try:
        outcome = tuner.tune(args.method, dataset, Budget(trials=args.trials), args.pairs)
    finally:
        record_sitting(out / "timing.json", time.perf_counter() - start,
                       _trials_done(store, args.method, args.dataset) - before, args)
    exported(outcome)
    print(f"tuned {args.method} on {args.dataset}: best trial {outcome.best_trial}, validation "
          f"Dice {outcome.best_value:.4f}, {outcome.seconds:.0f} registration s", file=sys.stderr)
    if args.no_test:
        return 0

    presets = [p for p in ("literature", "default") if p in registry.methods[args.method].presets]
    presets.append(tuned_preset_name(args.dataset))
    # In this process, as the trials were, so that the seconds compare.
    status = warpbench(["run", "--quiet", "--executor", "inprocess", "--db", args.db,
                        "--config", args.config, "--dataset", args.dataset,
                        *[a for p in presets for a in ("--method", f"{args.method}:{p}")]])
    save(store, out)
    (out / "summary.md").write_text(summary(store, out / "timing.json"))
    print((out / "summary.md").read_text())
    return status


def restore(store, out: Path) -> None:
    """Merge what the earlier sittings kept (``store/``) into the working store."""
    if (out / "store").is_dir():
        added = store.merge_from([out / "store"])
        print(f"resuming from {out / 'store'}: added {added}", file=sys.stderr)


def save(store, out: Path) -> None:
    """Export the working store to ``out/store/``, replacing it whole (an interrupted export
    leaves the previous one)."""
    partial, previous = out / "store.partial", out / "store.previous"
    shutil.rmtree(partial, ignore_errors=True)
    store.export_tables(partial, "parquet")
    shutil.rmtree(previous, ignore_errors=True)
    if (out / "store").exists():
        (out / "store").rename(previous)
    partial.rename(out / "store")
    shutil.rmtree(previous, ignore_errors=True)


def _trials_done(store, method: str, dataset: str) -> int:
    trials = store.tuning_trials()
    if trials.empty:
        return 0
    mine = trials[(trials["method"] == method) & (trials["dataset"] == dataset)]
    return int(mine["state"].isin(["complete", "pruned", "failed"]).sum())


def write_trials_csv(store, key: str, path: Path) -> None:
    """One line per trial, its sampled parameters as columns."""
    trials = store.tuning_trials(key)
    sampled = pd.DataFrame([json.loads(s) for s in trials["sampled"]])
    table = pd.concat([trials[["trial", "state", "value", "folding_percent", "sdlogj",
                               "pairs_scored", "pairs_failed", "seconds"]].reset_index(drop=True),
                       sampled], axis=1)
    table.to_csv(path, index=False, float_format="%.6g")


def record_sitting(path: Path, seconds: float, trials: int, args) -> None:
    """Append this sitting's wall-clock time and finished trials to ``timing.json``."""
    sittings = json.loads(path.read_text()) if path.exists() else []
    sittings.append({
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": args.method, "dataset": args.dataset, "trials_asked": args.trials,
        "pairs": args.pairs, "trials_finished": trials, "wall_seconds": round(seconds, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sittings, indent=2) + "\n")


def summary(store, timing: Path) -> str:
    """The Markdown summary of every tuning in the store: its budget, wall-clock time and best
    trial, then literature / default / tuned on the test split and the paired tests."""
    from warpbench_leaderboard import tuned

    comparison = tuned.preset_comparison(store.leaderboard(), store.pair_scores(), store.runs())
    sittings = json.loads(timing.read_text()) if timing.exists() else []
    lines = ["# Equal-budget tuning: literature, default and tuned on the test split", "",
             "Made by `benchmarks/tuning.py` (its docstring says how) from the store that the "
             "export beside this file (`store/`) restores.", ""]
    tunings = store.tunings().sort_values(["dataset", "method", "started_at"])
    for row in tunings.itertuples():
        same = tunings[(tunings["method"] == row.method) & (tunings["dataset"] == row.dataset)]
        mine = _sittings_of(row, same, sittings)
        trials = store.tuning_trials(row.tuning_key)
        states = ", ".join(f"{n} {s}" for s, n in trials["state"].value_counts().items())
        loads = ", ".join(str(s["load_average"][0]) for s in mine)
        lines += [
            f"## {row.method} on {row.dataset} (version {row.method_version})", "",
            f"Tuning ({row.status}): {int(row.used_trials)} trials ({states}) on "
            f"{len(json.loads(row.validation_pairs))} validation pairs, seed {int(row.seed)}; "
            f"{row.used_seconds:.0f} s of registration, "
            f"{sum(s['wall_seconds'] for s in mine):.0f} s wall clock over {len(mine)} "
            f"sitting(s) on {mine[-1]['cpus'] if mine else '?'} CPUs (1-minute load average "
            f"at the end of each: {loads or '?'}); best trial {row.best_trial}, validation "
            f"Dice {row.best_value:.4f}.", ""]
        newest = same.iloc[-1]
        if newest["tuning_key"] != row.tuning_key:  # its tuned preset is the newer tuning's now
            lines += [f"Superseded by the tuning of version {newest['method_version']} below, "
                      "whose presets the test split compares; this one's test-split figures "
                      "are in this file's git history.", ""]
            continue
        scores = comparison.scores[(comparison.scores["method"] == row.method)
                                   & (comparison.scores["dataset"] == row.dataset)]
        tests = comparison.tests[(comparison.tests["method"] == row.method)
                                 & (comparison.tests["dataset"] == row.dataset)]
        if scores.empty:
            lines += ["No test-split run of the tuned preset yet.", ""]
            continue
        lines += [
            "Test split (means over the test pairs):", "",
            _markdown(scores[["preset", "pairs", "dice", "hd95", "folding_percent", "sdlogj",
                              "seconds"]]), "",
            f"Paired tests of mean Dice on the test pairs (a - b; Holm over its {len(tests)} "
            "rows):",
            "",
            _markdown(tests[["a", "b", "n", "mean_difference", "t_p_holm",
                             "wilcoxon_p_holm"]]), ""]
    return "\n".join(lines)


def _sittings_of(tuning, same: pd.DataFrame, sittings: list[dict]) -> list[dict]:
    """The sittings of ``timing.json`` that worked on ``tuning``: those of its method and dataset
    that finished after it started and before any newer tuning of them (``same``, oldest
    first) began."""
    def utc(when):  # the store's timestamps are naive UTC, timing.json's carry their zone
        when = pd.Timestamp(when)
        return when.tz_localize("UTC") if when.tzinfo is None else when

    begin = utc(tuning.started_at)
    end = min((utc(t) for t in same["started_at"] if utc(t) > begin),
              default=utc(pd.Timestamp.max))
    return [s for s in sittings if s["method"] == tuning.method
            and s["dataset"] == tuning.dataset and begin <= utc(s["finished_at"]) < end]


def _markdown(frame: pd.DataFrame) -> str:
    from warpbench.ci import markdown_table

    def text(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return markdown_table([[text(v) for v in row] for row in frame.itertuples(index=False)],
                          list(frame.columns))


if __name__ == "__main__":
    sys.exit(main())
