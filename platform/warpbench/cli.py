"""The ``warpbench`` command: plugins, datasets, run, leaderboard."""

from __future__ import annotations

import argparse
import json
import sys

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
    registry = _registry(args)
    for info in registry.plugins.values():
        origin = f"{info.distribution} {info.version}".strip()
        print(f"{info.name}  ({origin})")
        for item in info.registered:
            print(f"    {item}")
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


def cmd_run(args) -> int:
    from warpbench.scheduler import Scheduler, expand_method_spec, make_plan

    registry = _registry(args)
    config = load_config(args.config)
    # --method / --dataset override the suite's lists; with both given no suite is needed.
    suite = None
    if args.suite or not (args.method and args.dataset):
        suite = config.suite(args.suite or "default")
    methods = args.method or (suite.methods if suite else [])
    datasets = args.dataset or (suite.datasets if suite else [])
    time_limit = args.time_limit or (suite.time_limit if suite else None)
    seed = args.seed if args.seed is not None else (suite.seed if suite else 0)
    try:
        for spec in methods:
            expand_method_spec(spec, registry)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan = make_plan(registry, config, methods, datasets)
    for name, reason in plan.unavailable.items():
        print(f"skipping dataset {name}: {reason}", file=sys.stderr)
    if args.executor not in registry.executors:
        print(f"error: no executor {args.executor!r} (registered: {', '.join(registry.executors)})",
              file=sys.stderr)
        return 2
    executor = registry.executors[args.executor](device=args.device)
    print(f"{len(plan.runs)} runs on {len(plan.datasets)} datasets, device {executor.describe()}, "
          f"store {args.db}", file=sys.stderr)
    scheduler = Scheduler(registry, Store(args.db), executor, seed=seed, time_limit=time_limit,
                          restart=args.restart, progress=not args.quiet)
    try:
        summary = scheduler.run(plan)
    except KeyboardInterrupt:
        print("interrupted: finished pairs are stored; run the same command to resume",
              file=sys.stderr)
        return 130
    print(f"done: {summary.runs_done} runs computed, {summary.runs_up_to_date} already complete, "
          f"{summary.pairs_ok} pairs scored, {summary.pairs_failed} failed", file=sys.stderr)
    for failure in summary.failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if summary.pairs_failed else 0


LEADERBOARD_FORMAT = {
    "dice": "{:.3f}", "dice_std": "{:.3f}", "hd95": "{:.2f}", "sdlogj": "{:.3f}",
    "folding_percent": "{:.3f}", "seconds": "{:.2f}", "peak_memory_mb": "{:.0f}",
}
LEADERBOARD_FIELDS = ["method", "preset", "family", "dataset", "pairs", "failed", "dice",
                      "dice_std", "hd95", "sdlogj", "folding_percent", "seconds", "peak_memory_mb"]


def cmd_leaderboard(args) -> int:
    table = Store(args.db).leaderboard()[LEADERBOARD_FIELDS]
    if args.format == "json":
        records = json.loads(table.to_json(orient="records"))
        print(json.dumps(records, indent=2))
    elif args.format == "csv":
        print(table.to_csv(index=False), end="")
    elif table.empty:
        print(f"no complete runs in {args.db}; fill it with: warpbench run --suite default --db {args.db}")
    else:
        shown = table.copy()
        for column, fmt in LEADERBOARD_FORMAT.items():
            shown[column] = shown[column].map(lambda v, f=fmt: "-" if v is None or v != v else f.format(v))
        print(shown.to_string(index=False))
    return 0


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

    run = commands.add_parser("run", help="evaluate methods on datasets into the store (resumes)")
    run.add_argument("--db", default=DEFAULT_DB)
    run.add_argument("--config", default=DEFAULT_CONFIG)
    run.add_argument("--suite", help="a suite of datasets.yaml (default: 'default')")
    run.add_argument("--method", action="append", metavar="NAME[:PRESET]",
                     help="method and preset (NAME:* for every preset); repeatable")
    run.add_argument("--dataset", action="append", metavar="NAME", help="repeatable")
    run.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    run.add_argument("--executor", default="inprocess")
    run.add_argument("--time-limit", type=float, help="seconds per pair before it counts as failed")
    run.add_argument("--seed", type=int)
    run.add_argument("--restart", action="store_true",
                     help="start new runs instead of resuming the newest ones")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    board = commands.add_parser("leaderboard", help="print the leaderboard")
    board.add_argument("--db", default=DEFAULT_DB)
    board.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"plugins": cmd_plugins, "datasets": cmd_datasets, "run": cmd_run,
               "leaderboard": cmd_leaderboard}[args.command]
    try:
        return handler(args)
    except (ConfigError, plugin_loading.PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
