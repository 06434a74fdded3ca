"""Loading plugins and collecting what they register.

Built-in plugins and third-party ones load the same way: through the ``warpbench`` entry-point
group. A plugin that fails to import, raises in a hook, or registers a name already taken is
recorded as a :class:`PluginProblem` naming it and the reason, and the others go on; ``strict``
turns any problem into a :class:`PluginError`. Given the command line's click group, plugins may
also add commands to it (``register_commands``), attributed and contained the same way.

``WARPBENCH_LOAD_PLUGINS`` (comma-separated entry-point names, possibly empty) loads only those,
which keeps plugins installed on a developer's machine out of a test run.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from warpbench import hookspecs
from warpbench.datasets import Dataset
from warpbench.literature import ReportedResult
from warpbench.methods import Method

ENTRY_POINT_GROUP = "warpbench"


class PluginError(RuntimeError):
    """Raised in strict mode when any plugin could not be loaded or registered something wrong."""


@dataclass
class PluginInfo:
    name: str
    distribution: str = ""
    version: str = ""
    registered: list[str] = field(default_factory=list)


@dataclass
class PluginProblem:
    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.reason}"


@dataclass
class Registry:
    """Everything the loaded plugins supplied, with who supplied it and what went wrong."""

    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    methods: dict[str, Method] = field(default_factory=dict)
    dataset_kinds: dict[str, type[Dataset]] = field(default_factory=dict)
    executors: dict[str, type] = field(default_factory=dict)
    reported_results: dict[str, ReportedResult] = field(default_factory=dict)  # by .key
    owner: dict[str, str] = field(default_factory=dict)  # "method:NAME", "command:NAME" -> plugin
    problems: list[PluginProblem] = field(default_factory=list)

    def plugin_of(self, kind: str, name: str) -> PluginInfo:
        return self.plugins[self.owner[f"{kind}:{name}"]]


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("warpbench")
    manager.add_hookspecs(hookspecs)
    return manager


def _selected_entry_points():
    """Entry points to load: warpbench's own first, then the others by name, so the first to
    register a name (which keeps it) does not depend on the order of sys.path."""
    only = os.environ.get("WARPBENCH_LOAD_PLUGINS")
    wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
    selected = [ep for ep in entry_points(group=ENTRY_POINT_GROUP)
                if wanted is None or ep.name in wanted]
    return sorted(selected,
                  key=lambda ep: (ep.dist is None or ep.dist.name != "warpbench", ep.name))


def load_registry(extra_plugins=(), strict: bool = False, cli=None) -> Registry:
    """Load the entry-point plugins plus ``extra_plugins`` (objects or modules with hook
    implementations, as tests use) and collect what each registers; with ``cli`` (a click group),
    let them add their commands to it too."""
    registry = Registry()
    manager = _new_manager()
    for ep in _selected_entry_points():
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "", dist.version if dist else "")
        registry.plugins[ep.name] = info
        try:
            manager.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            registry.problems.append(PluginProblem(ep.name, f"failed to import: {_describe(exc)}"))
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        registry.plugins.setdefault(name, PluginInfo(name, "(in-process)", ""))
        manager.register(plugin, name=name)

    _collect(manager, registry, "register_methods", "method", _method_entry, registry.methods)
    _collect(manager, registry, "register_datasets", "dataset", _dataset_entry,
             registry.dataset_kinds)
    _collect(manager, registry, "register_executors", "executor", _executor_entry,
             registry.executors)
    _collect(manager, registry, "register_reported_results", "reported", _reported_entry,
             registry.reported_results)
    if cli is not None:
        _add_commands(manager, registry, cli)
    if strict and registry.problems:
        raise PluginError("; ".join(str(p) for p in registry.problems))
    return registry


def _collect(manager, registry: Registry, hook_name: str, kind: str, entry, target: dict) -> None:
    """Call one hook plugin by plugin, so a failure is attributed and contained. ``entry``
    checks what a plugin passed to ``register`` and returns (name, value) for ``target``."""
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        plugin = impl.plugin_name

        def register(*args, _plugin=plugin):
            try:
                name, value = entry(*args)
            except (TypeError, ValueError) as exc:
                registry.problems.append(PluginProblem(_plugin, f"{hook_name}: {exc}"))
                return
            key = f"{kind}:{name}"
            if key in registry.owner:
                registry.problems.append(_clash(_plugin, kind, name, registry.owner[key]))
                return
            target[name] = value
            registry.owner[key] = _plugin
            registry.plugins[_plugin].registered.append(key)

        try:
            impl.function(register=register)
        except Exception as exc:
            registry.problems.append(PluginProblem(plugin, f"{hook_name} raised {_describe(exc)}"))


def _add_commands(manager, registry: Registry, cli) -> None:
    """Let one plugin at a time add commands to ``cli``, so each new command is attributed to its
    plugin, a hook that raises is contained, and a command replacing one that exists (warpbench's
    own or an earlier plugin's) is undone and reported."""
    for impl in manager.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:
            registry.problems.append(
                PluginProblem(plugin, f"register_commands raised {_describe(exc)}"))
        for name, command in list(cli.commands.items()):
            key = f"command:{name}"
            if name not in before:
                registry.owner[key] = plugin
                registry.plugins[plugin].registered.append(key)
            elif command is not before[name]:
                cli.commands[name] = before[name]
                registry.problems.append(_clash(plugin, "command", name, registry.owner.get(key)))


def _clash(plugin: str, kind: str, name: str, owner: str | None) -> PluginProblem:
    """A name already taken (by plugin ``owner``, or by warpbench itself): the first keeps it."""
    taken = f"registered by plugin {owner!r}" if owner else "one of warpbench's own"
    return PluginProblem(plugin, f"{kind} {name!r} is already {taken}; this one is ignored")


def _method_entry(method):
    if not isinstance(method, Method):
        raise TypeError(f"expected a warpbench.Method instance, got {method!r}")
    problems = method.check()
    if problems:
        raise ValueError(f"method {getattr(method, 'name', method)!r} " + ", ".join(problems))
    return method.name, method


def _dataset_entry(cls):
    if not (isinstance(cls, type) and issubclass(cls, Dataset) and getattr(cls, "kind", None)):
        raise TypeError(f"expected a warpbench.Dataset subclass with a 'kind', got {cls!r}")
    return cls.kind, cls


def _executor_entry(name, cls):
    if not isinstance(name, str) or not callable(cls):
        raise TypeError(f"expected register(name, executor_class), got {name!r}, {cls!r}")
    return name, cls


def _reported_entry(result):
    if not isinstance(result, ReportedResult):
        raise TypeError(f"expected a warpbench.literature.ReportedResult, got {result!r}")
    problems = result.check()
    if problems:
        raise ValueError(f"reported result {result.key!r} " + ", ".join(problems))
    return result.key, result


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {where.filename}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"
