"""The study's comparisons, read off a store, each with its paired test.

"Deep Learning in Medical Image Registration: Magic or Mirage?" (NeurIPS 2024) states its
findings as margins between kinds of method on the same pairs. This module computes them for
whatever a store holds, so that a ``paper`` suite run, on any machine, is reported the same way:

1. unsupervised DLIR against classical optimisation, in domain;
2. label-supervised DLIR against classical optimisation, in domain;
3. the trained-on x tested-on matrix of mean Dice, with the classical reference's row;
4. both kinds of DLIR against classical optimisation under shift (trained on one dataset,
   tested on another: another collection, or the same subjects under acquisition changes);
5. how the DLIR-minus-classical margin changes under domain shift;
6. whether a bigger training budget helps (the same method and training settings but for the
   number of steps, in domain).

The classical side is one configuration named in advance (``syn:default`` unless told
otherwise), not the best one on the test set, which would bias every test in its favour. Each
learning configuration (method and preset: architecture, supervision, budget) is compared on
its own, per test dataset, on the pairs both sides scored: mean paired difference (DLIR minus
classical; positive favours DLIR), two-sided Wilcoxon signed-rank p, and Holm's adjustment over
each table's comparisons. Under shift, the classical score of a pair is the same whichever
dataset the network was trained on, so the change of the margin is the network's own change:
per pair, the mean over the networks trained on other datasets minus the in-domain network.
"""

from __future__ import annotations

import json

import pandas as pd

from warpbench import stats

CLASSICAL = "syn:default"
ALPHA = 0.05
COLUMNS = ["dataset", "config", "pairs", "classical", "dlir", "difference", "p", "p_holm",
           "verdict"]
SHIFTED_COLUMNS = ["dataset", "config", "trained_on", "labels", "pairs", "classical", "dlir",
                   "difference", "p", "p_holm", "verdict"]
#: How a shifted row names the label protocol it was scored on against the one trained on.
LABEL_PROTOCOL = {True: "own", False: "other"}
#: How the matrix names the classical reference's training dataset: it has none.
UNTRAINED = "(not trained)"
SHIFT_COLUMNS = ["dataset", "config", "trained_on", "pairs", "in_domain", "shifted", "change",
                 "p", "p_holm", "verdict"]
BUDGET_COLUMNS = ["dataset", "longer", "shorter", "pairs", "dice_shorter", "dice_longer", "change",
                  "p", "p_holm", "verdict"]
#: The training settings that are the budget; configurations equal in every other setting are
#: the same method trained longer or shorter.
BUDGET_KEYS = ("steps", "minutes")


def pair_scores(board: pd.DataFrame, pairs: pd.DataFrame, params: pd.DataFrame | None = None
                ) -> pd.DataFrame:
    """Every scored pair of the store's current runs with its configuration: ``config``
    (method:preset), method, family, supervision, test ``dataset``, ``train_dataset``,
    ``in_domain`` and ``same_labels`` (the store's, as nullable booleans: NA for an untrained
    run), and with ``params`` (``Store.runs()``'s run_id and params) the run's ``params`` as a
    dict."""
    runs = board.assign(config=board["method"] + ":" + board["preset"],
                        in_domain=board["in_domain"].astype("boolean"),
                        same_labels=board["same_labels"].astype("boolean"))[
        ["run_id", "config", "method", "family", "supervision", "dataset", "train_dataset",
         "in_domain", "same_labels"]]
    if params is not None:
        runs = runs.merge(params[["run_id", "params"]], on="run_id", how="left")
        runs["params"] = runs["params"].map(lambda text: json.loads(text) if text else {})
    ok = pairs[pairs["status"] == "ok"][["run_id", "fixed", "moving", "mean_dice"]]
    return ok.merge(runs, on="run_id")


def _verdict(difference: float, p_holm: float, alpha: float, better: str, worse: str) -> str:
    if not p_holm <= alpha:
        return "no significant difference"
    return better if difference > 0 else worse


def _adjust(rows: list[dict], alpha: float, better: str, worse: str, effect: str) -> None:
    """Holm over the family of ``rows`` (in place), and each row's verdict."""
    for row, p_holm in zip(rows, stats.holm([r["p"] for r in rows]) if rows else []):
        row["p_holm"] = float(p_holm)
        row["verdict"] = _verdict(row[effect], row["p_holm"], alpha, better, worse)


def in_domain_margins(scores: pd.DataFrame, supervision: str, classical: str = CLASSICAL,
                      alpha: float = ALPHA) -> pd.DataFrame:
    """Learning configurations of ``supervision`` ("none" or "labels") trained on the dataset
    they are tested on, against ``classical`` on the same pairs."""
    learned = _learned(scores, supervision)
    rows = _against_classical(learned[learned["in_domain"]], scores, classical,
                              ["dataset", "config"], alpha)
    return pd.DataFrame(rows, columns=COLUMNS)


def shifted_margins(scores: pd.DataFrame, supervision: str, classical: str = CLASSICAL,
                    alpha: float = ALPHA) -> pd.DataFrame:
    """Learning configurations of ``supervision`` tested outside the domain they were trained on
    (``trained_on``; ``labels``: scored on their ``own`` label protocol or an ``other`` one),
    against ``classical`` on the same pairs: one comparison per network and test dataset, Holm
    over the table."""
    learned = _learned(scores, supervision)
    shifted = learned[~learned["in_domain"]].assign(
        trained_on=lambda frame: frame["train_dataset"],
        labels=lambda frame: frame["same_labels"].fillna(True).map(LABEL_PROTOCOL))
    rows = _against_classical(shifted, scores, classical,
                              ["dataset", "config", "trained_on", "labels"], alpha)
    return pd.DataFrame(rows, columns=SHIFTED_COLUMNS)


def _learned(scores: pd.DataFrame, supervision: str) -> pd.DataFrame:
    """The scores of trained networks of ``supervision``."""
    return scores[(scores["family"] == "learning") & (scores["supervision"] == supervision)
                  & scores["in_domain"].notna()]


def _against_classical(learned: pd.DataFrame, scores: pd.DataFrame, classical: str,
                       keys: list[str], alpha: float) -> list[dict]:
    """One paired comparison per group of ``learned`` by ``keys`` (which start with the test
    dataset) against ``classical`` on that dataset's pairs that both scored."""
    reference = scores[scores["config"] == classical]
    rows = []
    for values, group in learned.groupby(keys, sort=True):
        row = dict(zip(keys, values))
        both = group.merge(reference[reference["dataset"] == row["dataset"]],
                           on=["fixed", "moving"], suffixes=("", "_classical"))
        if both.empty:
            continue
        test = stats.paired_tests(both["mean_dice"], both["mean_dice_classical"])
        rows.append({**row, "pairs": test.n, "classical": test.mean_b, "dlir": test.mean_a,
                     "difference": test.mean_difference, "p": test.wilcoxon_p})
    _adjust(rows, alpha, "DLIR better", "classical better", "difference")
    return rows


def domain_matrix(scores: pd.DataFrame, classical: str = CLASSICAL) -> pd.DataFrame:
    """Mean Dice of every trained network, one row per configuration and training dataset
    (``config``, ``trained_on``), one column per test dataset; the classical reference's row
    first (trained on :data:`UNTRAINED`). NaN where a network was not tested."""
    learned = scores[(scores["family"] == "learning") & scores["in_domain"].notna()]
    reference = scores[scores["config"] == classical]
    if learned.empty:
        return pd.DataFrame()
    rows = pd.concat([reference.assign(trained_on=UNTRAINED),
                      learned.assign(trained_on=learned["train_dataset"])])
    matrix = rows.pivot_table(index=["config", "trained_on"], columns="dataset",
                              values="mean_dice", aggfunc="mean")
    first = [key for key in matrix.index if key[1] == UNTRAINED]
    matrix = matrix.reindex(first + [key for key in matrix.index if key[1] != UNTRAINED])
    return matrix.reindex(columns=sorted(learned["dataset"].unique()))


def shift_changes(scores: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Per test dataset and learning configuration trained both on it and elsewhere: the
    per-pair mean score of the shifted networks minus the in-domain one (negative: the
    network loses under shift, and so its margin over classical shrinks by as much)."""
    learned = scores[(scores["family"] == "learning") & scores["in_domain"].notna()]
    rows = []
    for (dataset, config), group in learned.groupby(["dataset", "config"], sort=True):
        own = group[group["in_domain"]]
        others = group[~group["in_domain"]]
        if own.empty or others.empty:
            continue
        shifted = others.groupby(["fixed", "moving"], as_index=False)["mean_dice"].mean()
        both = own.merge(shifted, on=["fixed", "moving"], suffixes=("", "_shifted"))
        test = stats.paired_tests(both["mean_dice_shifted"], both["mean_dice"])
        other_labels = set(others.loc[others["same_labels"] == False, "train_dataset"])  # noqa: E712
        rows.append({"dataset": dataset, "config": config,
                     "trained_on": ", ".join(name + (" (other labels)" if name in other_labels
                                                     else "")
                                             for name in sorted(others["train_dataset"].unique())),
                     "pairs": test.n, "in_domain": test.mean_b, "shifted": test.mean_a,
                     "change": test.mean_difference, "p": test.wilcoxon_p})
    _adjust(rows, alpha, "better under shift", "worse under shift", "change")
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS)


def budget_changes(scores: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Per test dataset and in-domain network: each configuration against one of the same
    method whose training settings differ only in the budget (``BUDGET_KEYS``) and which trained
    fewer steps; the per-pair change (more steps minus fewer). Needs
    ``pair_scores(..., params)``."""
    learned = scores[(scores["family"] == "learning") & scores["in_domain"]]
    rows = []
    for (dataset, _method), group in learned.groupby(["dataset", "method"], sort=True):
        configs = group.drop_duplicates("config").set_index("config")["params"]
        for longer, shorter in ((a, b) for a in configs.index for b in configs.index):
            long_params, short_params = configs[longer], configs[shorter]
            same_otherwise = ({k: v for k, v in long_params.items() if k not in BUDGET_KEYS}
                              == {k: v for k, v in short_params.items() if k not in BUDGET_KEYS})
            if not same_otherwise or long_params.get("steps", 0) <= short_params.get("steps", 0):
                continue
            both = group[group["config"] == longer].merge(
                group[group["config"] == shorter], on=["fixed", "moving"], suffixes=("", "_short"))
            test = stats.paired_tests(both["mean_dice"], both["mean_dice_short"])
            rows.append({"dataset": dataset, "longer": longer, "shorter": shorter,
                         "pairs": test.n, "dice_shorter": test.mean_b, "dice_longer": test.mean_a,
                         "change": test.mean_difference, "p": test.wilcoxon_p})
    _adjust(rows, alpha, "better with more training", "worse with more training", "change")
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def _tally(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts()
    return ", ".join(f"{verdict} in {count}" for verdict, count in counts.items())


def _markdown(table: pd.DataFrame) -> str:
    shown = table.copy()
    for column in shown.columns:
        if column in ("p", "p_holm"):
            shown[column] = shown[column].map(lambda p: f"{p:.2g}")
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: f"{v:+.3f}" if column in (
                "difference", "change") else f"{v:.3f}")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *lines])


def _matrix_markdown(matrix: pd.DataFrame, scores: pd.DataFrame) -> str:
    """:func:`domain_matrix` as a Markdown table: in bold where a network is tested in its own
    training domain, with a dagger where it is scored on another label protocol, a dash where it
    was not tested; ``scores`` (:func:`pair_scores`) says which is which."""
    trained = scores[scores["in_domain"].notna()].drop_duplicates(["train_dataset", "dataset"])
    own = set(zip(trained.loc[trained["in_domain"], "train_dataset"],
                  trained.loc[trained["in_domain"], "dataset"]))
    other = set(zip(trained.loc[trained["same_labels"] == False, "train_dataset"],  # noqa: E712
                    trained.loc[trained["same_labels"] == False, "dataset"]))  # noqa: E712

    def cell(trained_on: str, dataset: str, value: float) -> str:
        if pd.isna(value):
            return "—"
        text = f"**{value:.3f}**" if (trained_on, dataset) in own else f"{value:.3f}"
        return text + (" †" if (trained_on, dataset) in other else "")

    cells = pd.DataFrame(
        [[config, trained_on, *(cell(trained_on, dataset, v) for dataset, v in row.items())]
         for (config, trained_on), row in matrix.iterrows()],
        columns=["config", "trained_on", *matrix.columns])
    return _markdown(cells)


def report(board: pd.DataFrame, pairs: pd.DataFrame, params: pd.DataFrame,
           classical: str = CLASSICAL, alpha: float = ALPHA) -> str:
    """The comparisons as Markdown, a tally and a table each (and the trained-on x tested-on
    matrix), from ``Store.leaderboard()``, ``Store.pair_scores()`` and ``Store.runs()``."""
    scores = pair_scores(board, pairs, params)
    if not (scores["config"] == classical).any():
        known = ", ".join(sorted(scores.loc[scores["family"] == "classical", "config"].unique()))
        raise ValueError(f"the store has no scored pairs of {classical!r} to compare against "
                         f"(classical configurations here: {known or 'none'})")
    sections = []
    for title, table in (
        ("Unsupervised DLIR against classical, in domain",
         in_domain_margins(scores, "none", classical, alpha)),
        ("Label-supervised DLIR against classical, in domain",
         in_domain_margins(scores, "labels", classical, alpha)),
        ("Trained on x tested on", domain_matrix(scores, classical)),
        ("Unsupervised DLIR against classical, under shift",
         shifted_margins(scores, "none", classical, alpha)),
        ("Label-supervised DLIR against classical, under shift",
         shifted_margins(scores, "labels", classical, alpha)),
        ("The DLIR margin under domain shift", shift_changes(scores, alpha)),
        ("More training steps, in domain", budget_changes(scores, alpha)),
    ):
        if table.empty:
            sections.append(f"## {title}\n\nNo runs in the store allow this comparison.")
        elif "verdict" not in table:
            sections.append(f"## {title}\n\nMean Dice of each network (trained on the row's "
                            "dataset) on each test dataset, in bold in its own training domain, "
                            "† where scored on another label protocol than it was trained on; "
                            f"{classical} first, for reference.\n\n"
                            f"{_matrix_markdown(table, scores)}")
        else:
            sections.append(f"## {title}\n\n{len(table)} comparisons: {_tally(table)} "
                            f"(Wilcoxon, Holm-adjusted, alpha {alpha:g}).\n\n{_markdown(table)}")
    intro = (f"Classical reference: {classical}. Differences are in mean Dice per pair, DLIR "
             "minus classical (or shifted minus in-domain, or more steps minus fewer); p is the "
             "two-sided Wilcoxon signed-rank test on the same pairs, p_holm its Holm adjustment "
             "within the table.")
    return "\n\n".join([intro, *sections]) + "\n"
