"""Pair viewer: one registered pair of a run, recomputed, as orthogonal slices of the fixed,
moving and moved images with label overlays, the Jacobian determinant with folds, and the
deformed grid."""

from __future__ import annotations

import os

import streamlit as st

from warpbench_leaderboard import figures, loaders, pairview, tables

TITLE = "Pair viewer"
ICON = ":material/view_in_ar:"
URL_PATH = "pair-viewer"
DEFAULT_CONFIG = "datasets.yaml"


def render(db_path: str) -> None:
    runs = loaders.page_start(
        db_path, "Pair viewer",
        "The store keeps scores, not fields: the viewer re-runs the run's method with the run's "
        "preset and seed on the chosen pair, using the dataset block of `datasets.yaml`, and "
        "warps and scores it as the runner did. Fast for classical methods on small data; a "
        "large volume on CPU takes as long as the registration did.",
        loaders.load_runs,
    )
    if runs is None:
        return
    runs = runs[runs["pairs_ok"] > 0]
    if runs.empty:
        st.info(tables.waiting_message("a run with a scored pair",
                                       "No run in the store has a successfully registered pair.",
                                       f"Fill it with `{tables.fill_command(db_path)}`."))
        return
    pairs = loaders.read_or_explain(db_path, loaders.load_pairs)
    if pairs is None:
        return

    # Options are the labels themselves, so the URL (?run=...) reads as the run's name.
    by_label = {tables.run_choice_label(r): r for r in runs.to_dict("records")}
    with st.sidebar:
        st.header("Pair")
        config_path = st.text_input("datasets.yaml", value=DEFAULT_CONFIG, key="config",
                                    bind="query-params",
                                    help="The dataset configuration the run used (relative to "
                                         "the folder the app was started in)")
    label = st.selectbox("Run", list(by_label), key="run", bind="query-params")
    run = by_label[label]
    ok = pairs[(pairs["run_id"] == run["run_id"]) & (pairs["status"] == "ok")]
    choices = {f"{f} ← {m}": (f, m, d)
               for f, m, d in zip(ok["fixed"], ok["moving"], ok["mean_dice"])}
    pair_label = st.selectbox("Pair (fixed ← moving)", list(choices), key="pair",
                              bind="query-params")
    if not pair_label:
        st.info("This run has no scored pair.")
        return
    fixed, moving, stored_dice = choices[pair_label]
    path = os.path.abspath(os.path.expanduser(config_path or DEFAULT_CONFIG))
    try:
        run = pairview.with_weights(db_path, run)
        items = tuple(sorted((k, tables.json_safe(v)) for k, v in run.items()))  # hashable
        with st.spinner(f"Re-running {run['method']}:{run['preset']} on {fixed} ← {moving} ..."):
            view = loaders.recompute_pair(path, loaders.file_mtime(path), items, fixed, moving)
    except pairview.PairViewError as exc:
        st.warning(str(exc))
        return

    cols = st.columns(4)
    cols[0].metric("Dice (stored)", f"{stored_dice:.3f}")
    cols[1].metric("Dice (recomputed)", f"{view.mean_dice:.3f}",
                   delta=f"{view.mean_dice - stored_dice:+.4f}", delta_color="off")
    cols[2].metric("Folding %", f"{view.folding_percent:.3f}")
    cols[3].metric("Seconds (here)", f"{view.seconds:.2f}", help=f"on {view.device}")

    shape = view.shape
    with st.sidebar:
        st.header("Slices")
        index = tuple(
            st.slider(f"Index along axis {a}", 0, shape[a] - 1, shape[a] // 2, key=f"slice{a}",
                      bind="query-params")
            for a in range(3)
        )
        show_labels = st.checkbox("Label overlays", value=True, key="overlay", bind="query-params")
        step = st.slider("Grid spacing (voxels)", 2, 12, max(2, min(min(shape) // 8, 12)),
                         key="grid", bind="query-params")

    st.subheader("Fixed, moving and moved")
    st.plotly_chart(figures.slices_figure(
        {"fixed": view.fixed_image, "moving": view.moving_image, "moved": view.moved_image},
        {"fixed": view.fixed_labels, "moving": view.moving_labels, "moved": view.moved_labels},
        index, view.spacing, show_labels), key="pair_slices")
    st.subheader("Jacobian determinant")
    st.plotly_chart(figures.jacobian_figure(view.det, index, view.spacing), key="pair_jacobian")
    st.subheader("Deformed grid")
    st.caption("Each fixed voxel x drawn at x + u(x), where it samples the moving image "
               "(in-plane components only), over the moving image.")
    st.plotly_chart(figures.grid_figure(view.disp, index, step, view.moving_image, view.spacing),
                    key="pair_grid")
