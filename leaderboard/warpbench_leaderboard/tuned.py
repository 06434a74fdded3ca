"""Literature, default and tuned presets side by side, and the tunings' histories: the shaping
and figures of the instrumentation-bias page's tuning sections (no Streamlit here, so tests and
``benchmarks/tuning.py`` call them directly).

A method is compared on a dataset's test split under its ``literature`` preset (as published),
its ``default`` (as shipped) and each ``tuned@DATASET`` preset (as ``warpbench tune`` found it on
validation pairs), with paired tests between every two of them on the pairs all of them scored.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from warpbench import stats

from warpbench_leaderboard.figures import TEMPLATE, empty_figure

#: The presets compared, in order: as published, as shipped, then every tuned one.
ROLES = {"literature": "as published", "default": "as shipped"}
TUNED_PREFIX = "tuned@"
GROUP = ["method", "dataset", "train_dataset"]
SCORE_COLUMNS = [*GROUP, "preset", "role", "pairs", "failed", "dice", "hd95", "folding_percent",
                 "sdlogj", "seconds", "run_id"]
TEST_COLUMNS = [*GROUP, "a", "b", "n", "mean_a", "mean_b", "mean_difference", "t_p",
                "wilcoxon_p", "t_p_holm", "wilcoxon_p_holm", "rank_biserial"]
#: Marker of each trial state on the history plot.
STATE_SYMBOLS = {"complete": "circle", "infeasible": "circle-open", "pruned": "x",
                 "failed": "triangle-down", "running": "diamond", "interrupted": "diamond-open"}


class PresetComparison(NamedTuple):
    """Per method and dataset with a tuned run: each compared preset's test scores, and the
    paired tests between every two presets (Holm-adjusted within the method and dataset)."""

    scores: pd.DataFrame
    tests: pd.DataFrame


def role(preset: str) -> str | None:
    """What a preset stands for in the comparison, or None when it takes no part."""
    if preset.startswith(TUNED_PREFIX):
        return f"tuned on {preset.removeprefix(TUNED_PREFIX)}"
    return ROLES.get(preset)


def preset_comparison(board: pd.DataFrame, pair_scores: pd.DataFrame,
                      runs: pd.DataFrame | None = None) -> PresetComparison:
    """The comparison of every method that has a tuned run on a dataset, from the store's
    leaderboard and its per-pair scores (``Store.leaderboard()``, ``Store.pair_scores()``).

    A tuned preset that a longer tuning changed is a new configuration of the same name, so the
    board may hold two runs of it: the newest (by ``runs``' start times, ``Store.runs()``; else
    the board's first) is the one compared."""
    if board.empty:
        return PresetComparison(pd.DataFrame(columns=SCORE_COLUMNS),
                                pd.DataFrame(columns=TEST_COLUMNS))
    rows = board.assign(role=[role(p) for p in board["preset"]],
                        train_dataset=board["train_dataset"].astype("object")
                        .where(board["train_dataset"].notna(), None))
    rows = rows[rows["role"].notna()]
    if runs is not None and not runs.empty:
        started = dict(zip(runs["run_id"], runs["started_at"]))
        rows = rows.assign(started=rows["run_id"].map(started)).sort_values(
            "started", ascending=False, kind="stable")
    rows = rows.drop_duplicates([*GROUP, "preset"])
    scores, tests = [], []
    for key, group in rows.groupby(GROUP, dropna=False, sort=True):
        if not group["preset"].str.startswith(TUNED_PREFIX).any():
            continue
        group = group.assign(order=[_order(p) for p in group["preset"]]).sort_values(
            ["order", "preset"])
        scores.append(group[SCORE_COLUMNS])
        matrix = _pair_matrix(pair_scores, group)
        table = stats.pairwise_paired_tests(matrix)
        for column, value in zip(GROUP, key):
            table[column] = value
        tests.append(table)
    if not scores:
        return PresetComparison(pd.DataFrame(columns=SCORE_COLUMNS),
                                pd.DataFrame(columns=TEST_COLUMNS))
    return PresetComparison(pd.concat(scores, ignore_index=True),
                            pd.concat(tests, ignore_index=True)[TEST_COLUMNS])


def _order(preset: str) -> int:
    return list(ROLES).index(preset) if preset in ROLES else len(ROLES)


def _pair_matrix(pair_scores: pd.DataFrame, group: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per pair (rows) and preset (columns) of the runs of ``group``; NaN where a pair
    failed or is missing, which the paired tests leave out."""
    runs = dict(zip(group["run_id"], group["preset"]))
    mine = pair_scores[pair_scores["run_id"].isin(runs)]
    dice = mine["mean_dice"].where(mine["status"] == "ok")
    matrix = (mine.assign(preset=mine["run_id"].map(runs), dice=dice)
              .pivot_table(index=["fixed", "moving"], columns="preset", values="dice",
                           aggfunc="first", dropna=False))
    return matrix.reindex(columns=list(group["preset"]))


def comparison_figure(scores: pd.DataFrame) -> go.Figure:
    """Mean test Dice of each compared preset, one group of bars per method and dataset."""
    if scores.empty:
        return empty_figure("No method has a tuned run on the test split yet.")
    labels = [_group_label(r) for r in scores.itertuples()]
    fig = go.Figure()
    for preset_role in dict.fromkeys(scores["role"]):
        part = scores[scores["role"] == preset_role]
        fig.add_trace(go.Bar(
            x=[labels[i] for i in part.index], y=part["dice"], name=preset_role,
            text=[f"{v:.3f}" for v in part["dice"]], textposition="outside",
            customdata=part["preset"],
            hovertemplate="%{x}<br>%{customdata}: %{y:.4f}<extra></extra>"))
    low = float(np.nanmin(scores["dice"].astype(float)))
    fig.update_layout(template=TEMPLATE, barmode="group", yaxis_title="mean test Dice",
                      yaxis_range=[max(0.0, low - 0.1), 1.0], legend_title_text="preset",
                      height=420)
    return fig


def _group_label(row) -> str:
    trained = f" [{row.train_dataset}]" if isinstance(row.train_dataset, str) else ""
    return f"{row.method}{trained} on {row.dataset}"


# --- tuning histories ----------------------------------------------------------------------------
def tuning_history(trials: pd.DataFrame) -> pd.DataFrame:
    """Every trial (``Store.tuning_trials()``) with a ``tuning`` label, its ``shown_state``
    (a complete trial folding more than its tuning allows is ``infeasible``) and the
    ``best_so_far``: the best feasible validation Dice of the trials up to it."""
    columns = [*trials.columns, "tuning", "shown_state", "best_so_far"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    out = trials.sort_values(["tuning_key", "trial"]).copy()
    folding = pd.to_numeric(out["folding_percent"], errors="coerce").fillna(0.0)
    infeasible = (out["state"] == "complete") & (folding > out["max_folding"])
    out["shown_state"] = out["state"].where(~infeasible, "infeasible")
    out["tuning"] = out["method"] + " on " + out["dataset"]
    counts = out.groupby("tuning")["tuning_key"].transform("nunique")
    several = counts > 1  # one label, several tunings (other seeds or pairs): tell them apart
    out.loc[several, "tuning"] = out.loc[several, "tuning"] + " (" + \
        out.loc[several, "tuning_key"].str[:6] + ")"
    feasible = out["value"].where(out["shown_state"] == "complete")
    out["best_so_far"] = feasible.groupby(out["tuning_key"]).cummax()
    return out[columns].reset_index(drop=True)


def tuning_history_figure(history: pd.DataFrame) -> go.Figure:
    """Validation Dice per trial of each tuning (the marker says how the trial ended; a pruned
    trial shows its running mean when it stopped), with the best feasible value so far."""
    if history.empty:
        return empty_figure("No tuning has a trial yet.")
    fig = go.Figure()
    for tuning, part in history.groupby("tuning", sort=True):
        fig.add_trace(go.Scatter(
            x=part["trial"], y=part["best_so_far"], mode="lines", line_shape="hv",
            name=f"{tuning}: best so far", legendgroup=tuning))
        fig.add_trace(go.Scatter(
            x=part["trial"], y=part["value"], mode="markers", name=f"{tuning}: trials",
            legendgroup=tuning,
            marker=dict(symbol=[STATE_SYMBOLS.get(s, "circle") for s in part["shown_state"]],
                        size=9),
            customdata=np.stack([part["shown_state"], part["sampled"]], axis=-1),
            hovertemplate="trial %{x}: %{y:.4f} (%{customdata[0]})<br>%{customdata[1]}"
                          "<extra></extra>"))
    fig.update_layout(template=TEMPLATE, xaxis_title="trial", yaxis_title="validation Dice",
                      height=420, legend_title_text="tuning")
    return fig


def tuning_budgets(tunings: pd.DataFrame) -> pd.DataFrame:
    """Per tuning: the budget asked, what it used, its state and best trial (item 4 of the
    protocol: the budget used is recorded per method)."""
    columns = ["method", "dataset", "seed", "status", "budget", "used_trials", "used_seconds",
               "best_trial", "best_value", "preset", "tuning_key"]
    if tunings.empty:
        return pd.DataFrame(columns=columns)
    out = tunings.copy()
    out["budget"] = [f"{int(t)} trials" if pd.notna(t) else f"{s:g} s"
                     for t, s in zip(out["budget_trials"], out["budget_seconds"])]
    return out[columns].sort_values(["dataset", "method"]).reset_index(drop=True)
