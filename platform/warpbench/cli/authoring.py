"""For plugin authors: ``check`` (the contract), ``new-plugin`` (a package skeleton) and
``schema`` (the JSON Schema of datasets.yaml, for editors)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from warpbench.cli.shared import (DEFAULT_CONFIG, CommandLineError, config_option, examples,
                                  load_registry)


def _shape(ctx, param, text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 8:
        raise click.BadParameter(
            f"expected three sizes of at least 8, like 32,40,48; got {text!r}")
    return shape


@click.command(epilog=examples(
    "warpbench check translation              # a method's default preset",
    "warpbench check greedy --preset '*'      # every preset",
    "warpbench check fireants-syn --shape 32,40,48",
    "warpbench check decathlon                # a dataset kind, via its first datasets.yaml block",
    "warpbench check hippocampus              # a dataset of datasets.yaml"))
@click.argument("name", metavar="NAME")
@click.option("--preset", help="a method's preset, or * for all (default: default)")
@config_option
@click.option("--device", default="cpu", show_default=True)
@click.option("--max-subjects", type=int, help="load at most this many subjects")
@click.option("--time-limit", type=float, default=120.0, show_default=True,
              help="seconds one registration of the check may take")
@click.option("--shape", callback=_shape, metavar="D,H,W",
              help="the method check's image grid, for a method that needs larger images "
                   "(default 20,24,28; 32,40,48 for a learning method)")
def check(name: str, preset: str | None, config: str, device: str, max_subjects: int | None,
          time_limit: float, shape: tuple[int, int, int] | None) -> int:
    """Check that a method, dataset or plugin keeps the contract.

    NAME is a method (NAME[:PRESET]), a dataset kind, a datasets.yaml dataset, or a plugin's
    entry-point name (everything it registered). Each broken rule is named, with what was
    expected and what came back; exits 1 when a rule is broken."""
    from warpbench import testing
    from warpbench.config import ConfigError, build_dataset, load_config

    registry = load_registry()
    name, _, named_preset = name.partition(":")
    preset = preset or named_preset or "default"
    loaded = None
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        if config != DEFAULT_CONFIG:
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
        return [testing.check_method(method, p, device=device, time_limit=time_limit, shape=shape)
                for p in presets]

    def dataset_reports(kind: str) -> list:
        blocks = [n for n, b in (loaded.datasets.items() if loaded else [])
                  if isinstance(b, dict) and b.get("plugin") == kind]
        if blocks:
            dataset = build_dataset(loaded, blocks[0], registry.dataset_kinds)
            click.echo(f"checking dataset kind {kind!r} through its first datasets.yaml block, "
                       f"{blocks[0]!r}", err=True)
        else:
            base = loaded.base_dir if loaded else Path(".")
            dataset = registry.dataset_kinds[kind](kind, {}, base)
        return [testing.check_dataset(dataset, max_subjects=max_subjects)]

    reports, problems = [], []
    if name in registry.methods:
        reports = method_reports(name)
    elif name in registry.dataset_kinds:
        reports = dataset_reports(name)
    elif loaded is not None and name in loaded.datasets:
        dataset = build_dataset(loaded, name, registry.dataset_kinds)
        reports = [testing.check_dataset(dataset, max_subjects=max_subjects)]
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
                        *(loaded.datasets if loaded else ())})
        hint = f" ({config_problem})" if config_problem else ""
        raise ConfigError(f"no method, dataset kind, dataset or plugin named {name!r}{hint}; "
                          f"known: {', '.join(known)}")
    for reason in problems:
        click.echo(f"FAIL plugin-loads: plugin {name!r}: {reason}")
    for report in reports:
        click.echo(report.format())
    failed = sum(not r.ok for r in reports) + len(problems)
    click.echo(f"{len(reports)} checked, {failed} with broken rules", err=True)
    return 1 if failed else 0


@click.command("new-plugin", epilog=examples(
    "warpbench new-plugin my-method",
    "warpbench new-plugin my-scans --kind dataset --dir plugins/my-scans"))
@click.argument("name", metavar="NAME")
@click.option("--kind", type=click.Choice(["method", "dataset"]), default="method",
              show_default=True)
@click.option("--dir", "directory", metavar="PATH",
              help="folder to create (default: ./warpbench-NAME)")
def new_plugin(name: str, kind: str, directory: str | None) -> int:
    """Write a new plugin package, ready to install.

    It holds a working method or dataset, its test, and a CI workflow that evaluates it. NAME is
    the method name or dataset kind, e.g. my-method. The package passes `warpbench check
    NAME` and its own test before you change a line."""
    from warpbench.scaffold import create_plugin, names

    written = create_plugin(name, kind, directory)
    root = Path(directory) if directory else Path(names(name, kind)["__DIST__"])
    for path in written:
        click.echo(path)
    click.echo(f"\nnext: pip install -e {root}   then: warpbench check {name}   and: "
               f"pytest {root}", err=True)
    return 0


@click.command(epilog=examples("warpbench schema --out datasets.schema.json",
                               "warpbench schema | less"))
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE",
              help="write the schema to FILE instead of printing it")
def schema(out: str | None) -> int:
    """Print the JSON Schema of datasets.yaml.

    Editors use it to complete and check the file. It is built from the dataset kinds that the
    installed plugins register. An editor with a YAML language server uses it through a first line
    `# yaml-language-server: $schema=datasets.schema.json`."""
    from warpbench.config import datasets_yaml_schema

    text = json.dumps(datasets_yaml_schema(load_registry().dataset_kinds), indent=2)
    if out is None:
        click.echo(text)
    else:
        try:
            Path(out).write_text(text + "\n")
        except OSError as exc:  # a missing folder, a read-only place
            problem = exc.strerror or exc
            raise CommandLineError(f"{out}: cannot write the schema: {problem}") from None
        click.echo(f"wrote {out}", err=True)
    return 0


COMMANDS = [check, new_plugin, schema]
