"""Data shaping for the leaderboard pages: plain functions on DataFrames, no Streamlit.

The pages read the store, pass its DataFrames through these functions and lay out what comes
back, so everything that decides *what* is shown can be tested without running the app.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from warpbench import stats
from warpbench.compatibility import test_condition

# Column -> header shown on the leaderboard, in display order. The store's aggregates plus what
# ``summarise`` adds from the per-pair scores (rank, confidence interval, worst 30 %).
DISPLAY_COLUMNS: dict[str, str] = {
    "rank": "Rank",
    "method": "Method",
    "preset": "Preset",
    "family": "Family",
    "supervision": "Supervision",
    "train_dataset": "Trained on",
    "dataset": "Dataset",
    "pre_aligned": "Pre-aligned",
    "pairs": "Pairs",
    "failed": "Failed",
    "dice": "Mean Dice",
    "dice_std": "Std",
    "dice_ci_low": "95% CI low",
    "dice_ci_high": "95% CI high",
    "dice_worst30": "Worst 30%",
    "hd95": "HD95 (mm)",
    "sdlogj": "SDlogJ",
    "folding_percent": "Folding %",
    "seconds": "Seconds/pair",
    "peak_memory_mb": "Peak memory (MB)",
}

# Header -> printf-style format for the numeric columns (what st.column_config understands).
NUMBER_FORMATS: dict[str, str] = {
    "Rank": "%d",
    "Pairs": "%d",
    "Failed": "%d",
    "Mean Dice": "%.3f",
    "Std": "%.3f",
    "95% CI low": "%.3f",
    "95% CI high": "%.3f",
    "Worst 30%": "%.3f",
    "HD95 (mm)": "%.2f",
    "SDlogJ": "%.3f",
    "Folding %": "%.3f",
    "Seconds/pair": "%.2f",
    "Peak memory (MB)": "%.0f",
}

# Header -> tooltip.
COLUMN_HELP: dict[str, str] = {
    "Rank": "Rank by mean Dice among every configuration on this dataset whose every pair scored "
            "(ties share a rank); none for a configuration with failed pairs",
    "Trained on": "Training dataset of a learning method (empty: no training), whether it is "
                  "tested on data of its source (in-domain) or of another (shifted), and "
                  "whether it is scored on another label protocol than it was trained on "
                  "(other labels)",
    "Pre-aligned": "Whether the dataset declared its subjects affinely aligned already (its "
                   "block's pre_aligned): if not, the classical methods' presets start from an "
                   "affine alignment",
    "Pairs": "Test pairs registered successfully (latest attempt of each pair)",
    "Failed": "Test pairs whose latest attempt failed; they are left out of the scores, and the "
              "configuration is not ranked (run the same command to retry them)",
    "Mean Dice": "Mean over pairs of the mean Dice over labels (higher is better)",
    "Std": "Standard deviation of the per-pair mean Dice",
    "95% CI low": "Percentile bootstrap of the mean Dice: 1000 resamples of the pairs, seed 0",
    "95% CI high": "Percentile bootstrap of the mean Dice: 1000 resamples of the pairs, seed 0",
    "Worst 30%": "30th percentile of the per-pair Dice (Learn2Reg's DSC30 robustness score)",
    "HD95 (mm)": "Mean over pairs of the 95th-percentile Hausdorff distance (lower is better)",
    "SDlogJ": "Standard deviation of the log Jacobian determinant (lower is smoother)",
    "Folding %": "Percentage of voxels with a non-positive Jacobian determinant",
    "Seconds/pair": "Mean wall-clock seconds per registration",
    "Peak memory (MB)": "Largest peak memory of one registration (GPU if used, else resident)",
}

_TEXT_COLUMNS = ("method", "preset", "family", "supervision", "train_dataset", "dataset",
                 "pre_aligned")
_COUNT_COLUMNS = ("rank", "pairs", "failed")
MISSING_TEXT = "—"


def filter_options(board: pd.DataFrame, column: str) -> list[str]:
    """The distinct, non-missing values of ``column``, sorted: the choices of a filter."""
    if column not in board.columns or board.empty:
        return []
    return sorted({str(v) for v in board[column].dropna()})


def filter_leaderboard(
    board: pd.DataFrame,
    datasets: Iterable[str] | None = None,
    families: Iterable[str] | None = None,
    supervision: Iterable[str] | None = None,
    presets: Iterable[str] | None = None,
    train_datasets: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The rows of ``board`` on one of ``datasets``, of one of ``families``, and so on for each
    filter (supervision, preset, training dataset).

    ``None`` or an empty selection means no filter on that column (the sidebar shows it as
    "All"), so a configuration added by a run that is still writing appears without touching
    the filters. Row order is kept.
    """
    keep = pd.Series(True, index=board.index)
    for column, selected in (("dataset", datasets), ("family", families),
                             ("supervision", supervision), ("preset", presets),
                             ("train_dataset", train_datasets)):
        selected = [str(v) for v in (selected or [])]
        if selected and column in board.columns:
            keep &= board[column].astype("string").isin(selected).fillna(False).astype(bool)
        elif selected:
            keep &= False
    return board[keep]


def in_domain(frame: pd.DataFrame) -> pd.Series:
    """The store's ``in_domain`` column (``Store.leaderboard()``: whether a trained run was
    tested on its training dataset; missing for an untrained one) as a nullable boolean."""
    return frame["in_domain"].astype("boolean")


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as shown: the display columns in order, renamed to their headers, numbers
    kept numeric (so the table still sorts), missing text shown as a dash, a fresh index. A
    training dataset is marked in-domain or shifted, and "other labels" where the test's label
    protocol is not the training set's (:func:`warpbench.compatibility.test_condition`)."""
    table = board.reindex(columns=list(DISPLAY_COLUMNS)).copy()
    domain = in_domain(board)
    trained = domain.notna().to_numpy(dtype=bool)
    same = board["same_labels"] if "same_labels" in board else pd.Series(None, index=board.index)
    table.loc[trained, "train_dataset"] = [
        f"{train} ({test_condition(home, labels)})"
        for train, home, labels in zip(table.loc[trained, "train_dataset"], domain[trained],
                                       same[trained])]
    aligned = board["pre_aligned"] if "pre_aligned" in board else pd.Series(pd.NA, board.index)
    table["pre_aligned"] = aligned.astype("boolean").map({True: "yes", False: "no"})
    for column in _TEXT_COLUMNS:
        table[column] = table[column].astype("object").where(table[column].notna(), MISSING_TEXT)
    for column in _COUNT_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in DISPLAY_COLUMNS:
        if column not in _TEXT_COLUMNS and column not in _COUNT_COLUMNS:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    return table.rename(columns=DISPLAY_COLUMNS).reset_index(drop=True)


def fill_command(db_path: str) -> str:
    """The command that fills the store at ``db_path``."""
    return f"warpbench run --suite default --db {db_path}"


def empty_store_message(db_path: str, runs: pd.DataFrame | None = None) -> str:
    """What the leaderboard says when it has nothing to show, in Markdown.

    ``runs`` (``Store.runs()``, optional) lets it say that runs exist but none is complete yet.
    """
    unfinished = 0
    if runs is not None and not runs.empty and "status" in runs.columns:
        unfinished = int((runs["status"] != "complete").sum())
    if unfinished:
        lead = (
            f"The results store `{db_path}` has {unfinished} run(s) that are not complete yet; "
            "a configuration appears here once its run completes."
        )
    else:
        lead = f"The results store `{db_path}` has no complete run yet."
    return (
        f"{lead}\n\nFill it with\n\n```\n{fill_command(db_path)}\n```\n\n"
        "or run `make demo` from the repository root, then reload this page."
    )


def read_error_message(db_path: str, error: BaseException) -> str:
    """What the app says when the store exists but cannot be read, in Markdown."""
    reason = str(error).strip() or type(error).__name__
    if type(error).__name__ == "StoreBusy":
        hint = "Another process kept the file locked; reload the page in a moment."
    else:
        hint = (
            "Check that the path points at a warpbench results file (a DuckDB database), or "
            "pass another one with `--db` or `WARPBENCH_DB`."
        )
    return f"Cannot read the results store `{db_path}`: {reason}\n\n{hint}"



# --- statistics from the per-pair scores ---------------------------------------------------------
#: Columns ``summarise`` adds to the store's leaderboard.
SUMMARY_COLUMNS = ["rank", "dice_ci_low", "dice_ci_high", "dice_worst30"]


def ok_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs that were scored (latest attempt succeeded and a Dice exists)."""
    if pairs.empty:
        return pairs
    return pairs[(pairs["status"] == "ok") & pairs["mean_dice"].notna()]


def summarise(
    board: pd.DataFrame, pairs: pd.DataFrame, resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> pd.DataFrame:
    """The store's leaderboard (``Store.leaderboard()``) with, per configuration, the 95 %
    bootstrap CI of the mean Dice, the worst-30 % Dice (Learn2Reg's DSC30) and the rank on its
    dataset, all from the per-pair scores (``Store.pair_scores()``); row order kept.

    Ranks are among every configuration on the dataset, whatever filters are applied later, so a
    filtered view shows true ranks. A configuration with a failed pair has no rank (its mean is
    over the pairs it scored, so it does not compare with complete ones; ``incomplete``).
    """
    out = board.copy()
    scored = ok_pairs(pairs)
    low, high, worst = {}, {}, {}
    values = scored["mean_dice"].to_numpy(dtype=np.float64) if not scored.empty else np.empty(0)
    groups = scored.groupby("run_id", sort=False).indices if not scored.empty else {}
    samples = [values[index] for index in groups.values()]
    intervals = stats.bootstrap_cis(samples, resamples=resamples, seed=seed)
    for run_id, sample, (lo, hi) in zip(groups, samples, intervals):
        low[run_id], high[run_id] = lo, hi
        worst[run_id] = stats.worst_quantile(sample)
    out["dice_ci_low"] = out["run_id"].map(low).astype("float64")
    out["dice_ci_high"] = out["run_id"].map(high).astype("float64")
    out["dice_worst30"] = out["run_id"].map(worst).astype("float64")
    out["rank"] = np.nan
    for _, rows in out[~incomplete(out)].groupby("dataset", sort=False):
        dice = pd.to_numeric(rows["dice"], errors="coerce").to_numpy(dtype=np.float64)
        out.loc[rows.index, "rank"] = stats.competition_rank(dice)
    return out


def incomplete(board: pd.DataFrame) -> pd.Series:
    """Whether each configuration has failed pairs: it is then ranked apart, after the others."""
    return pd.to_numeric(board["failed"], errors="coerce").fillna(0).gt(0)


def incomplete_message(count: int) -> str:
    """What the leaderboard says of its ``count`` configurations with failed pairs."""
    which = "configuration has" if count == 1 else "configurations have"
    return (f"{count} {which} failed pairs (**Failed**): not ranked, listed after the complete "
            "ones on their dataset, scores over the scored pairs only. Running the same command "
            "again retries failed pairs.")


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``config`` column: how a configuration is named in figures and choosers,
    ``method:preset``, plus `` [train]`` for a learning method trained on a dataset."""
    out = frame.copy()
    if out.empty:
        out["config"] = pd.Series(dtype="object")
        return out
    label = out["method"].astype(str) + ":" + out["preset"].astype(str)
    if "train_dataset" in out.columns:
        train = out["train_dataset"]
        trained = train.notna() & (train.astype("string") != "")
        label = label.where(~trained, label + " [" + train.astype("string") + "]")
    out["config"] = label.astype(object)
    return out


RUN_DESCRIPTION = ["method", "preset", "family", "supervision", "dataset", "train_dataset"]


def attach_runs(pairs: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Per-pair rows (``Store.pair_scores()``, keyed by ``run_id``) with their run's description
    from the leaderboard (method, preset, family, supervision, dataset, training dataset) and its
    ``config`` label; pairs of runs not on the board are dropped."""
    runs = with_labels(board.drop_duplicates("run_id")).set_index("run_id")
    out = pairs[pairs["run_id"].isin(runs.index)].copy()
    for column in [*RUN_DESCRIPTION, "config"]:
        out[column] = out["run_id"].map(runs[column]) if column in runs.columns else None
    return out


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A text column with missing values as "" (so groupby keeps them)."""
    return frame[column].astype("object").where(frame[column].notna(), "")


def overall_ranking(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (method, preset, training dataset): its mean rank over the
    datasets it was evaluated on, how many those are, and its mean Dice over them; best first.

    Mean ranks of configurations evaluated on different sets of datasets do not compare well;
    ``datasets`` says how many each mean is over.
    """
    columns = ["overall_rank", "method", "preset", "family", "supervision", "train_dataset",
               "datasets", "mean_rank", "mean_dice"]
    ranked = summary[summary["rank"].notna()] if "rank" in summary else summary.iloc[:0]
    if ranked.empty:
        return pd.DataFrame(columns=columns)
    keyed = ranked.assign(**{c: _text(ranked, c) for c in
                             ("method", "preset", "family", "supervision", "train_dataset")})
    grouped = keyed.groupby(["method", "preset", "train_dataset"], sort=False).agg(
        family=("family", "first"), supervision=("supervision", "first"),
        datasets=("dataset", "nunique"), mean_rank=("rank", "mean"), mean_dice=("dice", "mean"),
    ).reset_index()
    grouped = grouped.sort_values(["mean_rank", "mean_dice"], ascending=[True, False],
                                  kind="stable").reset_index(drop=True)
    grouped["overall_rank"] = stats.competition_rank(grouped["mean_rank"].to_numpy(),
                                                     higher_is_better=False)
    for column in ("family", "supervision", "train_dataset"):
        grouped[column] = grouped[column].replace("", MISSING_TEXT)
    return grouped[columns]


OVERALL_COLUMNS: dict[str, str] = {
    "overall_rank": "Overall rank",
    "method": "Method",
    "preset": "Preset",
    "family": "Family",
    "supervision": "Supervision",
    "train_dataset": "Trained on",
    "datasets": "Datasets",
    "mean_rank": "Mean rank",
    "mean_dice": "Mean Dice over datasets",
}
OVERALL_FORMATS = {"Overall rank": "%d", "Datasets": "%d", "Mean rank": "%.2f",
                   "Mean Dice over datasets": "%.3f"}


# --- groups of the study -------------------------------------------------------------------------
SUPERVISION_GROUPS = ("classical", "DLIR, unsupervised", "DLIR, label-supervised", "baseline")


def supervision_group(family, supervision) -> str:
    """Which of the study's groups a method belongs to: classical optimisation, unsupervised deep
    learning (DLIR), label-supervised DLIR, or a baseline."""
    if family == "learning":
        return "DLIR, label-supervised" if supervision == "labels" else "DLIR, unsupervised"
    if family in ("classical", "baseline"):
        return family
    return "other"


def not_shifted(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows that are not a network tested under shift: untrained methods, and networks
    tested on the dataset they were trained on (the store's ``in_domain``). The in-domain
    finding is about these; a network trained elsewhere belongs to the domain-shift page."""
    return summary[in_domain(summary).fillna(True).to_numpy(dtype=bool)]


def best_per_group(summary: pd.DataFrame, group_column: str) -> pd.DataFrame:
    """Per dataset and group, the configuration with the highest mean Dice (its row)."""
    scored = summary[pd.to_numeric(summary["dice"], errors="coerce").notna()]
    if scored.empty:
        return scored if group_column in scored else scored.assign(**{group_column: None})
    order = scored.sort_values("dice", ascending=False, kind="stable")
    return order.groupby(["dataset", group_column], sort=True).head(1).sort_values(
        ["dataset", group_column]).reset_index(drop=True)


def with_groups(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with a ``group`` column (:func:`supervision_group`)."""
    out = summary.copy()
    out["group"] = [supervision_group(f, s) for f, s in zip(out["family"], out["supervision"])]
    return out


# --- instrumentation: presets and reported numbers -----------------------------------------------
def preset_spread(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method, training dataset and evaluated dataset: how many presets were measured, the
    lowest and highest mean Dice among them, the spread (highest - lowest), and which presets."""
    columns = ["method", "family", "train_dataset", "dataset", "presets", "lowest", "highest",
               "spread", "best_preset", "worst_preset"]
    scored = summary[pd.to_numeric(summary["dice"], errors="coerce").notna()]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    scored = scored.assign(train_dataset=_text(scored, "train_dataset"))
    rows = []
    for (method, train, dataset), group in scored.groupby(["method", "train_dataset", "dataset"]):
        group = group.sort_values("dice", ascending=False, kind="stable")
        rows.append({
            "method": method, "family": group["family"].iloc[0], "train_dataset": train or None,
            "dataset": dataset, "presets": len(group), "lowest": group["dice"].min(),
            "highest": group["dice"].max(), "spread": group["dice"].max() - group["dice"].min(),
            "best_preset": group["preset"].iloc[0], "worst_preset": group["preset"].iloc[-1],
        })
    return pd.DataFrame(rows, columns=columns).sort_values(
        ["spread", "method"], ascending=[False, True], kind="stable").reset_index(drop=True)


def reported_table(results) -> pd.DataFrame:
    """Reported results (``ReportedResult`` objects) as a table, one row each."""
    columns = ["method", "dataset", "metric", "value", "std", "family", "supervision", "source",
               "table", "configuration", "paper", "url", "warpbench_method", "warpbench_dataset",
               "notes"]
    rows = [r.as_row() for r in results]
    return pd.DataFrame(rows, columns=columns)


def match_reported(reported: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Reported Dice values next to warpbench's own measurement of the same method on the same
    dataset (a reported row names them in ``warpbench_method`` / ``warpbench_dataset``), one row
    per measured preset. Empty when nothing matches."""
    columns = ["method", "dataset", "source", "reported", "preset", "train_dataset", "family",
               "measured", "ci_low", "ci_high", "pairs", "difference"]
    if reported.empty or summary.empty:
        return pd.DataFrame(columns=columns)
    wanted = reported[(reported["metric"] == "dice") & reported["warpbench_method"].notna()
                      & reported["warpbench_dataset"].notna()]
    rows = []
    for record in wanted.to_dict("records"):
        found = summary[(summary["method"] == record["warpbench_method"])
                        & (summary["dataset"] == record["warpbench_dataset"])
                        & summary["dice"].notna()]
        for run in found.to_dict("records"):
            rows.append({
                "method": record["method"], "dataset": record["dataset"],
                "source": record["source"], "reported": record["value"],
                "preset": run["preset"], "train_dataset": run.get("train_dataset"),
                "family": run["family"], "measured": run["dice"],
                "ci_low": run.get("dice_ci_low"), "ci_high": run.get("dice_ci_high"),
                "pairs": run["pairs"], "difference": run["dice"] - record["value"],
            })
    return pd.DataFrame(rows, columns=columns)


# --- domain shift --------------------------------------------------------------------------------
def learning_configs(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of learning methods that were trained on a dataset (their ``in_domain`` is set)."""
    return summary[in_domain(summary).notna().to_numpy(dtype=bool)]


def domain_matrix(summary: pd.DataFrame, method: str, preset: str,
                  reference: str | None = None) -> pd.DataFrame:
    """Mean Dice of one method and preset, training dataset (rows; "none" for a method that is
    not trained) by test dataset (columns). With ``reference`` (an untrained configuration,
    ``method:preset``), its row follows, named ``<reference> (not trained)``, on the same test
    datasets: what the network's row is to be read against."""
    rows = summary[(summary["method"] == method) & (summary["preset"] == preset)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(train=_text(rows, "train_dataset").replace("", "none"))
    matrix = rows.pivot_table(index="train", columns="dataset", values="dice", aggfunc="mean")
    if reference is None or reference == f"{method}:{preset}":
        return matrix
    labelled = with_labels(summary)
    line = labelled[labelled["config"] == reference].groupby("dataset")["dice"].mean()
    return pd.concat([matrix, line.reindex(matrix.columns).rename(
        f"{reference} ({NOT_TRAINED})").to_frame().T])


def other_label_cells(summary: pd.DataFrame, method: str, preset: str) -> set[tuple[str, str]]:
    """The (training, test dataset) cells of :func:`domain_matrix` where the network was scored
    on another label protocol than it was trained on (the store's ``same_labels``)."""
    rows = summary[(summary["method"] == method) & (summary["preset"] == preset)]
    if "same_labels" not in rows:
        return set()
    other = rows[rows["same_labels"].astype("boolean").eq(False).fillna(False).to_numpy(bool)]
    return set(zip(other["train_dataset"], other["dataset"]))


#: How the choosers name the training dataset of an untrained method.
NOT_TRAINED = "not trained"


def training_options(summary: pd.DataFrame) -> list[str]:
    """What a "trained on" chooser offers: :data:`NOT_TRAINED` when untrained methods exist, and
    every training dataset."""
    trained = filter_options(summary, "train_dataset")
    untrained = in_domain(summary).isna().any() if not summary.empty else False
    return ([NOT_TRAINED] if untrained else []) + trained


def filter_training(summary: pd.DataFrame, chosen: Iterable[str] | None) -> pd.DataFrame:
    """The rows trained on one of ``chosen`` (:data:`NOT_TRAINED` chooses the untrained ones);
    none chosen means every row."""
    chosen = set(chosen or [])
    if not chosen:
        return summary
    untrained = in_domain(summary).isna().to_numpy(dtype=bool)
    named = summary["train_dataset"].astype("string").isin(chosen).fillna(False).to_numpy(
        dtype=bool)
    return summary[named | (untrained & (NOT_TRAINED in chosen))]


def _drop(config: str, group: pd.DataFrame, source: str, at_home: np.ndarray) -> dict | None:
    """One row of :func:`domain_drops`: ``group``'s rows split into tested on ``source``
    (``at_home``) and on other datasets; None unless both exist."""
    home, away = group[at_home], group[~at_home]
    if home.empty or away.empty:
        return None
    return {"config": config, "family": group["family"].iloc[0], "group": group["group"].iloc[0],
            "train_dataset": source, "in_domain": home["dice"].mean(),
            "shifted": away["dice"].mean(), "shifted_datasets": away["dataset"].nunique(),
            "drop": home["dice"].mean() - away["dice"].mean()}


def domain_drops(summary: pd.DataFrame) -> pd.DataFrame:
    """For each learning configuration trained on a dataset that it was also tested on: its
    in-domain mean Dice (tested on its training dataset, as the store's ``in_domain`` says), its
    mean over the other test datasets (shifted), and the drop (in-domain - shifted). Classical
    methods tested on the same datasets are given the same in-domain / shifted split, for
    reference.
    """
    columns = ["config", "family", "group", "train_dataset", "in_domain", "shifted",
               "shifted_datasets", "drop"]
    trained = with_groups(with_labels(learning_configs(summary)))
    rows = [_drop(f"{method}:{preset} [{train}]", group, train,
                  in_domain(group).to_numpy(dtype=bool))
            for (method, preset, train), group in trained.groupby(
                ["method", "preset", "train_dataset"])]
    rows = [row for row in rows if row]
    labelled = with_groups(with_labels(summary))
    untrained = labelled[labelled["train_dataset"].isna() & labelled["dice"].notna()]
    for source in sorted({row["train_dataset"] for row in rows}):
        for (method, preset), group in untrained.groupby(["method", "preset"]):
            row = _drop(f"{method}:{preset}", group, source,
                        (group["dataset"] == source).to_numpy(dtype=bool))
            if row:
                rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# --- MI(i;s) against Dice ------------------------------------------------------------------------
MI_MEASURES = {"mi_bits": "MI(i;s) in bits", "nmi": "MI(i;s) / H(s)"}


def mi_points(summary: pd.DataFrame, datasets: pd.DataFrame, measure: str = "mi_bits"
              ) -> pd.DataFrame:
    """One point per dataset and method family: the dataset's MI (``measure``) and the mean Dice
    of the family's best configuration on it. Datasets without MI or without a scored run are
    left out."""
    columns = ["dataset", "family", "config", "mi", "dice"]
    if summary.empty or datasets.empty or measure not in datasets.columns:
        return pd.DataFrame(columns=columns)
    best = best_per_group(with_labels(summary), "family")
    mi = datasets.set_index("dataset")[measure]
    best = best.assign(mi=best["dataset"].map(mi))
    best = best[best["mi"].notna()]
    return best[columns].reset_index(drop=True)


def mi_correlations(points: pd.DataFrame) -> pd.DataFrame:
    """Per family: Pearson and Spearman correlation of MI with Dice across datasets."""
    rows = []
    for family, group in points.groupby("family", sort=True):
        result = stats.correlation(group["mi"], group["dice"])
        rows.append({"family": family, **result.__dict__})
    return pd.DataFrame(rows, columns=["family", "n", "pearson_r", "pearson_p", "spearman_rho",
                                       "spearman_p"])


# --- significance --------------------------------------------------------------------------------
SIGNIFICANCE_METRICS = {"mean_dice": "Dice", "mean_hd95": "HD95 (mm)"}


def score_matrix(pairs: pd.DataFrame, board: pd.DataFrame, dataset: str, configs: Iterable[str],
                 metric: str = "mean_dice") -> pd.DataFrame:
    """Per-pair ``metric`` on ``dataset``: one row per registration pair (fixed, moving), one
    column per configuration label (in the order given), NaN where that pair failed. ``pairs``
    is ``Store.pair_scores()``, ``board`` the leaderboard that describes its runs."""
    configs = list(configs)
    runs = with_labels(board[board["dataset"] == dataset])
    runs = runs[runs["config"].isin(configs)]
    if runs.empty or pairs.empty:
        return pd.DataFrame(columns=configs)
    label = runs.drop_duplicates("config").set_index("run_id")["config"]
    scored = ok_pairs(pairs[pairs["run_id"].isin(label.index)])
    if scored.empty:
        return pd.DataFrame(columns=configs)
    scored = scored.assign(config=scored["run_id"].map(label))
    matrix = scored.pivot_table(index=["fixed", "moving"], columns="config", values=metric,
                                aggfunc="mean")
    return matrix.reindex(columns=configs)


def default_comparison(summary: pd.DataFrame, dataset: str, limit: int = 8) -> list[str]:
    """The configurations compared by default on ``dataset``: each method's best preset (and
    training dataset) by mean Dice, best first, at most ``limit``."""
    rows = with_labels(summary[(summary["dataset"] == dataset) & summary["dice"].notna()])
    if rows.empty:
        return []
    best = rows.sort_values("dice", ascending=False, kind="stable").groupby(
        "method", sort=False).head(1)
    return best["config"].head(limit).tolist()


def significance_table(tests: pd.DataFrame) -> pd.DataFrame:
    """``stats.pairwise_paired_tests`` output with readable headers, for display."""
    headers = {"a": "A", "b": "B", "n": "Pairs", "mean_a": "Mean A", "mean_b": "Mean B",
               "mean_difference": "Mean A - B", "cohens_dz": "Cohen's d_z",
               "t_p": "t-test p", "t_p_holm": "t-test p (Holm)",
               "wilcoxon_p": "Wilcoxon p", "wilcoxon_p_holm": "Wilcoxon p (Holm)",
               "rank_biserial": "Rank-biserial r"}
    return tests.reindex(columns=list(headers)).rename(columns=headers)


# --- runs ----------------------------------------------------------------------------------------
RUN_COLUMNS: dict[str, str] = {
    "started_at": "Started",
    "status": "Status",
    "method": "Method",
    "preset": "Preset",
    "family": "Family",
    "dataset": "Dataset",
    "train_dataset": "Trained on",
    "pairs_ok": "Pairs ok",
    "pairs_failed": "Pairs failed",
    "duration_s": "Duration (s)",
    "seed": "Seed",
    "device": "Device",
    "host": "Host",
    "method_version": "Method version",
    "plugin_distribution": "Plugin",
    "plugin_version": "Plugin version",
    "warpbench_version": "warpbench",
    "git_revision": "Git revision",
    "torch_version": "torch",
    "cuda_version": "CUDA",
    "params": "Parameters",
    "run_id": "Run id",
}


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``Store.runs()`` for display: provenance columns in order, with the run's duration."""
    out = runs.copy()
    if {"started_at", "ended_at"} <= set(out.columns) and not out.empty:
        out["duration_s"] = (pd.to_datetime(out["ended_at"]) - pd.to_datetime(out["started_at"])
                             ).dt.total_seconds()
    return out.reindex(columns=list(RUN_COLUMNS)).rename(columns=RUN_COLUMNS).reset_index(drop=True)


def run_choice_label(run: dict) -> str:
    """How a run is named in a chooser (and so in a shared URL): method:preset [training] on
    dataset, the run id's first 8 characters, and its status unless it is complete."""
    train = run.get("train_dataset")
    trained = f" [{train}]" if isinstance(train, str) and train else ""
    status = "" if run.get("status") == "complete" else f" ({run.get('status')})"
    return (f"{run['method']}:{run['preset']}{trained} on {run['dataset']} "
            f"· {str(run['run_id'])[:8]}{status}")


def waiting_message(what: str, why: str, how: str) -> str:
    """A page's message when the data it shows does not exist yet: what it waits for, why there
    is none, and the command or issue that will produce it (Markdown)."""
    return f"**Waiting for {what}.** {why}\n\n{how}"


def json_safe(value):
    """A value ``st.json`` shows faithfully: missing (None, NaN, NaT) as None, timestamps and
    other objects as text."""
    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


#: The failed-pairs table of the runs page, in display order.
FAILURE_COLUMNS = ["method", "preset", "dataset", "fixed", "moving", "error", "attempt",
                   "run_status", "finished_at", "device", "run_id"]
