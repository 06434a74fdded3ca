"""The whole plugin surface of warpbench, one hook per kind of thing a plugin supplies.

Every hook but ``register_commands`` receives a ``register`` callback and calls it once per thing it
supplies (the style of ``llm`` and ``tox``), so one plugin may supply many things and the platform
knows who supplied what. ``register_commands`` receives the click group itself, as datasette's and
llm's do, since a command is declared with click's own decorators.
"""

import pluggy

hookspec = pluggy.HookspecMarker("warpbench")
hookimpl = pluggy.HookimplMarker("warpbench")


@hookspec
def register_methods(register):
    """Call ``register(method)`` for each :class:`warpbench.Method` instance this plugin
    supplies."""


@hookspec
def register_datasets(register):
    """Call ``register(dataset_class)`` for each :class:`warpbench.Dataset` subclass (a ``kind``
    that ``datasets.yaml`` blocks name with ``plugin:``)."""


@hookspec
def register_executors(register):
    """Call ``register(name, executor_class)`` for each way of running evaluation work
    (see :mod:`warpbench.executors`)."""


@hookspec
def register_reported_results(register):
    """Call ``register(result)`` for each :class:`warpbench.literature.ReportedResult`: one score
    a paper reports, with its source (paper, table, dataset, metric, how the method was set up)."""


@hookspec
def register_commands(cli):
    """Add commands to ``cli``, the ``warpbench`` :class:`click.Group`, with ``@cli.command()``;
    a name that warpbench or an earlier plugin already uses is refused (the first keeps it)."""
