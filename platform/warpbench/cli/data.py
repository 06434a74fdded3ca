"""Getting data onto this machine: ``fetch`` (a dataset with a public download)."""

from __future__ import annotations

from pathlib import Path

import click

from warpbench.cli.shared import config_option, examples, load_registry, quiet_option


@click.command(epilog=examples("warpbench fetch NAME", "warpbench fetch NAME --to /data/NAME",
                               "warpbench fetch NAME --config my.yaml --quiet"))
@click.argument("name")
@click.option("--to", metavar="DIR", help="unpack under DIR instead of the block's root")
@config_option
@quiet_option
def fetch(name: str, to: str | None, config: str, quiet: bool) -> int:
    """Download a dataset that has a public download, and unpack it into place.

    The download (URL, sha256, format, licence) is the block's `download` in datasets.yaml, or
    the one its kind's plugin declares. Its licence is printed before anything is downloaded. An
    interrupted download resumes on the next call; the file is checked against its sha256 and
    unpacked with one rename, so a half-written dataset is never read; a dataset already fetched
    is left as it is."""
    from warpbench.config import load_config
    from warpbench.fetch import fetch as fetch_dataset
    from warpbench.fetch import plan_fetch

    plan = plan_fetch(load_config(config), name, lambda: load_registry().dataset_kinds, to)
    done = plan.fetched()
    if done is not None:
        click.echo(f"{name}: already fetched into {plan.target} ({done.get('fetched')}); "
                   "nothing downloaded")
        return 0
    download = plan.download
    click.echo(f"{name}: licence: {plan.license}")
    size = f" ({download.size:,} bytes)" if download.size else ""
    click.echo(f"  download {download.url}{size}")
    click.echo(f"  into {plan.target}")
    if plan.part.exists():
        click.echo(f"  resuming after the {plan.part.stat().st_size:,} bytes in {plan.part}")
    try:
        fetch_dataset(plan, progress=not quiet)
    except KeyboardInterrupt:
        if plan.part.exists():
            click.echo(f"kept {plan.part.stat().st_size:,} bytes in {plan.part}: run the same "
                       "command to resume", err=True)
        raise
    click.echo(f"{name}: fetched into {plan.target}")
    if to is not None and (plan.root is None or plan.root.resolve() != Path(to).resolve()):
        click.echo(f"  to read it, set the block's root to {Path(to).resolve()}")
    return 0


COMMANDS = [fetch]
