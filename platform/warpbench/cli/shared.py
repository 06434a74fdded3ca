"""What the commands share: the ``--db`` and ``--config`` options, the plugin registry with its
problems shown as warnings, and the exceptions that the error layer in :func:`warpbench.cli.main`
turns into an exit status."""

from __future__ import annotations

import errno
import signal
from contextlib import contextmanager
from dataclasses import dataclass

import click

DEFAULT_DB = "results/warpbench.duckdb"
DEFAULT_CONFIG = "datasets.yaml"



@dataclass
class Invocation:
    """What the error layer needs to know of the command it ran: the store it named (``--db``),
    so that a full disk is reported against it."""

    store: str | None = None


def _remember_store(ctx: click.Context, param, value):
    invocation = ctx.find_object(Invocation)
    if invocation is not None:
        invocation.store = value
    return value


db_option = click.option(
    "--db", default=DEFAULT_DB, show_default=True, metavar="STORE.duckdb",
    help="the results store, a DuckDB file", callback=_remember_store)
config_option = click.option(
    "--config", default=DEFAULT_CONFIG, show_default=True, metavar="PATH",
    help="the datasets.yaml naming this machine's datasets and the suites")
quiet_option = click.option("--quiet", is_flag=True, help="no progress bars")


#: The options of ``run`` and ``train`` that choose and shape the executor.
executor_options = [
    click.option("--device", help="torch device (default: cuda when present, else cpu; the "
                                  "pool puts one worker on each GPU of 'cuda')"),
    click.option("--executor", default="pool", show_default=True, envvar="WARPBENCH_EXECUTOR",
                 help="how the work is run: pool (worker processes, killed and replaced when a "
                      "method hangs or crashes), inprocess (this process, for debugging), ray "
                      "(a Ray cluster), or one a plugin registers [env: WARPBENCH_EXECUTOR]"),
    click.option("--workers", type=int, metavar="N",
                 help="pool: worker processes (default: one per GPU, else 1)"),
    click.option("--memory-limit", type=float, metavar="MB",
                 help="pool: kill a worker whose resident memory passes this many MB (its pair "
                      "is stored as failed)"),
    click.option("--address", metavar="auto|HOST:PORT",
                 help="ray: the cluster to use (auto: the one `ray start` began here; default: "
                      "a new local one)"),
]
#: Each executor option's name on the command line, by its keyword.
_OPTION_NAMES = {"workers": "--workers", "memory_limit_mb": "--memory-limit",
                 "address": "--address"}


def make_executor(registry, name: str, device: str | None = None, **options):
    """The executor ``name`` on ``device``, given the ``options`` that were set (an executor that
    does not take one is a user error naming it, as is one that cannot run here)."""
    import inspect

    from warpbench.executors import ExecutorError

    if name not in registry.executors:
        raise CommandLineError(f"no executor {name!r} "
                               f"(registered: {', '.join(registry.executors)})")
    cls = registry.executors[name]
    given = {key: value for key, value in options.items() if value is not None}
    taken = inspect.signature(cls).parameters
    refused = [_OPTION_NAMES.get(key, key) for key in given if key not in taken]
    if refused:
        raise CommandLineError(f"executor {name!r} does not take {', '.join(refused)}")
    try:
        return cls(device=device, **given)
    except ExecutorError as exc:
        raise CommandLineError(f"executor {name!r}: {exc}") from None


@contextmanager
def executor_errors():
    """An executor that cannot go on (workers that die as they start) is a user error."""
    from warpbench.executors import ExecutorError

    try:
        yield
    except ExecutorError as exc:
        raise CommandLineError(str(exc)) from None


class CommandLineError(ValueError):
    """A user error that the command line finds itself (a selection naming an unknown method or
    executor, a store the study cannot use); reported like the platform's own user errors."""


INTERRUPTED = ("interrupted: finished pairs and training checkpoints are stored; run the same "
               "command to resume")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the work of ``run`` or ``train``; what finished is stored. It
    carries the exit status, so a command stops with it instead of returning it."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__(INTERRUPTED)


def disk_full(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that says the disk is full (an ``OSError`` ENOSPC, or DuckDB's
    error quoting it), or None. A failed commit is often followed by a failed rollback, whose
    error then hides this one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
                "No space left on device" in str(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def interruptible():
    """Treat SIGTERM (a kill, a job scheduler, ``timeout``) like Ctrl-C while computing, so runs
    and trainings are marked interrupted and buffered curve points are written (the scheduler
    does both on KeyboardInterrupt); then raise :class:`Interrupted`."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def strict() -> bool:
    """Whether ``--strict`` was given (before the command)."""
    return bool(click.get_current_context().find_root().params.get("strict"))


def warned(registry):
    """``registry``, after printing each plugin problem as a warning on stderr."""
    for problem in registry.problems:
        click.echo(f"warning: {problem}", err=True)
    return registry


def load_registry():
    """The plugins' registry for a command: problems are warnings, or an error under --strict."""
    from warpbench import plugins

    return warned(plugins.load_registry(strict=strict()))


def examples(*lines: str) -> str:
    """A command's epilog: the command lines as written, one per line."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
