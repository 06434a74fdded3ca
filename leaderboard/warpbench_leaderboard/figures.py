"""The app's figures: plain functions from DataFrames (or arrays) to plotly figures.

No Streamlit here, so tests build every figure directly and check what it shows. Colours are
defined once, per method family and per group of the study, and used by every figure.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from warpbench import stats

from warpbench_leaderboard import tables

# --- colours, defined once -----------------------------------------------------------------------
FAMILY_COLOURS: dict[str, str] = {
    "classical": "#1f77b4",  # blue
    "learning": "#d62728",  # red
    "baseline": "#7f7f7f",  # grey
}
OTHER_COLOUR = "#bcbd22"
# The study's groups: classical and baseline keep their family's colour; the two kinds of deep
# learning are shades of the learning family's red.
GROUP_COLOURS: dict[str, str] = {
    "classical": FAMILY_COLOURS["classical"],
    "DLIR, unsupervised": "#ff9896",
    "DLIR, label-supervised": FAMILY_COLOURS["learning"],
    "baseline": FAMILY_COLOURS["baseline"],
}
REPORTED_COLOUR = "#2ca02c"  # literature values
FOLD_COLOUR = "#00e000"  # folded voxels on the Jacobian map
# Label overlays: a qualitative cycle; label value k gets LABEL_CYCLE[k % len].
LABEL_CYCLE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
               "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8",
               "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080")
TEMPLATE = "plotly_white"


def family_colour(family) -> str:
    return FAMILY_COLOURS.get(family, OTHER_COLOUR) if isinstance(family, str) else OTHER_COLOUR


def group_colour(group) -> str:
    return GROUP_COLOURS.get(group, OTHER_COLOUR)


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _stars(p) -> str:
    """Significance marks of a (Holm-adjusted) p-value."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "ns"


def empty_figure(message: str) -> go.Figure:
    """A figure that says why it is empty, instead of blank axes."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(template=TEMPLATE, xaxis_visible=False, yaxis_visible=False, height=200)
    return fig


def _dataset_panels(datasets: list[str], vertical_spacing: float):
    """One panel per dataset, titled with its name, at most three to a row: the figure, each
    dataset with its panel's (row, col) as plotly numbers them, and the number of rows."""
    cols = min(3, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=datasets,
                        vertical_spacing=vertical_spacing)
    places = [(dataset, k // cols + 1, k % cols + 1) for k, dataset in enumerate(datasets)]
    return fig, places, rows


# --- leaderboard ---------------------------------------------------------------------------------
def ci_figure(summary: pd.DataFrame) -> go.Figure:
    """Mean Dice with its 95 % bootstrap CI, one row per configuration, one panel per dataset,
    coloured by family; a configuration with failed pairs says how many in its label."""
    rows = tables.with_labels(summary[summary["dice"].notna()])
    if rows.empty:
        return empty_figure("No configuration has a scored pair yet.")
    failing = tables.incomplete(rows)
    rows.loc[failing, "config"] = [f"{config} ({int(failed)} failed)" for config, failed
                                   in zip(rows.loc[failing, "config"], rows.loc[failing, "failed"])]
    datasets = sorted(rows["dataset"].unique())
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets, shared_yaxes=False,
                        horizontal_spacing=0.12)
    seen = set()
    for col, dataset in enumerate(datasets, start=1):
        part = rows[rows["dataset"] == dataset].sort_values("dice")
        for family, group in part.groupby("family", sort=False, dropna=False):
            fig.add_trace(go.Scatter(
                x=group["dice"], y=group["config"], mode="markers",
                marker=dict(color=family_colour(family), size=9),
                error_x=dict(type="data", symmetric=False,
                             array=(group["dice_ci_high"] - group["dice"]).fillna(0),
                             arrayminus=(group["dice"] - group["dice_ci_low"]).fillna(0)),
                name=str(family), legendgroup=str(family), showlegend=family not in seen,
                hovertemplate="%{y}: %{x:.3f}<extra></extra>",
            ), row=1, col=col)
            seen.add(family)
    fig.update_xaxes(title_text="mean Dice (95% CI)")
    tallest = rows.groupby("dataset").size().max()
    fig.update_layout(template=TEMPLATE, height=max(250, 80 + 28 * tallest),
                      legend_title_text="family", margin=dict(t=60))
    return fig


# --- instrumentation bias ------------------------------------------------------------------------
def preset_spread_figure(summary: pd.DataFrame) -> go.Figure:
    """Mean Dice of every preset of every method, one panel per dataset: a method's presets sit
    side by side around its name, joined by a bar from the lowest to the highest, so the bar's
    length is how much the configuration alone moves the score."""
    rows = tables.with_labels(summary[summary["dice"].notna()])
    if rows.empty:
        return empty_figure("No configuration has a scored pair yet.")
    datasets = sorted(rows["dataset"].unique())
    fig, places, nrows = _dataset_panels(datasets, vertical_spacing=0.15)
    seen = set()
    for dataset, row, col in places:
        part = rows[rows["dataset"] == dataset]
        methods = sorted(part["method"].unique())
        for position, method in enumerate(methods):
            group = part[part["method"] == method].sort_values("preset")
            family = group["family"].iloc[0]
            width = 0.6 if len(group) > 1 else 0.0
            xs = position + np.linspace(-width / 2, width / 2, len(group))
            if len(group) > 1:
                fig.add_trace(go.Scatter(
                    x=[position, position], y=[group["dice"].min(), group["dice"].max()],
                    mode="lines", line=dict(color=family_colour(family), width=8), opacity=0.25,
                    showlegend=False, hoverinfo="skip"), row=row, col=col)
            fig.add_trace(go.Scatter(
                x=xs, y=group["dice"], mode="markers+text", text=group["preset"],
                textposition="top center", textfont=dict(size=10),
                marker=dict(color=family_colour(family), size=9),
                name=str(family), legendgroup=str(family), showlegend=family not in seen,
                customdata=[method] * len(group),
                hovertemplate="%{customdata}:%{text}: %{y:.3f}<extra></extra>"),
                row=row, col=col)
            seen.add(family)
        fig.update_xaxes(tickvals=list(range(len(methods))), ticktext=methods,
                         range=[-0.7, len(methods) - 0.3], row=row, col=col)
        low, high = part["dice"].min(), part["dice"].max()
        pad = max(0.05 * (high - low), 0.02)  # room for the preset names above the markers
        fig.update_yaxes(range=[low - pad, high + 2 * pad], row=row, col=col)
    fig.update_yaxes(title_text="mean Dice", col=1)
    fig.update_layout(template=TEMPLATE, height=340 * nrows, legend_title_text="family",
                      margin=dict(t=60))
    return fig


def reported_vs_measured_figure(matches: pd.DataFrame) -> go.Figure:
    """Each reported value (green diamond) next to warpbench's measurement of the same method on
    the same dataset (one marker per preset, family colour, with its 95 % CI)."""
    if matches.empty:
        return empty_figure("No reported result has a warpbench measurement to compare with.")
    fig = go.Figure()
    labels = [f"{m} on {d}" for m, d in zip(matches["method"], matches["dataset"])]
    reported = matches.assign(label=labels).drop_duplicates(["label", "source"])
    fig.add_trace(go.Scatter(
        x=reported["reported"], y=reported["label"], mode="markers", name="reported",
        marker=dict(symbol="diamond", size=12, color=REPORTED_COLOUR),
        text=reported["source"], hovertemplate="%{y}: reported %{x:.3f} (%{text})<extra></extra>"))
    measured = matches.assign(label=labels)
    for family, group in measured.groupby("family", sort=False):
        fig.add_trace(go.Scatter(
            x=group["measured"], y=group["label"], mode="markers+text", text=group["preset"],
            textposition="top center", name=f"measured ({family})",
            marker=dict(size=10, color=family_colour(family)),
            error_x=dict(type="data", symmetric=False,
                         array=(group["ci_high"] - group["measured"]).fillna(0),
                         arrayminus=(group["measured"] - group["ci_low"]).fillna(0)),
            hovertemplate="%{y}, preset %{text}: measured %{x:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, xaxis_title="mean Dice",
                      height=max(250, 80 + 40 * reported["label"].nunique()))
    return fig


# --- supervision ---------------------------------------------------------------------------------
def supervision_figure(best: pd.DataFrame) -> go.Figure:
    """Per dataset, the best configuration of each group (classical, unsupervised DLIR,
    label-supervised DLIR, baseline): mean Dice with its 95 % CI. The page passes only what is
    not tested under shift (:func:`tables.not_shifted`), so the bars state the in-domain
    finding."""
    if best.empty:
        return empty_figure("No configuration has a scored pair yet.")
    fig = go.Figure()
    for group in [g for g in tables.SUPERVISION_GROUPS + ("other",) if g in set(best["group"])]:
        part = best[best["group"] == group]
        fig.add_trace(go.Bar(
            x=part["dataset"], y=part["dice"], name=group, marker_color=group_colour(group),
            text=part["config"], hovertemplate="%{x}: %{text} %{y:.3f}<extra></extra>",
            error_y=dict(type="data", symmetric=False,
                         array=(part["dice_ci_high"] - part["dice"]).fillna(0),
                         arrayminus=(part["dice"] - part["dice_ci_low"]).fillna(0))))
    fig.update_layout(template=TEMPLATE, barmode="group",
                      yaxis_title="mean Dice (best of group, in domain)",
                      legend_title_text="group", height=400)
    return fig


# --- domain shift --------------------------------------------------------------------------------
def training_curve_figure(curves: pd.DataFrame, title: str = "") -> go.Figure:
    """One training's logged values against its step, one line per (split, name), each name in
    its own panel (losses and validation scores have different scales)."""
    if curves.empty:
        return empty_figure("This training logged no curve points.")
    names = sorted(curves["name"].unique())
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names,
                        vertical_spacing=0.08)
    for row, name in enumerate(names, start=1):
        for split, part in curves[curves["name"] == name].groupby("split"):
            part = part.sort_values("step")
            fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines+markers",
                                     name=f"{split} {name}", marker={"size": 4}), row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(names), col=1)
    fig.update_layout(title=title, height=max(300, 220 * len(names)))
    return fig


def domain_heatmap_figure(matrix: pd.DataFrame, title: str = "",
                          other_labels: set[tuple[str, str]] = frozenset()) -> go.Figure:
    """Mean Dice, training dataset (rows) by test dataset (columns), values written in, with a
    dagger on the (training, test) cells of ``other_labels``: scored on another label protocol."""
    if matrix.empty:
        return empty_figure("No scores for this configuration.")
    z = matrix.to_numpy(dtype=np.float64)
    text = [["" if math.isnan(v) else f"{v:.3f}" + (" †" if (train, test) in other_labels else "")
             for test, v in zip(matrix.columns, row)] for train, row in zip(matrix.index, z)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(matrix.columns), y=list(matrix.index), text=text, texttemplate="%{text}",
        colorscale="Viridis", colorbar=dict(title="Dice"),
        hovertemplate="trained on %{y}, tested on %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="test dataset",
                      yaxis_title="training dataset", height=max(250, 120 + 50 * len(matrix)))
    return fig


def box_stats(pairs: pd.DataFrame, board: pd.DataFrame, metric: str = "mean_dice") -> pd.DataFrame:
    """Per dataset and configuration, the numbers of a Tukey box plot of ``metric``
    (``stats.tukey_box``), so the figure carries a few numbers per box instead of every pair's
    score. ``pairs`` is ``Store.pair_scores()``, ``board`` the leaderboard describing its runs
    (only its configurations get a box)."""
    scored = tables.attach_runs(tables.ok_pairs(pairs), board) if not pairs.empty else pairs
    columns = ["dataset", "config", "family", "train_dataset",
               *stats.BoxStats.__dataclass_fields__]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    values = scored[metric].to_numpy(dtype=np.float64)
    families, trained_on = scored["family"].to_numpy(), scored["train_dataset"].to_numpy()
    groups = scored.groupby(["dataset", "config"], sort=True).indices
    for (dataset, config), index in groups.items():
        box = stats.tukey_box(values[index])
        if box.n:
            rows.append({"dataset": dataset, "config": config, "family": families[index[0]],
                         "train_dataset": trained_on[index[0]], **asdict(box)})
    return pd.DataFrame(rows, columns=columns)


#: Pixels per box of :func:`box_figure` (one line of tick label each) and per panel's title and
#: axis: the figure grows with the boxes, so no label or title is printed over another.
BOX_ROW_PX, BOX_PANEL_PX = 22, 90


def box_figure(boxes: pd.DataFrame, metric_title: str = "Dice") -> go.Figure:
    """Per test dataset, a panel of horizontal boxes of the per-pair scores, one per
    configuration (best median at the top), coloured by family; the panels stacked, each as
    tall as its boxes need, on one scale. Horizontal, so each configuration's name is one line
    of text however many there are (side by side, some 40 per panel overprint their tick
    labels and the titles of the panels below). Takes :func:`box_stats`' output."""
    if boxes.empty:
        return empty_figure("No scored pairs yet.")
    datasets = sorted(boxes["dataset"].unique())
    counts = [int((boxes["dataset"] == dataset).sum()) for dataset in datasets]
    height = BOX_ROW_PX * sum(counts) + BOX_PANEL_PX * len(datasets) + 40
    fig = make_subplots(rows=len(datasets), cols=1, subplot_titles=datasets,
                        row_heights=counts,
                        vertical_spacing=BOX_PANEL_PX / height if len(datasets) > 1 else 0)
    seen = set()
    for row, dataset in enumerate(datasets, start=1):
        part = boxes[boxes["dataset"] == dataset].sort_values("median", kind="stable")
        for family, group in part.groupby("family", sort=False, dropna=False):
            fig.add_trace(go.Box(
                y=group["config"], q1=group["q1"], median=group["median"], q3=group["q3"],
                lowerfence=group["lowerfence"], upperfence=group["upperfence"], mean=group["mean"],
                orientation="h", boxpoints=False, name=str(family), legendgroup=str(family),
                showlegend=family not in seen, marker_color=family_colour(family),
                line_color=family_colour(family)), row=row, col=1)
            seen.add(family)
        fig.update_yaxes(categoryorder="array", categoryarray=list(part["config"]),
                         tickfont=dict(size=11), automargin=True, row=row, col=1)
    low, high = boxes["lowerfence"].min(), boxes["upperfence"].max()
    pad = max(0.02, 0.03 * (high - low))
    fig.update_xaxes(range=[low - pad, high + pad], title_text=metric_title)
    fig.update_layout(template=TEMPLATE, height=height, legend_title_text="family",
                      margin=dict(t=40, b=20))
    return fig


def domain_drop_figure(drops: pd.DataFrame) -> go.Figure:
    """Per configuration, the drop of mean Dice from its training (in-domain) dataset to the other
    test datasets, coloured by group: one horizontal bar each, largest drop at the top, the
    figure as tall as its bars need (so the names stay one line each, however many)."""
    if drops.empty:
        return empty_figure("No configuration was tested both in and out of its domain.")
    fig = go.Figure()
    # A network's name says what it was trained on; an untrained method's row says which
    # dataset counts as its "training" one, for reference.
    trained = drops["family"] == "learning"
    ordered = drops.assign(label=drops["config"].where(
        trained, drops["config"] + " (" + drops["train_dataset"] + ")"))
    ordered = ordered.sort_values("drop", kind="stable")
    for group, part in ordered.groupby("group", sort=False):
        fig.add_trace(go.Bar(
            y=part["label"], x=part["drop"], orientation="h", name=group,
            marker_color=group_colour(group),
            customdata=np.stack([part["in_domain"], part["shifted"]], axis=1),
            hovertemplate="%{y}: in-domain %{customdata[0]:.3f}, shifted %{customdata[1]:.3f}, "
                          "drop %{x:.3f}<extra></extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=list(ordered["label"]),
                     tickfont=dict(size=11), automargin=True)
    fig.update_layout(template=TEMPLATE, xaxis_title="in-domain minus shifted mean Dice",
                      legend_title_text="group", height=BOX_ROW_PX * len(ordered) + 120,
                      margin=dict(t=30))
    return fig


# --- MI vs Dice ----------------------------------------------------------------------------------
def correlation_text(row) -> str:
    """One line per family: Pearson and Spearman coefficients with their p-values."""
    if row["n"] < 3 or math.isnan(row["pearson_r"]):
        return f"{row['family']}: n = {row['n']}, correlation undefined (needs 3 varying points)"
    return (f"{row['family']}: Pearson r = {row['pearson_r']:.2f} "
            f"(p = {_fmt_p(row['pearson_p'])}), Spearman ρ = {row['spearman_rho']:.2f} "
            f"(p = {_fmt_p(row['spearman_p'])}), n = {row['n']}")


def mi_dice_figure(points: pd.DataFrame, correlations: pd.DataFrame,
                   mi_title: str = "MI(i;s) (bits)") -> go.Figure:
    """MI(i;s) of each dataset against the mean Dice of each family's best configuration on it,
    with a least-squares line per family and the correlations written under the title."""
    if points.empty:
        return empty_figure("No dataset has both MI(i;s) and a scored run.")
    fig = go.Figure()
    for family, group in points.groupby("family", sort=True):
        colour = family_colour(family)
        fig.add_trace(go.Scatter(
            x=group["mi"], y=group["dice"], mode="markers+text", text=group["dataset"],
            textposition="top center", name=str(family), marker=dict(size=11, color=colour),
            customdata=group["config"],
            hovertemplate="%{text}: MI %{x:.3f}, Dice %{y:.3f} (%{customdata})<extra></extra>"))
        slope, intercept = stats.least_squares_line(group["mi"], group["dice"])
        if math.isfinite(slope):
            xs = np.array([group["mi"].min(), group["mi"].max()])
            fig.add_trace(go.Scatter(x=xs, y=slope * xs + intercept, mode="lines",
                                     line=dict(color=colour, dash="dash"), showlegend=False,
                                     hoverinfo="skip"))
    lines = [correlation_text(r) for r in correlations.to_dict("records")]
    fig.update_layout(template=TEMPLATE, xaxis_title=mi_title,
                      yaxis_title="mean Dice (best configuration of the family)",
                      legend_title_text="family", height=460, margin=dict(t=40 + 18 * len(lines)))
    for k, line in enumerate(lines):
        fig.add_annotation(text=line, showarrow=False, xref="paper", yref="paper", x=0,
                           y=1.02 + 0.05 * (len(lines) - 1 - k), xanchor="left", yanchor="bottom",
                           font=dict(size=12))
    return fig


# --- significance --------------------------------------------------------------------------------
TESTS = {"wilcoxon": "Wilcoxon signed-rank", "t": "paired t-test"}


def significance_matrix(tests: pd.DataFrame, order: list[str], test: str = "wilcoxon"):
    """The matrices a significance figure shows: mean paired difference (row minus column), the
    Holm-adjusted p of ``test``, and each cell's text (difference and stars); NaN on the diagonal
    and where a comparison is missing."""
    k = len(order)
    index = {name: i for i, name in enumerate(order)}
    diff = np.full((k, k), np.nan)
    p_holm = np.full((k, k), np.nan)
    column = "wilcoxon_p_holm" if test == "wilcoxon" else "t_p_holm"
    for row in tests.to_dict("records"):
        if row["a"] not in index or row["b"] not in index:
            continue
        i, j = index[row["a"]], index[row["b"]]
        diff[i, j], diff[j, i] = row["mean_difference"], -row["mean_difference"]
        p_holm[i, j] = p_holm[j, i] = row[column]
    text = [["" if math.isnan(diff[i, j]) else f"{diff[i, j]:+.3f}<br>{_stars(p_holm[i, j])}"
             for j in range(k)] for i in range(k)]
    return diff, p_holm, text


def significance_figure(tests: pd.DataFrame, order: list[str], test: str = "wilcoxon",
                        metric_title: str = "Dice", higher_is_better: bool = True) -> go.Figure:
    """Pairwise comparisons as a matrix: colour is the mean paired difference (row minus column),
    blue where the row is better, the text adds stars from the Holm-adjusted p of ``test``
    (* < 0.05, ** < 0.01, *** < 0.001, ns otherwise)."""
    if len(order) < 2 or tests.empty:
        return empty_figure("Choose at least two configurations with common scored pairs.")
    diff, p_holm, text = significance_matrix(tests, order, test)
    bound = np.nanmax(np.abs(diff)) if np.isfinite(diff).any() else 1.0
    fig = go.Figure(go.Heatmap(
        z=diff, x=order, y=order, text=text, texttemplate="%{text}", customdata=p_holm,
        colorscale="RdBu", reversescale=not higher_is_better, zmid=0, zmin=-bound, zmax=bound,
        colorbar=dict(title=f"mean {metric_title}<br>row − column"),
        hovertemplate="%{y} − %{x}: %{z:.4f}, Holm p %{customdata:.4f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, height=max(320, 140 + 60 * len(order)),
                      title=f"{TESTS[test]}, Holm-corrected over all {len(tests)} comparisons",
                      yaxis_autorange="reversed", xaxis_title="column", yaxis_title="row")
    return fig


# --- pair viewer ---------------------------------------------------------------------------------
PLANES = ("axis 0", "axis 1", "axis 2")


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(volume, index, axis=axis)


def _plane_titles(index) -> list[str]:
    """The three slices' titles: the plane perpendicular to each axis, at its index."""
    return [f"⟂ {plane} at {index[a]}" for a, plane in enumerate(PLANES)]


def _label_colourscale(max_label: int):
    """A stepped colour scale mapping label k to LABEL_CYCLE[k % len] on [1, max_label]."""
    top = max(int(max_label), 1)
    if top == 1:
        return [[0, LABEL_CYCLE[1]], [1, LABEL_CYCLE[1]]]
    scale = []
    for k in range(1, top + 1):
        lo, hi = (k - 1.5) / (top - 1), (k - 0.5) / (top - 1)
        colour = LABEL_CYCLE[k % len(LABEL_CYCLE)]
        scale += [[min(max(lo, 0), 1), colour], [min(max(hi, 0), 1), colour]]
    return scale


def _square_axes(fig: go.Figure, n_axes: int, aspects=None) -> None:
    """Keep voxels square (times the spacing ratio) and images upright in every subplot."""
    for k in range(1, n_axes + 1):
        suffix = "" if k == 1 else str(k)
        ratio = aspects[k - 1] if aspects else 1.0
        fig.layout[f"yaxis{suffix}"].update(scaleanchor=f"x{suffix}", scaleratio=ratio,
                                            autorange="reversed", showticklabels=False)
        fig.layout[f"xaxis{suffix}"].update(showticklabels=False, constrain="domain")


def _plane_aspects(spacing, rows: int) -> list[float]:
    """scaleratio per subplot: rows of planes perpendicular to axis 0, 1, 2."""
    s = [float(v) for v in (spacing or (1.0, 1.0, 1.0))]
    per_plane = [s[1] / s[2], s[0] / s[2], s[0] / s[1]]
    return per_plane * rows


def slices_figure(images: dict, labels: dict, index, spacing=None, show_labels: bool = True
                  ) -> go.Figure:
    """Orthogonal slices through ``index`` (one voxel index per axis): one row per image
    (e.g. fixed, moving, moved), one column per plane, each label map as a translucent overlay."""
    names = list(images)
    titles = [f"{name}: {title}" for name in names for title in _plane_titles(index)]
    fig = make_subplots(rows=len(names), cols=3, subplot_titles=titles,
                        horizontal_spacing=0.02, vertical_spacing=0.06)
    top = max((int(np.max(v)) for v in labels.values() if v is not None), default=1)
    for r, name in enumerate(names, start=1):
        image = images[name]
        low, high = np.percentile(image, [1, 99]) if image.size else (0, 1)
        for a in range(3):
            fig.add_trace(go.Heatmap(z=_plane(image, a, index[a]), colorscale="gray", zmin=low,
                                     zmax=high, showscale=False, hoverinfo="skip"),
                          row=r, col=a + 1)
            label_map = labels.get(name)
            if show_labels and label_map is not None:
                plane = _plane(label_map, a, index[a]).astype(np.float64)
                plane[plane == 0] = np.nan
                fig.add_trace(go.Heatmap(
                    z=plane, zmin=1, zmax=top, colorscale=_label_colourscale(top), opacity=0.3,
                    showscale=False, hovertemplate="label %{z}<extra></extra>"), row=r, col=a + 1)
    _square_axes(fig, 3 * len(names), _plane_aspects(spacing, len(names)))
    fig.update_layout(template=TEMPLATE, height=260 * len(names) + 40, margin=dict(t=40, b=10))
    return fig


def jacobian_figure(det: np.ndarray, index, spacing=None) -> go.Figure:
    """The Jacobian determinant on the three orthogonal slices (blue: expansion, red:
    contraction, white: 1), with folded voxels (determinant <= 0) painted over in green."""
    folds = det <= 0
    share = 100.0 * folds.mean() if det.size else 0.0
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.02,
                        subplot_titles=_plane_titles(index))
    bound = float(max(abs(np.nanmax(det) - 1), abs(1 - np.nanmin(det)), 0.05)) if det.size else 1.0
    for a in range(3):
        fig.add_trace(go.Heatmap(
            z=_plane(det, a, index[a]), colorscale="RdBu", zmid=1, zmin=1 - bound, zmax=1 + bound,
            showscale=a == 2, colorbar=dict(title="det J"),
            hovertemplate="det J %{z:.3f}<extra></extra>"), row=1, col=a + 1)
        fold_plane = np.where(_plane(folds, a, index[a]), 1.0, np.nan)
        fig.add_trace(go.Heatmap(z=fold_plane, colorscale=[[0, FOLD_COLOUR], [1, FOLD_COLOUR]],
                                 showscale=False, hovertemplate="folded<extra></extra>"),
                      row=1, col=a + 1)
    _square_axes(fig, 3, _plane_aspects(spacing, 1))
    fig.update_layout(template=TEMPLATE, height=330, margin=dict(t=70, b=10),
                      title=f"Jacobian determinant; folded voxels (det ≤ 0, green): "
                            f"{int(folds.sum())} ({share:.3f}%)")
    return fig


def grid_figure(disp: np.ndarray, index, step: int = 3, background: np.ndarray | None = None,
                spacing=None) -> go.Figure:
    """A regular grid (every ``step`` voxels) mapped through ``x -> x + u(x)`` on each of the three
    orthogonal slices: where each fixed voxel samples the moving image. Only the in-plane
    components of ``u`` are drawn."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.02,
                        subplot_titles=_plane_titles(index))
    for a in range(3):
        p, q = [k for k in range(3) if k != a]  # plane axes: rows p, columns q
        up = _plane(disp[p], a, index[a])
        uq = _plane(disp[q], a, index[a])
        rows_n, cols_n = up.shape
        if background is not None:
            fig.add_trace(go.Heatmap(z=_plane(background, a, index[a]), colorscale="gray",
                                     showscale=False, opacity=0.5, hoverinfo="skip"),
                          row=1, col=a + 1)
        xs, ys = [], []
        for i in range(0, rows_n, step):  # lines of constant row
            ys += list(i + up[i, :]) + [None]
            xs += list(np.arange(cols_n) + uq[i, :]) + [None]
        for j in range(0, cols_n, step):  # lines of constant column
            ys += list(np.arange(rows_n) + up[:, j]) + [None]
            xs += list(j + uq[:, j]) + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#d62728", width=1),
                                 showlegend=False, hoverinfo="skip"), row=1, col=a + 1)
    _square_axes(fig, 3, _plane_aspects(spacing, 1))
    fig.update_layout(template=TEMPLATE, height=330, margin=dict(t=40, b=10))
    return fig
