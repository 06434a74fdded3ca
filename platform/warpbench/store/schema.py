"""The store's tables and views as this version of warpbench declares them (``SCHEMA_VERSION``).

A new file gets them as written here; an older file is brought to them by the steps of
:mod:`warpbench.store.migrations`. Changing a table therefore means a new version and a step.
"""

from __future__ import annotations

SCHEMA_VERSION = 6

#: The columns no two rows of a result table share (its primary key): a result is stored once,
#: whoever writes it twice (two processes on one run, a bulk append, a merge).
KEYS = {
    "pairs": ("run_id", "fixed", "moving", "attempt"),
    "labels": ("run_id", "fixed", "moving", "attempt", "label"),
    "datasets": ("dataset", "fingerprint"),
    "tunings": ("tuning_key",),
    "tuning_trials": ("tuning_key", "trial"),
    "tuning_pairs": ("tuning_key", "trial", "fixed", "moving"),
}


def _primary_key(table: str) -> str:
    return f"    PRIMARY KEY ({', '.join(KEYS[table])})"

# The provenance a run and a training both carry: which method (and plugin) it was, and where
# and with what it ran. (The order of the columns is the files' order; keep it.)
_METHOD_COLUMNS = """\
    method_version VARCHAR,
    family VARCHAR,
    supervision VARCHAR,
    plugin VARCHAR,
    plugin_distribution VARCHAR,
    plugin_version VARCHAR,
"""
_ENVIRONMENT_COLUMNS = """\
    device VARCHAR,
    torch_version VARCHAR,
    cuda_version VARCHAR,
    warpbench_version VARCHAR,
    git_revision VARCHAR,
    host VARCHAR,
"""

#: How a registered pair came out: a run's pair and a tuning trial's pair alike.
_PAIR_OUTCOME_COLUMNS = """\
    status VARCHAR NOT NULL,
    error VARCHAR,
    mean_dice DOUBLE,
    mean_hd95 DOUBLE,
    sdlogj DOUBLE,
    folding_percent DOUBLE,
    seconds DOUBLE,
    peak_memory_mb DOUBLE,
    device VARCHAR,
    finished_at TIMESTAMP,
"""

#: Each table's CREATE statement, by name, in the order a new file creates them.
TABLES = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "runs": f"""CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    config_key VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
{_METHOD_COLUMNS}    dataset VARCHAR NOT NULL,
    dataset_fingerprint VARCHAR,
    train_dataset VARCHAR,
    in_domain BOOLEAN,
    training_key VARCHAR,
    seed INTEGER,
{_ENVIRONMENT_COLUMNS}    started_at TIMESTAMP,
    ended_at TIMESTAMP,
    status VARCHAR NOT NULL,
    same_labels BOOLEAN,
    pre_aligned BOOLEAN
)""",
    "pairs": f"""CREATE TABLE IF NOT EXISTS pairs (
    run_id VARCHAR NOT NULL,
    fixed VARCHAR NOT NULL,
    moving VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
{_PAIR_OUTCOME_COLUMNS}{_primary_key("pairs")}
)""",
    "labels": f"""CREATE TABLE IF NOT EXISTS labels (
    run_id VARCHAR NOT NULL,
    fixed VARCHAR NOT NULL,
    moving VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    label INTEGER NOT NULL,
    dice DOUBLE,
    hd95 DOUBLE,
{_primary_key("labels")}
)""",
    "datasets": f"""CREATE TABLE IF NOT EXISTS datasets (
    dataset VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    kind VARCHAR,
    subjects INTEGER,
    train_subjects INTEGER,
    val_subjects INTEGER,
    test_subjects INTEGER,
    test_pairs INTEGER,
    shape VARCHAR,
    spacing VARCHAR,
    labels VARCHAR,
    mi_bits DOUBLE,
    label_entropy_bits DOUBLE,
    nmi DOUBLE,
    mi_estimator VARCHAR,
    computed_at TIMESTAMP,
{_primary_key("datasets")}
)""",
    "trainings": f"""CREATE TABLE IF NOT EXISTS trainings (
    training_key VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
{_METHOD_COLUMNS}    train_dataset VARCHAR NOT NULL,
    train_dataset_fingerprint VARCHAR,
    seed INTEGER,
{_ENVIRONMENT_COLUMNS}    folder VARCHAR,
    weights VARCHAR,
    status VARCHAR NOT NULL,
    error VARCHAR,
    attempts INTEGER,
    steps INTEGER,
    total_steps INTEGER,
    seconds DOUBLE,
    started_at TIMESTAMP,
    ended_at TIMESTAMP
)""",
    "training_curves": """CREATE TABLE IF NOT EXISTS training_curves (
    training_key VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    split VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE,
    logged_at TIMESTAMP
)""",
    # A tuning (warpbench.tuning): one method's search on one dataset's validation pairs, its
    # budget asked and used, and its best trial, whose parameters are the preset tuned@DATASET.
    "tunings": f"""CREATE TABLE IF NOT EXISTS tunings (
    tuning_key VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    preset VARCHAR NOT NULL,
    base_params VARCHAR NOT NULL,
{_METHOD_COLUMNS}    dataset VARCHAR NOT NULL,
    dataset_fingerprint VARCHAR,
    seed INTEGER,
    search_space VARCHAR NOT NULL,
    validation_pairs VARCHAR NOT NULL,
    objective VARCHAR,
    max_folding DOUBLE,
    sampler VARCHAR,
    pruner VARCHAR,
    optuna_version VARCHAR,
{_ENVIRONMENT_COLUMNS}    budget_trials INTEGER,
    budget_seconds DOUBLE,
    used_trials INTEGER,
    used_seconds DOUBLE,
    best_trial INTEGER,
    best_value DOUBLE,
    best_params VARCHAR,
    status VARCHAR NOT NULL,
    started_at TIMESTAMP,
    ended_at TIMESTAMP,
{_primary_key("tunings")}
)""",
    # One trial of a tuning: the parameters it sampled and the whole preset they make, its state
    # (complete, pruned or failed; running or interrupted while unfinished), its scores over the
    # validation pairs it registered, and the seconds it spent (registration, training).
    "tuning_trials": f"""CREATE TABLE IF NOT EXISTS tuning_trials (
    tuning_key VARCHAR NOT NULL,
    trial INTEGER NOT NULL,
    state VARCHAR NOT NULL,
    sampled VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
    value DOUBLE,
    mean_hd95 DOUBLE,
    sdlogj DOUBLE,
    folding_percent DOUBLE,
    pairs_scored INTEGER,
    pairs_failed INTEGER,
    seconds DOUBLE,
    training_seconds DOUBLE,
    error VARCHAR,
    started_at TIMESTAMP,
    ended_at TIMESTAMP,
{_primary_key("tuning_trials")}
)""",
    "tuning_pairs": f"""CREATE TABLE IF NOT EXISTS tuning_pairs (
    tuning_key VARCHAR NOT NULL,
    trial INTEGER NOT NULL,
    fixed VARCHAR NOT NULL,
    moving VARCHAR NOT NULL,
    position INTEGER NOT NULL,
{_PAIR_OUTCOME_COLUMNS}{_primary_key("tuning_pairs")}
)""",
}

#: The views every read goes through: a pair's newest attempt, each tuned preset (method,
#: tuned@DATASET) as the newest complete tuning of it defines it, a configuration's newest
#: complete run (a run of a tuned preset only while it has the parameters that define the preset
#: now: a newer tuning that found others makes it a past configuration, as a dataset's newer
#: description does its runs; one whose preset no tuning in the store defines stays), and a
#: dataset's newest description.
VIEWS = """
CREATE OR REPLACE VIEW latest_pairs AS
    SELECT * FROM pairs
    QUALIFY row_number() OVER (PARTITION BY run_id, fixed, moving ORDER BY attempt DESC) = 1;
CREATE OR REPLACE VIEW tuned_presets AS
    SELECT * FROM tunings WHERE status = 'complete' AND best_params IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY method, preset ORDER BY ended_at DESC) = 1;
CREATE OR REPLACE VIEW latest_runs AS
    SELECT * FROM runs r WHERE status = 'complete'
        AND NOT EXISTS (SELECT 1 FROM tuned_presets p WHERE p.method = r.method
                        AND p.preset = r.preset AND p.best_params <> r.params)
    QUALIFY row_number() OVER (PARTITION BY config_key ORDER BY started_at DESC) = 1;
CREATE OR REPLACE VIEW latest_datasets AS
    SELECT * FROM datasets
    QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY computed_at DESC) = 1;
"""

#: The tables every warpbench store has, and those that arrived with schema version 2.
REQUIRED_TABLES = ("runs", "pairs", "labels", "datasets")
TRAINING_TABLES = ("trainings", "training_curves")
#: The tables of tunings (schema version 5), in the order they are written.
TUNING_TABLES = ("tunings", "tuning_trials", "tuning_pairs")
#: The tables that hold results, in the order they are merged and exported (a store older than
#: the training or the tuning tables has none of them: they are optional in a source).
RESULT_TABLES = REQUIRED_TABLES + TRAINING_TABLES + TUNING_TABLES


def create(con) -> None:
    """Create every table and view (on a new file; an existing one is migrated instead)."""
    for ddl in TABLES.values():
        con.execute(ddl)
    con.execute(VIEWS)


def table_names(con, catalog: str | None = None) -> set[str]:
    """The tables and views of the connection (or of one attached ``catalog``)."""
    where = "WHERE table_catalog = ?" if catalog else ""
    rows = con.execute(
        f"SELECT table_name FROM information_schema.tables {where}", [catalog] if catalog else []
    ).fetchall()
    return {name for (name,) in rows}
