"""Runs: every run with its provenance and status, every failed pair with its error, and every
training of a learning method with its loss curves."""

from __future__ import annotations

import json

import streamlit as st

from warpbench_leaderboard import figures, loaders, tables

TITLE = "Runs"
ICON = ":material/history:"
URL_PATH = "runs"


def render(db_path: str) -> None:
    runs = loaders.page_start(db_path, "Runs and provenance", load=loaders.load_runs)
    if runs is None:
        return
    statuses = tables.filter_options(runs, "status")
    chosen = st.multiselect("Status", statuses, key="status", bind="query-params",
                            placeholder="All statuses")
    shown = runs[runs["status"].isin(chosen)] if chosen else runs
    failed_runs = int((shown["pairs_failed"] > 0).sum())
    st.caption(f"{len(shown)} of {len(runs)} runs, newest first; {failed_runs} with failed pairs. "
               "A run is `running` while it writes, `interrupted` when stopped (run the same "
               "command to resume), `complete` when every pair has an outcome.")
    st.dataframe(tables.runs_table(shown), hide_index=True, column_config={
        "Duration (s)": st.column_config.NumberColumn("Duration (s)", format="%.1f")})

    st.header("Failed pairs")
    failures = loaders.read_or_explain(db_path, loaders.load_failed_pairs)
    if failures is not None:
        failures = failures[failures["run_id"].isin(shown["run_id"])]
        if failures.empty:
            st.success("No pair failed in these runs.")
        else:
            st.dataframe(failures[tables.FAILURE_COLUMNS], hide_index=True)

    _trainings(db_path)

    st.header("One run's provenance")
    records = shown.to_dict("records")
    labels = {r["run_id"]: tables.run_choice_label(r) for r in records}
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="run_detail")
    if run_id:
        record = next(r for r in records if r["run_id"] == run_id)
        detail = {k: tables.json_safe(v) for k, v in record.items()}
        if isinstance(detail.get("params"), str):
            try:
                detail["params"] = json.loads(detail["params"])
            except ValueError:
                pass
        st.json(detail)


TRAINING_COLUMNS = ["method", "preset", "supervision", "train_dataset", "status", "steps",
                    "total_steps", "seconds", "attempts", "error", "device", "training_key"]


def _trainings(db_path: str) -> None:
    """The trainings table and the chosen training's curves (nothing when there are none)."""
    trainings = loaders.read_or_explain(db_path, loaders.load_trainings)
    if trainings is None or trainings.empty:
        return
    st.header("Trainings")
    st.caption("One row per trained network (method, preset, training dataset, seed). A training "
               "is `interrupted` when stopped (the next run resumes it from its checkpoint) and "
               "`failed` with its error; its evaluations wait until it completes.")
    st.dataframe(trainings[TRAINING_COLUMNS], hide_index=True, column_config={
        "seconds": st.column_config.NumberColumn("seconds", format="%.0f")})
    labels = {r["training_key"]: f"{r['method']}:{r['preset']} trained on {r['train_dataset']}"
              for r in trainings.to_dict("records")}
    key = st.selectbox("Training", list(labels), format_func=labels.get, key="training_curve")
    curves = loaders.read_or_explain(db_path, loaders.load_training_curves)
    if key and curves is not None:
        st.plotly_chart(figures.training_curve_figure(curves[curves["training_key"] == key],
                                                      labels[key]), key="training_curve_chart")
