"""Evaluations in continuous integration: ``warpbench ci``.

Runs a named suite of ``datasets.yaml`` (``quick`` is made for CI) plus the methods given on the
command line, always as fresh runs (a CI job judges the code it was given, never a stored result),
into ``OUT/warpbench.duckdb``; then writes ``OUT/parquet/<table>.parquet`` and ``OUT/summary.md``
(the leaderboard of this evaluation, its comparison with a baseline store, and its failures).

The verdict: it fails (exit 1) when a pair or a training failed, a dataset of the suite was
unavailable, or a configuration's mean Dice fell by more than ``threshold`` below the baseline's
for the same method, preset, dataset and training dataset (compared only where the dataset is the
same: same fingerprint). A learning method's rows say what it was trained on and whether that is
the evaluated dataset's source (in-domain) or another (shifted), and whether it was scored on
another label protocol (other labels), as the store records it with the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from warpbench.compatibility import test_condition
from warpbench.config import Config
from warpbench.plugins import Registry
from warpbench.scheduler import Scheduler, expand_method_spec, make_plan
from warpbench.store import Store

DEFAULT_THRESHOLD = 0.02
KEYS = ["method", "preset", "dataset", "train_dataset"]


class CiError(ValueError):
    """The CI evaluation cannot start (bad suite, method or baseline); the message says why."""


@dataclass
class CiResult:
    exit_code: int
    markdown: str
    store: Path
    summary: Path
    exports: list[Path] = field(default_factory=list)
    leaderboard: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    failures: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)


def run_ci(registry: Registry, config: Config, suite_name: str, out: str | Path, *,
           methods: list[str] = (), baseline: str | Path | None = None,
           threshold: float = DEFAULT_THRESHOLD, device=None, progress: bool = False) -> CiResult:
    suite = config.suite(suite_name)
    specs = list(dict.fromkeys([*suite.methods, *methods]))
    try:
        for spec in specs:
            expand_method_spec(spec, registry)
    except ValueError as exc:
        raise CiError(str(exc)) from None
    if not math.isfinite(threshold) or threshold < 0:
        raise CiError(f"--threshold must be a non-negative Dice difference, got {threshold}")
    base_store = None
    if baseline is not None:
        base_store = Store(baseline)
        base_store.check_file()  # fail before minutes of work, naming the file
    if "inprocess" not in registry.executors:
        raise CiError("the built-in 'inprocess' executor is not loaded")

    out = Path(out)
    store = Store(out / "warpbench.duckdb")
    plan = make_plan(registry, config, specs, suite.datasets)
    executor = registry.executors["inprocess"](device=device)
    scheduler = Scheduler(registry, store, executor, seed=suite.seed, time_limit=suite.time_limit,
                          restart=True, progress=progress)
    summary = scheduler.run(plan)

    runs = store.runs()
    ours = runs[runs["run_id"].isin(summary.run_ids)] if not runs.empty else runs
    board = store.leaderboard()
    board = board[board["run_id"].isin(set(ours["run_id"]))] if not board.empty else board
    board = board.assign(dataset_fingerprint=board["run_id"].map(_fingerprints(ours)))

    failures = list(summary.failures)
    failures += [f"method {name} unavailable: {reason}"
                 for name, reason in plan.unavailable_methods.items()]
    failures += [f"dataset {name} unavailable: {reason}" for name, reason in plan.unavailable.items()]
    if not plan.runs:
        failures.append("nothing was evaluated")
    comparison = None
    if base_store is not None:
        comparison = _judge(compare(board, base_store), threshold)
    regressions = ([] if comparison is None else
                   [f"{r.method}:{r.preset}{_trained(r)} on {r.dataset}: mean Dice {r.dice:.4f}, "
                    f"baseline {r.baseline_dice:.4f} ({r.change:+.4f}, threshold {threshold:g})"
                    for r in comparison.itertuples() if r.verdict == "regressed"])

    exports = store.export_tables(out / "parquet", "parquet") if store.path.exists() else []
    exit_code = 1 if failures or regressions else 0
    not_evaluated = [f"nothing trains on {source}: {reason}"
                     for (source, _), reason in plan.skipped.items()]
    markdown = render_markdown(suite_name, board, comparison, failures, regressions, threshold,
                               baseline, exit_code, summary, not_evaluated)
    summary_path = out / "summary.md"
    out.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(markdown)
    return CiResult(exit_code, markdown, store.path, summary_path, exports, board, comparison,
                    failures, regressions)


def compare(board: pd.DataFrame, baseline: Store) -> pd.DataFrame:
    """This evaluation's mean Dice per method, preset and dataset next to the baseline's."""
    base = baseline.leaderboard()
    if base.empty:
        base = pd.DataFrame(columns=[*KEYS, "dice", "pairs", "run_id"])
    base = base.assign(baseline_fingerprint=base["run_id"].map(_fingerprints(baseline.runs())))
    base = base.rename(columns={"dice": "baseline_dice", "pairs": "baseline_pairs"})
    return board[[*KEYS, "in_domain", "same_labels", "dice", "pairs", "failed", "dataset_fingerprint"]].merge(
        base[[*KEYS, "baseline_dice", "baseline_pairs", "baseline_fingerprint"]], on=KEYS,
        how="left")


def _fingerprints(runs: pd.DataFrame) -> dict[str, str]:
    """Each run's dataset fingerprint by run_id: scores compare only on the same dataset."""
    return dict(zip(runs["run_id"], runs["dataset_fingerprint"])) if not runs.empty else {}


def _judge(comparison: pd.DataFrame, threshold: float) -> pd.DataFrame:
    verdicts, changes = [], []
    for row in comparison.itertuples():
        change = (row.dice - row.baseline_dice
                  if _number(row.dice) and _number(row.baseline_dice) else float("nan"))
        changes.append(change)
        if not _number(row.baseline_dice) and pd.isna(row.baseline_fingerprint):
            verdicts.append("new")
        elif row.baseline_fingerprint != row.dataset_fingerprint:
            verdicts.append("dataset changed")
        elif not _number(row.dice):
            verdicts.append("no score")
        elif change < -threshold:
            verdicts.append("regressed")
        elif change > threshold:
            verdicts.append("improved")
        else:
            verdicts.append("same")
    return comparison.assign(change=changes, verdict=verdicts)


def _trained(row) -> str:
    return f" trained on {row.train_dataset}" if isinstance(row.train_dataset, str) else ""


def _trained_on(row) -> str:
    """A learning run's training dataset and test (``toy-a (shifted, other labels)``); ``-``
    otherwise."""
    if not isinstance(row.train_dataset, str):
        return "-"
    condition = test_condition(row.in_domain, getattr(row, "same_labels", None))
    return _cell(row.train_dataset) + (f" ({condition})" if condition else "")


def _number(value) -> bool:
    return value is not None and not pd.isna(value)


def _cell(value, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value).replace("|", "\\|")


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(suite_name, board, comparison, failures, regressions, threshold, baseline,
                    exit_code, summary, not_evaluated=()) -> str:
    verdict = "passed" if exit_code == 0 else "FAILED"
    parts = [
        f"## warpbench CI: suite `{suite_name}` {verdict}",
        "",
        f"{summary.trainings_done} trainings, {summary.runs_done} runs, {summary.pairs_ok} pairs "
        f"scored, {summary.pairs_failed} failed"
        + (f"; {len(regressions)} regression(s) beyond {threshold:g} mean Dice" if regressions else ""),
        "",
        "### Leaderboard",
        "",
    ]
    if board.empty:
        parts.append("No complete run.")
    else:
        rows = [[_cell(r.method), _cell(r.preset), _cell(r.dataset), _trained_on(r),
                 _cell(r.pairs), _cell(r.failed), _cell(r.dice, "{:.4f}"), _cell(r.hd95, "{:.2f}"),
                 _cell(r.sdlogj, "{:.3f}"), _cell(r.folding_percent, "{:.3f}"),
                 _cell(r.seconds, "{:.2f}")]
                for r in board.itertuples()]
        parts.append(markdown_table(rows, ["method", "preset", "dataset", "trained on", "pairs",
                                           "failed", "mean Dice", "HD95 (mm)", "SDlogJ",
                                           "folding %", "s/pair"]))
    parts += ["", "### Compared with the baseline", ""]
    if comparison is None:
        parts.append("No baseline store given (`--baseline OLD.duckdb`).")
    else:
        parts.append(f"Baseline `{baseline}`; a drop of mean Dice by more than {threshold:g} "
                     "fails the job.")
        parts.append("")
        rows = [[_cell(r.method), _cell(r.preset), _cell(r.dataset), _trained_on(r),
                 _cell(r.baseline_dice, "{:.4f}"), _cell(r.dice, "{:.4f}"),
                 _cell(r.change, "{:+.4f}"), r.verdict] for r in comparison.itertuples()]
        parts.append(markdown_table(rows, ["method", "preset", "dataset", "trained on",
                                           "baseline Dice", "mean Dice", "change", "verdict"]))
    if not_evaluated:  # training datasets nothing trains on, and why
        parts += ["", "### Not evaluated", ""] + [f"- {_cell(n)}" for n in not_evaluated]
    parts += ["", "### Failures", ""]
    problems = [*failures, *(f"regression: {r}" for r in regressions)]
    parts += [f"- {_cell(p)}" for p in problems] if problems else ["None."]
    return "\n".join(parts) + "\n"
