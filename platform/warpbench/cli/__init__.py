"""The ``warpbench`` command, on click: the group and its one error layer, :func:`main`.

The commands live by purpose in :mod:`~warpbench.cli.evaluation` (plugins, datasets, run, train,
leaderboard, study), :mod:`~warpbench.cli.data` (fetch), :mod:`~warpbench.cli.authoring` (check,
new-plugin, schema) and :mod:`~warpbench.cli.results` (ci, merge, export, export-fields); plugins
add theirs through the ``register_commands`` hook.
"""

from __future__ import annotations

import os
import sys

# Pairs are registered in a worker thread (for the time limit); torch's idle OpenMP threads
# busy-wait by default and, on a machine with other work, starve it (a 0.5 s pair took 40 s on a
# loaded 2-core machine). Set before torch loads; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from warpbench.cli import authoring, data, evaluation, results, tuning
from warpbench.cli.shared import (CommandLineError, Interrupted, Invocation, disk_full, examples,
                                  warned)

BUILT_IN = [*evaluation.COMMANDS, *data.COMMANDS, *authoring.COMMANDS, *results.COMMANDS,
            *tuning.COMMANDS]


class WarpbenchGroup(click.Group):
    """warpbench's commands, listed in the order given, then the plugins'. A built-in command
    resolves without loading any plugin (so ``warpbench leaderboard`` imports none); listing the
    commands, ``warpbench plugins``, or a name that is not built in loads the plugins once and
    lets each add its commands."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._registry = None

    def plugin_registry(self, ctx: click.Context):
        """The plugins' registry, loaded once with their commands added to this group; its
        problems are warnings, or an error under ``--strict``."""
        if self._registry is None:
            from warpbench import plugins

            strict = bool(ctx.find_root().params.get("strict"))
            self._registry = warned(plugins.load_registry(strict=strict, cli=self))
        return self._registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.plugin_registry(ctx)
        return list(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands:
            self.plugin_registry(ctx)
        return super().get_command(ctx, name)


def build_cli() -> WarpbenchGroup:
    """A fresh ``warpbench`` group (each call of :func:`main` gets its own, so commands a plugin
    adds in one call are not there in the next)."""

    @click.group(cls=WarpbenchGroup, commands=BUILT_IN, epilog=examples(
        "warpbench datasets", "warpbench run --suite default", "warpbench leaderboard",
        "warpbench COMMAND --help"))
    # Eager, so that `--strict --help` loads the plugins (for their commands) strictly too.
    @click.option("--strict", is_flag=True, is_eager=True,
                  help="fail when any plugin cannot be loaded or registers something wrong")
    def cli(strict: bool) -> None:
        """warpbench: evaluate deformable image registration methods on datasets, store every
        score, and compare them.

        Methods, dataset kinds and executors come from plugins (`warpbench plugins` lists them);
        datasets and suites are named in datasets.yaml."""

    return cli


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can cause (a bad file, an unknown name, a busy store): each says what is
    wrong in one line."""
    from warpbench.ci import CiError
    from warpbench.config import ConfigError
    from warpbench.datasets import DatasetConfigError
    from warpbench.fetch import FetchError
    from warpbench.fields import ExportError, FieldFileError
    from warpbench.plugins import PluginError
    from warpbench.scaffold import ScaffoldError
    from warpbench.store import StoreBusy, StoreFileError

    return (CiError, ConfigError, DatasetConfigError, ExportError, FetchError, FieldFileError,
            PluginError, ScaffoldError, StoreBusy, StoreFileError, CommandLineError)


def main(argv: list[str] | None = None) -> int:
    """Run ``warpbench`` with ``argv`` (default: the process's arguments) and return its exit
    status, without ``sys.exit``: what the command returned (0, or 1 for failed work); 2 for a
    user error (one ``error: ...`` line on stderr) or a usage error; 1 for a full disk (one line
    naming the store); 130 when interrupted.

    As the process's own command (``argv`` None), it ends the process itself when a method call
    abandoned by a time-out or an interruption is still running, as an interpreter exit would
    abort (see :func:`warpbench.runner.abandoned_calls`); what finished is stored by then."""
    status = _status(argv)
    runner = sys.modules.get("warpbench.runner")  # not imported: no method ran
    if argv is None and runner is not None and runner.abandoned_calls():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _status(argv: list[str] | None) -> int:
    """The exit status of the command ``argv``: the one error layer."""
    invocation = Invocation()
    try:
        status = build_cli().main(argv, prog_name="warpbench", standalone_mode=False,
                                  obj=invocation)
    except click.ClickException as exc:  # usage errors: click prints them with the usage line
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C outside the work of run and train
        click.echo("interrupted", err=True)
        return Interrupted.exit_code
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        return exc.exit_code
    except _user_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        where = f"{invocation.store}: " if invocation.store else ""
        detail = " ".join(str(full).split())
        click.echo(f"error: {where}no space left on device ({detail}); free some space, then "
                   "run the same command to resume", err=True)
        return 1
    return status or 0
