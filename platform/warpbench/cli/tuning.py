"""``warpbench tune``: equal-budget tuning of methods on validation pairs
(:mod:`warpbench.tuning`)."""

from __future__ import annotations

import json

import click

from warpbench.cli.shared import (CommandLineError, config_option, db_option, examples,
                                  executor_errors, executor_options, interruptible,
                                  load_registry, make_executor, quiet_option)


def _executor_options(command):
    """``run``'s and ``train``'s executor options, with their default, the pool. It fits tuning:
    a trial registers its pairs through ``executor.evaluate`` as a run does, the tuner takes the
    results in pair order whatever order the workers finish them in (so the pruner, and a seed's
    trials, are the same on one worker or many), a pruned trial closes the results (the pool
    stops its workers), and only validation pairs are sent (checked before any is). A worker
    also survives what a trial's odd parameters may do to a method (hang, crash, run out of
    memory): the pair fails, the tuning goes on. In-process plugins need --executor inprocess,
    as for ``run``."""
    for option in reversed(executor_options):
        command = option(command)
    return command


@click.command(epilog=examples(
    "warpbench tune greedy --dataset hippocampus --trials 30",
    "warpbench tune syn --dataset synth-grouped --budget-seconds 600 --seed 1",
    "warpbench tune --suite paper --trials 20          # every tunable method, the same budget",
    "warpbench run --method greedy:tuned@hippocampus --dataset hippocampus"))
@click.argument("method", required=False)
@click.option("--dataset", multiple=True, metavar="NAME",
              help="tune on this dataset's validation pairs (default: the suite's); repeatable")
@click.option("--suite", metavar="NAME",
              help="tune every method of this suite that declares a search space, on its "
                   "datasets, each with the same budget")
@click.option("--trials", type=click.IntRange(min=1), metavar="N",
              help="the budget as a number of trials (default: 30)")
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="the budget as registration seconds (a learning method's training counts)")
@click.option("--seed", type=int, help="seeds the sampler (default: the suite's, else 0)")
# The defaults are warpbench.tuning's DEFAULT_PAIRS and DEFAULT_MAX_FOLDING (not imported here:
# listing the commands must not load torch).
@click.option("--pairs", type=click.IntRange(min=1), default=10, show_default=True, metavar="N",
              help="validation pairs to draw when the dataset's block names none")
@click.option("--max-folding", type=click.FloatRange(min=0), default=0.1, show_default=True,
              metavar="PERCENT", help="a trial folding more voxels than this on average is "
                                      "infeasible")
@click.option("--time-limit", type=float, metavar="SECONDS",
              help="seconds per pair before it counts as failed (default: the suite's)")
@_executor_options
@db_option
@config_option
@quiet_option
def tune(method, dataset, suite, trials, budget_seconds, seed, pairs, max_folding, time_limit,
         device, executor, workers, memory_limit, address, db, config, quiet) -> int:
    """Tune methods on validation pairs with one budget each; store the best as tuned@DATASET.

    Optuna's TPE sampler, seeded, searches the method's declared search space; the objective is
    the mean Dice over the dataset's validation pairs (never a test pair), with at most
    --max-folding % folded voxels; a pruner stops trials whose first pairs score in the worst
    quarter. Every trial is stored; the same command resumes an interrupted tuning, and a larger
    budget goes on with the same trials. The best trial becomes the preset tuned@DATASET:
    `warpbench run --method NAME:tuned@DATASET` evaluates it on the test split. Exits 1 when a
    tuning found no feasible trial or a method or dataset was set aside."""
    from warpbench.config import build_dataset, load_config
    from warpbench.datasets import DatasetConfigError
    from warpbench.methods import availability_of
    from warpbench.store import Store
    from warpbench.tuning import (DEFAULT_TRIALS, Budget, Tuner, TuningError, tuned_preset_name,
                                  validation_pairs)

    if not (method or suite):
        raise click.UsageError("name a METHOD (with --dataset) or a --suite")
    if trials is not None and budget_seconds is not None:
        raise click.UsageError("give the budget as --trials or as --budget-seconds, not both")
    if budget_seconds is None:
        budget = Budget(trials=trials or DEFAULT_TRIALS)
    else:
        budget = Budget(seconds=budget_seconds)
    registry = load_registry()
    loaded = load_config(config)
    chosen = loaded.suite(suite) if suite else None
    if not (dataset or chosen):
        raise click.UsageError(f"name the dataset to tune {method} on with --dataset")
    names = [method] if method else list(dict.fromkeys(s.partition(":")[0]
                                                       for s in chosen.methods))
    for name in names:
        if name not in registry.methods:
            known = ", ".join(sorted(registry.methods)) or "none"
            raise CommandLineError(f"no method {name!r} is registered (registered: {known})")
    chosen_executor = make_executor(registry, executor, device=device, workers=workers,
                                    address=address, memory_limit_mb=memory_limit)
    seed = seed if seed is not None else (chosen.seed if chosen else 0)
    time_limit = time_limit or (chosen.time_limit if chosen else None)

    set_aside = False
    tunable = []
    for name in names:
        declared = registry.methods[name].search_space
        available, reason = availability_of(registry.methods[name])
        if not declared:
            if method:
                raise CommandLineError(f"method {name!r} declares no search space, so it "
                                       f"cannot be tuned (tunable: {_tunable(registry)})")
            click.echo(f"not tuning {name}: it declares no search space", err=True)
        elif not available:
            click.echo(f"skipping method {name}: {reason}", err=True)
            set_aside = True
        else:
            tunable.append(name)
    datasets = []
    for name in dataset or chosen.datasets:
        try:
            built = build_dataset(loaded, name, registry.dataset_kinds)
            available, reason = built.availability()
            if available:
                validation_pairs(built, pairs)
        except (DatasetConfigError, TuningError) as exc:
            available, reason = False, str(exc)
        if not available:
            if method and dataset:
                raise CommandLineError(reason)
            click.echo(f"skipping dataset {name}: {reason}", err=True)
            set_aside = True
            continue
        datasets.append(built)

    store = Store(db)
    tuner = Tuner(registry, store, chosen_executor, seed=seed, time_limit=time_limit,
                  max_folding=max_folding, progress=not quiet, config=loaded)
    click.echo(f"{len(tunable) * len(datasets)} tunings of {budget} each, validation pairs only, "
               f"seed {seed}, device {tuner.executor.describe()}, store {db}", err=True)
    outcomes = []
    with interruptible(), executor_errors():
        for data in datasets:
            for name in tunable:
                try:
                    outcomes.append(tuner.tune(name, data, budget, pairs))
                except TuningError as exc:
                    raise CommandLineError(str(exc)) from None
    unfound = False
    for outcome in outcomes:
        click.echo(_describe(outcome))
        unfound |= outcome.best_params is None
    done = [o for o in outcomes if o.best_params is not None]
    for data in datasets:
        specs = [f"--method {o.method}:{tuned_preset_name(data.name)} --method {o.method} "
                 f"--method {o.method}:literature" for o in done if o.dataset == data.name]
        if specs:
            click.echo(f"test split: warpbench run {' '.join(specs)} --dataset {data.name} "
                       f"--db {db}", err=True)
    return 1 if unfound or set_aside else 0


def _tunable(registry) -> str:
    return ", ".join(sorted(n for n, m in registry.methods.items() if m.search_space)) or "none"


def _describe(outcome) -> str:
    """One tuning's line: budget used, states, the best trial and its preset."""
    states = ", ".join(f"{count} {state}" for state, count in outcome.states.items())
    line = (f"{outcome.method} on {outcome.dataset}: {outcome.trials} trials ({states}), "
            f"{outcome.seconds:.0f} s spent of {outcome.budget}")
    if outcome.best_params is None:
        return f"{line}; no feasible trial, so no preset {outcome.preset}"
    return (f"{line}; best trial {outcome.best_trial}: validation Dice "
            f"{outcome.best_value:.4f} -> preset {outcome.method}:{outcome.preset} "
            f"{json.dumps(outcome.best_sampled, sort_keys=True)}")


COMMANDS = [tune]
