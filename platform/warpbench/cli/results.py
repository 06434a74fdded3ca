"""Results that leave this machine: ``ci`` (an evaluation judged against a baseline), ``merge``
and ``export`` (stores and their tables as files), ``export-fields`` (a run's fields)."""

from __future__ import annotations

from pathlib import Path

import click

from warpbench.cli.shared import config_option, db_option, examples, load_registry, quiet_option


@click.command(epilog=examples(
    "warpbench ci --suite quick --method translation",
    "warpbench ci --method translation --baseline old/warpbench.duckdb --threshold 0.02"))
@click.option("--suite", default="quick", show_default=True, help="a suite of datasets.yaml")
@click.option("--method", multiple=True, metavar="NAME[:PRESET]",
              help="also evaluate this method (the plugin under test); repeatable")
@click.option("--baseline", metavar="OLD.duckdb", help="store to compare mean Dice with")
@click.option("--threshold", type=float, default=0.02, show_default=True,
              help="largest allowed drop of a configuration's mean Dice")
@click.option("--out", default="results/ci", show_default=True, metavar="DIR",
              help="folder for warpbench.duckdb, parquet/ and summary.md")
@config_option
@click.option("--device")
@quiet_option
def ci(suite: str, method: tuple[str, ...], baseline: str | None, threshold: float, out: str,
       config: str, device: str | None, quiet: bool) -> int:
    """Evaluate a suite afresh and judge it against a baseline.

    The runs go to DIR/warpbench.duckdb and DIR/parquet/, compared with the baseline store where
    the dataset is the same. Prints the Markdown summary (also written to DIR/summary.md). Exits 1
    when a pair failed, a dataset was unavailable, or a mean Dice fell by more than the
    threshold."""
    from warpbench.ci import run_ci
    from warpbench.config import load_config

    registry = load_registry()
    result = run_ci(registry, load_config(config), suite, out, methods=list(method),
                    baseline=baseline, threshold=threshold, device=device, progress=not quiet)
    click.echo(result.markdown)
    click.echo(f"wrote {result.store}, {result.summary} and {len(result.exports)} Parquet files "
               f"under {Path(out) / 'parquet'}", err=True)
    return result.exit_code


@click.command(epilog=examples("warpbench merge a.duckdb b.duckdb tables/ -o all.duckdb"))
@click.argument("stores", nargs=-1, required=True, metavar="STORE...")
@click.option("-o", "--output", required=True, metavar="ALL.duckdb",
              help="the merged store (created, or added to when it exists)")
def merge(stores: tuple[str, ...], output: str) -> int:
    """Combine stores without duplicated rows.

    A STORE is a .duckdb file or a folder of tables that `warpbench export` wrote. A run found in
    several sources is stored once; merging the same source twice adds nothing."""
    from warpbench.store import Store

    out = Path(output).resolve()
    sources = [Path(s) for s in stores]
    kept = [s for s in sources if s.resolve() != out]
    if len(kept) < len(sources):
        click.echo(f"note: {output} is the output; its rows are kept as they are", err=True)
    added = Store(output).merge_from(kept)
    counts = ", ".join(f"{n} {table}" for table, n in added.items())
    click.echo(f"merged {len(kept)} store(s) into {output}: added {counts}")
    return 0


@click.command(epilog=examples("warpbench export --db all.duckdb --format csv --out tables/"))
@db_option
@click.option("--format", "table_format", type=click.Choice(["parquet", "csv"]),
              default="parquet", show_default=True)
@click.option("--out", required=True, metavar="DIR", help="folder for the table files")
def export(db: str, table_format: str, out: str) -> int:
    """Write the store's tables as Parquet or CSV files.

    Such a folder is itself a source for `warpbench merge`."""
    from warpbench.store import Store

    for path in Store(db).export_tables(out, table_format):
        click.echo(path)
    return 0


@click.command("export-fields", epilog=examples(
    "warpbench export-fields --run 3f2a9c --out fields/",
    "warpbench export-fields --db all.duckdb --run 3f2a9c --out fields/ --format npz"))
@db_option
@click.option("--run", "run_id", required=True, metavar="RUN_ID", help="a run id or its prefix")
@click.option("--out", required=True, metavar="DIR", help="folder for the field files")
@click.option("--format", "field_format", type=click.Choice(["nii.gz", "nii", "npz", "npy"]),
              default="nii.gz", show_default=True)
@config_option
@click.option("--device")
@quiet_option
def export_fields(db: str, run_id: str, out: str, field_format: str, config: str,
                  device: str | None, quiet: bool) -> int:
    """Re-create a stored run's fields as Learn2Reg files.

    One disp_{fixed}_{moving} file per test pair. Each test pair is registered again with the run's
    method, preset, seed and weights, and scored again; a pair that fails or does not reproduce its
    stored mean Dice is reported and makes the exit status 1."""
    from warpbench.config import load_config
    from warpbench.fields import export_run_fields
    from warpbench.store import Store

    registry = load_registry()
    loaded = load_config(config)
    store = Store(db)
    store.check_file()
    summary = export_run_fields(store, registry, loaded, run_id, out, field_format,
                                device=device, progress=not quiet)
    click.echo(f"wrote {len(summary.written)} fields to {summary.folder}")
    for problem in summary.failed:
        click.echo(f"failed: {problem}", err=True)
    for problem in summary.not_reproduced:
        click.echo(f"not reproduced: {problem}", err=True)
    return 1 if summary.failed or summary.not_reproduced else 0


COMMANDS = [ci, merge, export, export_fields]
