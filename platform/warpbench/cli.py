"""The ``warpbench`` command: plugins, datasets, train, run, leaderboard; and for plugin authors
and CI: check, new-plugin, ci, merge, export, export-fields."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

# Pairs are registered in a worker thread (for the time limit); torch's idle OpenMP threads
# busy-wait by default and, on a machine with other work, starve it (a 0.5 s pair took 40 s on a
# loaded 2-core machine). Set before torch loads; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from warpbench import plugins as plugin_loading
from warpbench.config import ConfigError, load_config
from warpbench.store import Store

DEFAULT_DB = "results/warpbench.duckdb"
DEFAULT_CONFIG = "datasets.yaml"


def _registry(args):
    registry = plugin_loading.load_registry(strict=args.strict)
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return registry


def cmd_plugins(args) -> int:
    from warpbench.methods import availability_of

    registry = _registry(args)
    for info in registry.plugins.values():
        origin = f"{info.distribution} {info.version}".strip()
        print(f"{info.name}  ({origin})")
        for item in info.registered:
            kind, _, name = item.partition(":")
            available, reason = (availability_of(registry.methods[name]) if kind == "method"
                                 else (True, ""))
            print(f"    {item}" + ("" if available else f"  (unavailable: {reason})"))
        for problem in registry.problems:
            if problem.plugin == info.name:
                print(f"    PROBLEM: {problem.reason}")
    return 1 if registry.problems else 0


def cmd_datasets(args) -> int:
    from warpbench.config import build_dataset
    from warpbench.datasets import DatasetConfigError
    from warpbench.scheduler import describe_dataset

    registry = _registry(args)
    config = load_config(args.config)
    store = Store(args.db)
    stored = {} if args.no_mi else {r["fingerprint"]: r for r in store.datasets().to_dict("records")}
    for name in config.datasets:
        try:
            dataset = build_dataset(config, name, registry.dataset_kinds)
        except DatasetConfigError as exc:
            print(f"{name}: unavailable: {exc}")
            continue
        available, reason = dataset.availability()
        if not available:
            print(f"{name}: unavailable: {reason}")
            continue
        counts = ", ".join(f"{s} {len(dataset.subjects(s))}" for s in ("train", "val", "test"))
        line = (f"{name}: {dataset.kind}, {len(dataset.all_subjects())} subjects ({counts}), "
                f"{len(dataset.pairs('test'))} test pairs, {len(dataset.labels)} labels")
        if not args.no_mi:
            row = stored.get(dataset.fingerprint())
            if row is None:
                row = describe_dataset(dataset)
                store.record_dataset(row)
            line += f", MI(i;s) {row['mi_bits']:.3f} bits (normalised {row['nmi']:.3f})"
        print(line)
    return 0


def _planned(args):
    """The registry, plan and scheduler that ``run`` and ``train`` share: a suite's lists, or
    --method / --dataset / --train-on instead (with --method and --dataset no suite is needed).
    Returns an exit status instead when the selection names something unknown."""
    from warpbench.scheduler import Scheduler, expand_method_spec, make_plan

    registry = _registry(args)
    config = load_config(args.config)
    suite = None
    if args.suite or not (args.method and args.dataset):
        suite = config.suite(args.suite or "default")
    methods = args.method or (suite.methods if suite else [])
    datasets = args.dataset or (suite.datasets if suite else [])
    # A suite's train_on goes with its datasets; --dataset alone trains on what it names.
    train_on = args.train_on or (suite.train_on if suite and not args.dataset else None)
    time_limit = args.time_limit or (suite.time_limit if suite else None)
    seed = args.seed if args.seed is not None else (suite.seed if suite else 0)
    try:
        for spec in methods:
            expand_method_spec(spec, registry)
    except ValueError as exc:
        where = f"{config.path}: suite {suite.name!r}: " if suite and not args.method else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2
    if args.executor not in registry.executors:
        print(f"error: no executor {args.executor!r} (registered: {', '.join(registry.executors)})",
              file=sys.stderr)
        return 2
    plan = make_plan(registry, config, methods, datasets, train_on)
    for name, reason in plan.unavailable_methods.items():
        print(f"skipping method {name}: {reason}", file=sys.stderr)
    for name, reason in plan.unavailable.items():
        print(f"skipping dataset {name}: {reason}", file=sys.stderr)
    for (source, target), reason in plan.skipped.items():
        if source == target:
            print(f"not training on {source}: {reason}", file=sys.stderr)
        else:
            print(f"not evaluating networks trained on {source} on {target}: {reason}",
                  file=sys.stderr)
    executor = registry.executors[args.executor](device=args.device)
    scheduler = Scheduler(registry, Store(args.db), executor, seed=seed, time_limit=time_limit,
                          restart=args.restart, progress=not args.quiet)
    return plan, scheduler


def _report(summary) -> None:
    trainings = (f"{summary.trainings_done} trainings run, {summary.trainings_cached} cached, "
                 f"{summary.trainings_failed} failed")
    print(f"done: {trainings}; {summary.runs_done} runs computed, {summary.runs_up_to_date} "
          f"already complete, {summary.pairs_ok} pairs scored, {summary.pairs_failed} failed",
          file=sys.stderr)
    for failure in summary.failures:
        print(f"failed: {failure}", file=sys.stderr)
    for skipped in summary.skipped:
        print(f"skipped: {skipped}", file=sys.stderr)


INTERRUPTED = ("interrupted: finished pairs and training checkpoints are stored; run the same "
               "command to resume")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def _kill_as_interrupt():
    """Treat SIGTERM (a kill, a job scheduler, ``timeout``) like Ctrl-C while computing, so runs
    and trainings are marked interrupted and buffered curve points are written before exit."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_run(args) -> int:
    planned = _planned(args)
    if isinstance(planned, int):
        return planned
    plan, scheduler = planned
    if not plan.runs and (plan.unavailable_methods or plan.unavailable):
        print("nothing to run: every selected method or dataset was set aside (above)",
              file=sys.stderr)
        return 1
    print(f"{len(plan.trainings)} trainings, {len(plan.runs)} runs on {len(plan.datasets)} "
          f"datasets, device {scheduler.executor.describe()}, store {args.db}", file=sys.stderr)
    summary = _interruptible(lambda: scheduler.run(plan))
    if isinstance(summary, int):
        return summary
    _report(summary)
    return 1 if summary.pairs_failed or summary.trainings_failed else 0


def cmd_train(args) -> int:
    planned = _planned(args)
    if isinstance(planned, int):
        return planned
    plan, scheduler = planned
    if not plan.trainings:
        print("nothing to train: the selection has no learning method with a training dataset",
              file=sys.stderr)
        return 0
    print(f"{len(plan.trainings)} trainings, device {scheduler.executor.describe()}, checkpoints "
          f"under {scheduler.checkpoints}", file=sys.stderr)
    summary = _interruptible(lambda: scheduler.train(plan))
    if isinstance(summary, int):
        return summary
    _report(summary)
    return 1 if summary.trainings_failed else 0


def _interruptible(work):
    """``work()``'s summary; on Ctrl-C or SIGTERM, the resume hint and exit code 130 instead
    (what finished is already stored)."""
    try:
        with _kill_as_interrupt():
            return work()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


def cmd_study(args) -> int:
    from warpbench import study

    store = Store(args.db)
    try:
        print(study.report(store.leaderboard(), store.pair_scores(), store.runs(),
                           args.classical, args.alpha), end="")
    except ValueError as exc:
        print(f"error: {args.db}: {exc}", file=sys.stderr)
        return 2
    return 0


LEADERBOARD_FORMAT = {
    "dice": "{:.3f}", "dice_std": "{:.3f}", "hd95": "{:.2f}", "sdlogj": "{:.3f}",
    "folding_percent": "{:.3f}", "seconds": "{:.2f}", "peak_memory_mb": "{:.0f}",
}
# New fields go at the end: scripts read these columns by position.
LEADERBOARD_FIELDS = ["method", "preset", "family", "dataset", "pairs", "failed", "dice",
                      "dice_std", "hd95", "sdlogj", "folding_percent", "seconds", "peak_memory_mb",
                      "supervision", "train_dataset", "in_domain"]
#: How the table marks a learning method's test dataset against its training dataset.
DOMAIN_MARKS = {True: "in-domain", False: "shifted"}


def cmd_leaderboard(args) -> int:
    board = Store(args.db).leaderboard()
    # In domain: tested on its training dataset (None for a method that is not trained).
    board["in_domain"] = [None if train is None or train != train else train == tested
                          for train, tested in zip(board["train_dataset"], board["dataset"])]
    table = board[LEADERBOARD_FIELDS]
    if args.format == "json":
        records = json.loads(table.to_json(orient="records"))
        print(json.dumps(records, indent=2))
    elif args.format == "csv":
        print(table.to_csv(index=False), end="")
    elif table.empty:
        print(f"no complete runs in {args.db}; fill it with: warpbench run --suite default --db {args.db}")
    else:
        shown = table.drop(columns="supervision")  # the preset says it
        shown["in_domain"] = shown["in_domain"].map(DOMAIN_MARKS).fillna("-")
        shown["train_dataset"] = shown["train_dataset"].fillna("-")
        shown = shown.rename(columns={"train_dataset": "trained_on", "in_domain": "domain"})
        for column, fmt in LEADERBOARD_FORMAT.items():
            shown[column] = shown[column].map(lambda v, f=fmt: "-" if v is None or v != v else f.format(v))
        print(shown.to_string(index=False))
    return 0


# --- authoring and CI: check, new-plugin, ci, merge, export, export-fields ----------------------
# Each handler turns the errors a user can cause (a bad file, an unknown name) into one line that
# names the file or plugin, and exit status 2.

def _user_errors():
    from warpbench.ci import CiError
    from warpbench.datasets import DatasetConfigError
    from warpbench.fields import ExportError, FieldFileError
    from warpbench.scaffold import ScaffoldError
    from warpbench.store import StoreBusy, StoreFileError

    return (CiError, DatasetConfigError, ExportError, FieldFileError, ScaffoldError, StoreBusy,
            StoreFileError, ConfigError, plugin_loading.PluginError)


def _reporting_errors(handler):
    def wrapped(args) -> int:
        try:
            return handler(args)
        except _user_errors() as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    wrapped.__name__ = handler.__name__
    return wrapped


@_reporting_errors
def cmd_check(args) -> int:
    from warpbench import testing
    from warpbench.config import build_dataset

    registry = _registry(args)
    name, _, preset = args.plugin.partition(":")
    preset = args.preset or preset or "default"
    config = None
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        if args.config != DEFAULT_CONFIG:
            raise
        config_problem = str(exc)  # only datasets.yaml blocks need it
    else:
        config_problem = ""

    def method_reports(method_name: str) -> list:
        method = registry.methods[method_name]
        presets = list(method.presets) if preset == "*" else [preset]
        if preset != "*" and preset not in method.presets:
            raise ConfigError(f"method {method_name!r} has no preset {preset!r} "
                              f"(presets: {', '.join(method.presets)})")
        return [testing.check_method(method, p, device=args.device, time_limit=args.time_limit,
                                     shape=args.shape)
                for p in presets]

    def dataset_reports(kind: str) -> list:
        blocks = [n for n, b in (config.datasets.items() if config else [])
                  if isinstance(b, dict) and b.get("plugin") == kind]
        if blocks:
            dataset = build_dataset(config, blocks[0], registry.dataset_kinds)
            print(f"checking dataset kind {kind!r} through its first datasets.yaml block, "
                  f"{blocks[0]!r}", file=sys.stderr)
        else:
            base = config.base_dir if config else Path(".")
            dataset = registry.dataset_kinds[kind](kind, {}, base)
        return [testing.check_dataset(dataset, max_subjects=args.max_subjects)]

    reports, problems = [], []
    if name in registry.methods:
        reports = method_reports(name)
    elif name in registry.dataset_kinds:
        reports = dataset_reports(name)
    elif config is not None and name in config.datasets:
        dataset = build_dataset(config, name, registry.dataset_kinds)
        reports = [testing.check_dataset(dataset, max_subjects=args.max_subjects)]
    elif name in registry.plugins:
        problems = [p.reason for p in registry.problems if p.plugin == name]
        for item in registry.plugins[name].registered:
            kind, _, thing = item.partition(":")
            if kind == "method":
                reports += method_reports(thing)
            elif kind == "dataset":
                reports += dataset_reports(thing)
        if not reports and not problems:
            problems = ["registers no method and no dataset kind"]
    else:
        known = sorted({*registry.methods, *registry.dataset_kinds, *registry.plugins,
                        *(config.datasets if config else ())})
        hint = f" ({config_problem})" if config_problem else ""
        raise ConfigError(f"no method, dataset kind, dataset or plugin named {name!r}{hint}; "
                          f"known: {', '.join(known)}")
    for reason in problems:
        print(f"FAIL plugin-loads: plugin {name!r}: {reason}")
    for report in reports:
        print(report.format())
    failed = sum(not r.ok for r in reports) + len(problems)
    print(f"{len(reports)} checked, {failed} with broken rules", file=sys.stderr)
    return 1 if failed else 0


@_reporting_errors
def cmd_new_plugin(args) -> int:
    from warpbench.scaffold import create_plugin, names

    written = create_plugin(args.name, args.kind, args.dir)
    root = Path(args.dir) if args.dir else Path(names(args.name, args.kind)["__DIST__"])
    for path in written:
        print(path)
    print(f"\nnext: pip install -e {root}   then: warpbench check {args.name}   and: "
          f"pytest {root}", file=sys.stderr)
    return 0


@_reporting_errors
def cmd_ci(args) -> int:
    from warpbench.ci import run_ci

    registry = _registry(args)
    config = load_config(args.config)
    result = run_ci(registry, config, args.suite, args.out, methods=args.method or [],
                    baseline=args.baseline, threshold=args.threshold, device=args.device,
                    progress=not args.quiet)
    print(result.markdown)
    print(f"wrote {result.store}, {result.summary} and {len(result.exports)} Parquet files "
          f"under {Path(args.out) / 'parquet'}", file=sys.stderr)
    return result.exit_code


@_reporting_errors
def cmd_merge(args) -> int:
    out = Path(args.output).resolve()
    sources = [Path(s) for s in args.stores]
    kept = [s for s in sources if s.resolve() != out]
    if len(kept) < len(sources):
        print(f"note: {args.output} is the output; its rows are kept as they are", file=sys.stderr)
    added = Store(args.output).merge_from(kept)
    counts = ", ".join(f"{n} {table}" for table, n in added.items())
    print(f"merged {len(kept)} store(s) into {args.output}: added {counts}")
    return 0


@_reporting_errors
def cmd_export(args) -> int:
    for path in Store(args.db).export_tables(args.out, args.format):
        print(path)
    return 0


@_reporting_errors
def cmd_export_fields(args) -> int:
    from warpbench.fields import export_run_fields

    registry = _registry(args)
    config = load_config(args.config)
    store = Store(args.db)
    store.check_file()
    summary = export_run_fields(store, registry, config, args.run, args.out, args.format,
                                device=args.device, progress=not args.quiet)
    print(f"wrote {len(summary.written)} fields to {summary.folder}")
    for problem in summary.failed:
        print(f"failed: {problem}", file=sys.stderr)
    for problem in summary.not_reproduced:
        print(f"not reproduced: {problem}", file=sys.stderr)
    return 1 if summary.failed or summary.not_reproduced else 0


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 8:
        raise argparse.ArgumentTypeError(f"expected three sizes of at least 8, like 32,40,48; got {text!r}")
    return shape


def _add_authoring_commands(commands) -> None:
    check = commands.add_parser(
        "check", help="put a method, dataset kind, dataset or plugin through the contract")
    check.add_argument("plugin", metavar="NAME",
                       help="a method (NAME[:PRESET]), dataset kind, datasets.yaml dataset, "
                            "or plugin entry-point name")
    check.add_argument("--preset", help="a method's preset, or * for all (default: default)")
    check.add_argument("--config", default=DEFAULT_CONFIG)
    check.add_argument("--device", default="cpu")
    check.add_argument("--max-subjects", type=int, help="load at most this many subjects")
    check.add_argument("--time-limit", type=float, default=120.0,
                       help="seconds one registration of the check may take")
    check.add_argument("--shape", type=_shape, metavar="D,H,W",
                       help="the method check's image grid, for a method that needs larger "
                            "images (default 20,24,28; 32,40,48 for a learning method)")
    check.set_defaults(handler=cmd_check)

    new = commands.add_parser("new-plugin", help="scaffold an installable plugin package")
    new.add_argument("name", metavar="NAME", help="method name or dataset kind, e.g. my-method")
    new.add_argument("--kind", choices=["method", "dataset"], default="method")
    new.add_argument("--dir", help="folder to create (default: ./warpbench-NAME)")
    new.set_defaults(handler=cmd_new_plugin)

    ci = commands.add_parser("ci", help="evaluate a suite afresh, export it, and judge it "
                                        "against a baseline store (exit 1 on failure/regression)")
    ci.add_argument("--suite", default="quick")
    ci.add_argument("--method", action="append", metavar="NAME[:PRESET]",
                    help="also evaluate this method (the plugin under test); repeatable")
    ci.add_argument("--baseline", metavar="OLD.duckdb", help="store to compare mean Dice with")
    ci.add_argument("--threshold", type=float, default=0.02,
                    help="largest allowed drop of a configuration's mean Dice (default 0.02)")
    ci.add_argument("--out", default="results/ci",
                    help="folder for warpbench.duckdb, parquet/ and summary.md")
    ci.add_argument("--config", default=DEFAULT_CONFIG)
    ci.add_argument("--device")
    ci.add_argument("--quiet", action="store_true", help="no progress bars")
    ci.set_defaults(handler=cmd_ci)

    merge = commands.add_parser("merge", help="combine stores without duplicated rows")
    merge.add_argument("stores", nargs="+", metavar="STORE",
                       help="a store (.duckdb), or a folder of tables that `warpbench export` wrote")
    merge.add_argument("-o", "--output", required=True, metavar="ALL.duckdb",
                       help="the merged store (created, or added to when it exists)")
    merge.set_defaults(handler=cmd_merge)

    export = commands.add_parser("export", help="write the store's tables as Parquet or CSV")
    export.add_argument("--db", default=DEFAULT_DB)
    export.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    export.add_argument("--out", required=True, metavar="DIR")
    export.set_defaults(handler=cmd_export)

    fields = commands.add_parser(
        "export-fields", help="re-create a run's fields as Learn2Reg disp_{fixed}_{moving} files")
    fields.add_argument("--db", default=DEFAULT_DB)
    fields.add_argument("--run", required=True, metavar="RUN_ID", help="a run id or its prefix")
    fields.add_argument("--out", required=True, metavar="DIR")
    fields.add_argument("--format", choices=["nii.gz", "nii", "npz", "npy"], default="nii.gz")
    fields.add_argument("--config", default=DEFAULT_CONFIG)
    fields.add_argument("--device")
    fields.add_argument("--quiet", action="store_true", help="no progress bar")
    fields.set_defaults(handler=cmd_export_fields)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warpbench", description=__doc__)
    parser.add_argument("--strict", action="store_true",
                        help="fail when any plugin cannot be loaded or registers something wrong")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("plugins", help="list plugins, their distribution and what they registered")

    datasets = commands.add_parser("datasets", help="availability, subjects, pairs and MI")
    datasets.add_argument("--config", default=DEFAULT_CONFIG)
    datasets.add_argument("--db", default=DEFAULT_DB, help="where MI(i;s) is cached")
    datasets.add_argument("--no-mi", action="store_true", help="skip MI (no subject is loaded)")

    run = commands.add_parser("run", help="train what is missing, then evaluate methods on "
                                            "datasets into the store (resumes)")
    train = commands.add_parser("train", help="train the learning methods of a selection without "
                                              "evaluating (cached, resumes)")
    for command in (run, train):
        command.add_argument("--db", default=DEFAULT_DB,
                             help="the store; trained weights go to checkpoints/ beside it")
        command.add_argument("--config", default=DEFAULT_CONFIG)
        command.add_argument("--suite", help="a suite of datasets.yaml (default: 'default')")
        command.add_argument("--method", action="append", metavar="NAME[:PRESET]",
                             help="method and preset (NAME:* for every preset); repeatable")
        command.add_argument("--dataset", action="append", metavar="NAME", help="repeatable")
        command.add_argument("--train-on", action="append", metavar="NAME",
                             help="train learning methods on this dataset (default: the suite's "
                                  "train_on, else every selected dataset with train subjects); "
                                  "repeatable")
        command.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
        command.add_argument("--executor", default="inprocess")
        command.add_argument("--seed", type=int)
        command.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--time-limit", type=float, help="seconds per pair before it counts as failed")
    run.add_argument("--restart", action="store_true",
                     help="start new runs instead of resuming the newest ones")
    train.set_defaults(time_limit=None, restart=False)

    board = commands.add_parser("leaderboard", help="print the leaderboard")
    board.add_argument("--db", default=DEFAULT_DB)
    board.add_argument("--format", choices=["table", "csv", "json"], default="table")

    study = commands.add_parser(
        "study", help="the study's comparisons (classical vs unsupervised and label-supervised "
                      "DLIR in domain, under domain shift, and more training) with paired "
                      "tests, as Markdown")
    study.add_argument("--db", default=DEFAULT_DB)
    study.add_argument("--classical", default="syn:default", metavar="METHOD:PRESET",
                       help="the classical configuration every network is compared with")
    study.add_argument("--alpha", type=float, default=0.05,
                       help="significance level after Holm's adjustment")
    _add_authoring_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"plugins": cmd_plugins, "datasets": cmd_datasets, "run": cmd_run,
               "train": cmd_train, "leaderboard": cmd_leaderboard,
               "study": cmd_study}.get(args.command) or args.handler
    try:
        return handler(args)
    except (ConfigError, plugin_loading.PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
