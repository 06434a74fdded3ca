"""Evaluating on this machine: ``plugins``, ``datasets``, ``run``, ``train``, ``leaderboard``,
``study``."""

from __future__ import annotations

import json

import click

from warpbench.cli.shared import (CommandLineError, config_option, db_option, examples,
                                  executor_errors, executor_options, interruptible,
                                  load_registry, make_executor, quiet_option)


@click.command(epilog=examples("warpbench plugins", "warpbench --strict plugins"))
@click.pass_context
def plugins(ctx: click.Context) -> int:
    """List the plugins and what each registered.

    Each plugin is shown with its distribution and version. Exits 1 when a plugin could not be
    loaded or registered something wrong (its PROBLEM lines say what)."""
    from warpbench.methods import availability_of

    registry = ctx.find_root().command.plugin_registry(ctx)
    for info in registry.plugins.values():
        origin = f"{info.distribution} {info.version}".strip()
        click.echo(f"{info.name}  ({origin})")
        for item in info.registered:
            kind, _, name = item.partition(":")
            available, reason = (availability_of(registry.methods[name]) if kind == "method"
                                 else (True, ""))
            click.echo(f"    {item}" + ("" if available else f"  (unavailable: {reason})"))
        for problem in registry.problems:
            if problem.plugin == info.name:
                click.echo(f"    PROBLEM: {problem.reason}")
    return 1 if registry.problems else 0


@click.command(epilog=examples("warpbench datasets", "warpbench datasets --no-mi --config my.yaml"))
@config_option
@db_option
@click.option("--no-mi", is_flag=True, help="skip MI(i;s), so no subject is loaded")
def datasets(config: str, db: str, no_mi: bool) -> int:
    """Show each dataset's availability, subjects, pairs and MI.

    For each dataset of datasets.yaml: available or why not, its subjects per split, test pairs,
    labels, whether it is pre-aligned (else the classical presets start from an affine), its
    domain where it names another block's, and the mutual information of intensity and label,
    MI(i;s), cached in the store."""
    from warpbench.config import build_dataset, load_config
    from warpbench.datasets import DatasetConfigError
    from warpbench.scheduler import describe_dataset
    from warpbench.store import Store

    registry = load_registry()
    loaded = load_config(config)
    store = Store(db)
    stored = {} if no_mi else {r["fingerprint"]: r for r in store.datasets().to_dict("records")}
    for name in loaded.datasets:
        try:
            dataset = build_dataset(loaded, name, registry.dataset_kinds)
        except DatasetConfigError as exc:
            click.echo(f"{name}: unavailable: {exc}")
            continue
        available, reason = dataset.availability()
        if not available:
            click.echo(f"{name}: unavailable: {reason}")
            continue
        counts = ", ".join(f"{s} {len(dataset.subjects(s))}" for s in ("train", "val", "test"))
        line = (f"{name}: {dataset.kind}, {len(dataset.all_subjects())} subjects ({counts}), "
                f"{len(dataset.pairs('test'))} test pairs, {len(dataset.labels)} labels, "
                + ("pre-aligned" if dataset.pre_aligned else "not pre-aligned")
                + (f", domain {dataset.domain}" if dataset.domain != name else ""))
        if not no_mi:
            row = stored.get(dataset.fingerprint())
            if row is None:
                row = describe_dataset(dataset)
                store.record_dataset(row)
            line += f", MI(i;s) {row['mi_bits']:.3f} bits (normalised {row['nmi']:.3f})"
        click.echo(line)
    return 0


def selection_options(command):
    """The options ``run`` and ``train`` share: what to compute (a suite, or methods and
    datasets), where to store it, and how to compute it."""
    for option in reversed([
        db_option, config_option,
        click.option("--suite", help="a suite of datasets.yaml (default: 'default')"),
        click.option("--method", multiple=True, metavar="NAME[:PRESET]",
                     help="method and preset (NAME:* for every preset); repeatable"),
        click.option("--dataset", multiple=True, metavar="NAME", help="repeatable"),
        click.option("--train-on", multiple=True, metavar="NAME",
                     help="train learning methods on this dataset (default: the suite's "
                          "train_on, else every selected dataset with train subjects); "
                          "repeatable"),
        *executor_options,
        click.option("--seed", type=int, help="the seed (default: the suite's, else 0)"),
        quiet_option,
    ]):
        command = option(command)
    return command


def _prepare(*, db, config, suite, method, dataset, train_on, device, executor, workers,
             address, memory_limit, seed, quiet, time_limit=None, restart=False):
    """The plan and scheduler of a selection: a suite's lists, or --method / --dataset /
    --train-on instead (with --method and --dataset no suite is needed). What the plan sets
    aside is said on stderr; a selection naming something unknown is a user error."""
    from warpbench.config import load_config
    from warpbench.scheduler import Scheduler, expand_method_spec, make_plan
    from warpbench.store import Store
    from warpbench.tuning import add_tuned_presets

    registry = load_registry()
    for problem in add_tuned_presets(registry, Store(db)):  # the store's tuned@DATASET presets
        click.echo(f"warning: {problem}", err=True)
    loaded = load_config(config)
    chosen = None
    if suite or not (method and dataset):
        chosen = loaded.suite(suite or "default")
    methods = list(method) or (chosen.methods if chosen else [])
    datasets = list(dataset) or (chosen.datasets if chosen else [])
    # A suite's train_on goes with its datasets; --dataset alone trains on what it names.
    train_on = list(train_on) or (chosen.train_on if chosen and not dataset else None)
    time_limit = time_limit or (chosen.time_limit if chosen else None)
    seed = seed if seed is not None else (chosen.seed if chosen else 0)
    try:
        for spec in methods:
            expand_method_spec(spec, registry)
    except ValueError as exc:
        where = f"{loaded.path}: suite {chosen.name!r}: " if chosen and not method else ""
        raise CommandLineError(f"{where}{exc}") from None
    chosen_executor = make_executor(registry, executor, device=device, workers=workers,
                                    address=address, memory_limit_mb=memory_limit)
    plan = make_plan(registry, loaded, methods, datasets, train_on)
    for name, reason in plan.unavailable_methods.items():
        click.echo(f"skipping method {name}: {reason}", err=True)
    for name, reason in plan.unavailable.items():
        click.echo(f"skipping dataset {name}: {reason}", err=True)
    for (source, _), reason in plan.skipped.items():
        click.echo(f"not training on {source}: {reason}", err=True)
    for (source, target), note in plan.other_labels.items():
        click.echo(f"networks trained on {source}, tested on {target}: {note}", err=True)
    scheduler = Scheduler(registry, Store(db), chosen_executor, seed=seed, time_limit=time_limit,
                          restart=restart, progress=not quiet)
    return plan, scheduler


def _computed(work):
    """The summary of ``work()``, reported on stderr; Ctrl-C or SIGTERM meanwhile stop the
    command (:class:`Interrupted`)."""
    with interruptible(), executor_errors():
        summary = work()
    _report(summary)
    return summary


def _report(summary) -> None:
    trainings = (f"{summary.trainings_done} trainings run, {summary.trainings_cached} cached, "
                 f"{summary.trainings_failed} failed")
    click.echo(f"done: {trainings}; {summary.runs_done} runs computed, {summary.runs_up_to_date} "
               f"already complete, {summary.pairs_ok} pairs scored, {summary.pairs_failed} "
               "failed", err=True)
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    for failure in summary.failures:
        click.echo(f"failed: {failure}", err=True)
    for skipped in summary.skipped:
        click.echo(f"skipped: {skipped}", err=True)


@click.command(epilog=examples(
    "warpbench run                                   # the suite 'default'",
    "warpbench run --suite learning --db results/warpbench.duckdb",
    "warpbench run --method greedy:fast --method affine --dataset hippocampus",
    "warpbench run --method 'greedy:*' --dataset synth-grouped --time-limit 60"))
@selection_options
@click.option("--time-limit", type=float, metavar="SECONDS",
              help="seconds per pair before it counts as failed")
@click.option("--restart", is_flag=True, help="start new runs instead of resuming the newest ones")
def run(db: str, **selection) -> int:
    """Evaluate methods on datasets into the store.

    Learning methods are trained first where no training is stored. It resumes: pairs already scored
    and trainings already done (weights under checkpoints/ beside the store) are kept. Ctrl-C (or
    SIGTERM) stops it with exit status 130; the same command then goes on where it stopped. Exits 1
    when a pair or a training failed, or a selected dataset was set aside."""
    plan, scheduler = _prepare(db=db, **selection)
    if not plan.runs and (plan.unavailable_methods or plan.unavailable):
        click.echo("nothing to run: every selected method or dataset was set aside (above)",
                   err=True)
        return 1
    click.echo(f"{len(plan.trainings)} trainings, {len(plan.runs)} runs on {len(plan.datasets)} "
               f"datasets, device {scheduler.executor.describe()}, store {db}", err=True)
    summary = _computed(lambda: scheduler.run(plan))
    set_aside = plan.unavailable  # a missing optional method (a peer) is no failure
    return 1 if summary.pairs_failed or summary.trainings_failed or set_aside else 0


@click.command(epilog=examples(
    "warpbench train --method voxelmorph:labels --dataset synth-distinct",
    "warpbench train --suite learning"))
@selection_options
def train(**selection) -> int:
    """Train learning methods without evaluating them.

    Trainings are cached in the store (weights under checkpoints/ beside it) and resume from
    their checkpoints; Ctrl-C (or SIGTERM) stops with exit status 130. Exits 1 when a training
    failed."""
    plan, scheduler = _prepare(**selection)
    if not plan.trainings:
        click.echo("nothing to train: the selection has no learning method with a training "
                   "dataset", err=True)
        return 0
    click.echo(f"{len(plan.trainings)} trainings, device {scheduler.executor.describe()}, "
               f"checkpoints under {scheduler.checkpoints}", err=True)
    summary = _computed(lambda: scheduler.train(plan))
    return 1 if summary.trainings_failed else 0


LEADERBOARD_FORMAT = {
    "dice": "{:.3f}", "dice_std": "{:.3f}", "hd95": "{:.2f}", "sdlogj": "{:.3f}",
    "folding_percent": "{:.3f}", "seconds": "{:.2f}", "peak_memory_mb": "{:.0f}",
}
# New fields go at the end: scripts read these columns by position.
LEADERBOARD_FIELDS = ["method", "preset", "family", "dataset", "pairs", "failed", "dice",
                      "dice_std", "hd95", "sdlogj", "folding_percent", "seconds", "peak_memory_mb",
                      "supervision", "train_dataset", "in_domain", "same_labels", "pre_aligned"]
#: How the table marks a configuration with failed pairs (ranked apart, after the others).
INCOMPLETE_MARK = "(unranked)"


@click.command(epilog=examples("warpbench leaderboard",
                               "warpbench leaderboard --db all.duckdb --format csv > board.csv"))
@db_option
@click.option("--format", "table_format", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True)
def leaderboard(db: str, table_format: str) -> int:
    """Print the leaderboard.

    One row per configuration's latest complete run, with its mean scores. A configuration with
    failed pairs is ranked apart: after the others on its dataset, marked in the table, its scores
    over the pairs it scored. A learning method's row says what it was trained on and whether the
    dataset it was tested on is of that one's source (in-domain) or another (shifted), and
    whether it was scored on another label protocol than it was trained on (other labels)."""
    from warpbench.compatibility import test_condition
    from warpbench.store import Store

    table = Store(db).leaderboard()[LEADERBOARD_FIELDS]
    if table_format == "json":
        records = json.loads(table.to_json(orient="records"))
        click.echo(json.dumps(records, indent=2))
    elif table_format == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif table.empty:
        click.echo(f"no complete runs in {db}; fill it with: "
                   f"warpbench run --suite default --db {db}")
    else:
        shown = table.drop(columns="supervision")  # the preset says it
        shown["in_domain"] = [test_condition(d, s) or "-"
                              for d, s in zip(shown["in_domain"], shown.pop("same_labels"))]
        shown["train_dataset"] = shown["train_dataset"].fillna("-")
        shown["pre_aligned"] = shown["pre_aligned"].map({True: "yes", False: "no"}).fillna("-")
        shown = shown.rename(columns={"train_dataset": "trained_on", "in_domain": "domain"})
        for column, fmt in LEADERBOARD_FORMAT.items():
            shown[column] = shown[column].map(
                lambda v, f=fmt: "-" if v is None or v != v else f.format(v))
        failing = table["failed"].fillna(0) > 0
        shown["failed"] = [f"{n} {INCOMPLETE_MARK}" if bad else str(n)
                           for n, bad in zip(table["failed"], failing)]
        click.echo(shown.to_string(index=False))
        if failing.any():
            click.echo(f"{INCOMPLETE_MARK}: {int(failing.sum())} configuration(s) with failed "
                       "pairs: not ranked, listed after the complete configurations of their "
                       "dataset, scores over the scored pairs only; run the same command again "
                       "to retry them")
    return 0


@click.command(epilog=examples("warpbench study --db results/paper.duckdb",
                               "warpbench study --classical greedy:default --alpha 0.01"))
@db_option
@click.option("--classical", default="syn:default", show_default=True, metavar="METHOD:PRESET",
              help="the classical configuration every network is compared with")
@click.option("--alpha", type=float, default=0.05, show_default=True,
              help="significance level after Holm's adjustment")
def study(db: str, classical: str, alpha: float) -> int:
    """Print the study's comparisons, with paired tests.

    As Markdown: classical registration against unsupervised and label-supervised networks in
    domain, under domain shift, and with more training."""
    from warpbench import study as comparisons
    from warpbench.store import Store

    store = Store(db)
    store.check_file()  # a missing or foreign file is one error naming it, not a traceback
    try:
        text = comparisons.report(store.leaderboard(), store.pair_scores(), store.runs(),
                                  classical, alpha)
    except ValueError as exc:
        raise CommandLineError(f"{db}: {exc}") from None
    click.echo(text, nl=False)
    return 0


COMMANDS = [plugins, datasets, run, train, leaderboard, study]
