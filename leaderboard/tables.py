"""Data shaping for the leaderboard pages: plain functions on DataFrames, no Streamlit.

The pages read the store, pass its DataFrames through these functions and lay out what comes
back, so everything that decides *what* is shown can be tested without running the app.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

# Store column -> header shown on the leaderboard, in display order.
DISPLAY_COLUMNS: dict[str, str] = {
    "method": "Method",
    "preset": "Preset",
    "family": "Family",
    "dataset": "Dataset",
    "pairs": "Pairs",
    "failed": "Failed",
    "dice": "Mean Dice",
    "dice_std": "Std",
    "hd95": "HD95 (mm)",
    "sdlogj": "SDlogJ",
    "folding_percent": "Folding %",
    "seconds": "Seconds/pair",
    "peak_memory_mb": "Peak memory (MB)",
}

# Header -> printf-style format for the numeric columns (what st.column_config understands).
NUMBER_FORMATS: dict[str, str] = {
    "Pairs": "%d",
    "Failed": "%d",
    "Mean Dice": "%.3f",
    "Std": "%.3f",
    "HD95 (mm)": "%.2f",
    "SDlogJ": "%.3f",
    "Folding %": "%.3f",
    "Seconds/pair": "%.2f",
    "Peak memory (MB)": "%.0f",
}

# Header -> tooltip.
COLUMN_HELP: dict[str, str] = {
    "Pairs": "Test pairs registered successfully (latest attempt of each pair)",
    "Failed": "Test pairs whose latest attempt failed; they are left out of the scores",
    "Mean Dice": "Mean over pairs of the mean Dice over labels (higher is better)",
    "Std": "Standard deviation of the per-pair mean Dice",
    "HD95 (mm)": "Mean over pairs of the 95th-percentile Hausdorff distance (lower is better)",
    "SDlogJ": "Standard deviation of the log Jacobian determinant (lower is smoother)",
    "Folding %": "Percentage of voxels with a non-positive Jacobian determinant",
    "Seconds/pair": "Mean wall-clock seconds per registration",
    "Peak memory (MB)": "Largest peak memory of one registration (GPU if used, else resident)",
}

_TEXT_COLUMNS = ("method", "preset", "family", "dataset")
_COUNT_COLUMNS = ("pairs", "failed")
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
) -> pd.DataFrame:
    """The rows of ``board`` on one of ``datasets`` and of one of ``families``.

    ``None`` or an empty selection means no filter on that column (the sidebar shows it as
    "All"), so a configuration added by a run that is still writing appears without touching
    the filters. Row order is kept.
    """
    keep = pd.Series(True, index=board.index)
    for column, selected in (("dataset", datasets), ("family", families)):
        selected = [str(v) for v in (selected or [])]
        if selected:
            keep &= board[column].astype("string").isin(selected).fillna(False).astype(bool)
    return board[keep]


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as shown: the display columns in order, renamed to their headers, numbers
    kept numeric (so the table still sorts), missing text shown as a dash, a fresh index."""
    table = board.reindex(columns=list(DISPLAY_COLUMNS)).copy()
    for column in _TEXT_COLUMNS:
        table[column] = table[column].astype("object").where(table[column].notna(), MISSING_TEXT)
    for column in _COUNT_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in DISPLAY_COLUMNS:
        if column not in _TEXT_COLUMNS and column not in _COUNT_COLUMNS:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    return table.rename(columns=DISPLAY_COLUMNS).reset_index(drop=True)


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """``display_table``'s output with every number rendered as text by ``NUMBER_FORMATS``
    (missing numbers as a dash), for places that cannot format columns themselves."""
    out = table.copy()
    for header, fmt in NUMBER_FORMATS.items():
        if header in out.columns:
            out[header] = [MISSING_TEXT if pd.isna(v) else fmt % v for v in out[header]]
    return out


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

