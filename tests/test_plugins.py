"""Plugin loading: entry points, attribution, and containment of broken plugins."""

import sys
import textwrap

import pytest

from fake_dist import add_distribution, forget_modules, install_module
from toy_plugins import ShiftMethod, ToyCommandPlugin, ToyPlugin
from warpbench import Method, hookspecs
from warpbench.cli import build_cli, main
from warpbench.hookspecs import hookimpl
from warpbench.plugins import PluginError, load_registry


def test_builtin_plugins_register_through_entry_points_with_their_distribution():
    registry = load_registry(strict=True)
    assert {"identity", "affine", "greedy"} <= set(registry.methods)
    assert {"synthetic", "decathlon"} <= set(registry.dataset_kinds)
    assert "inprocess" in registry.executors
    classical = registry.plugin_of("method", "greedy")
    assert classical.name == "classical"
    assert classical.distribution == "warpbench" and classical.version
    assert "method:greedy" in classical.registered


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Install plugin modules as real distributions with ``warpbench`` entry points, found by
    importlib.metadata on sys.path exactly as a pip-installed package would be."""

    def install(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        dist = tmp_path / f"{name}_dist-1.2.3.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}-dist\nVersion: 1.2.3\n")
        (dist / "entry_points.txt").write_text(f"[warpbench]\n{name} = {name}\n")

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS",
                       "executors,classical,broken_import,greedy_again,ok_extra")
    yield install
    for name in ("broken_import", "greedy_again", "ok_extra"):
        sys.modules.pop(name, None)


GOOD_PLUGIN = """
    from warpbench import Method
    from warpbench.hookspecs import hookimpl

    class Extra(Method):
        name = "extra"
        family = "baseline"

    @hookimpl
    def register_methods(register):
        register(Extra())
"""


def test_a_broken_or_clashing_plugin_is_reported_by_name_and_the_others_load(installed_plugins):
    installed_plugins("broken_import", "raise ImportError('needs a package that is missing')")
    installed_plugins("greedy_again", GOOD_PLUGIN.replace('"extra"', '"greedy"'))
    installed_plugins("ok_extra", GOOD_PLUGIN)
    registry = load_registry()
    problems = {p.plugin: p.reason for p in registry.problems}
    assert "needs a package that is missing" in problems["broken_import"]
    assert "'greedy' is already registered by plugin 'classical'" in problems["greedy_again"]
    assert registry.plugin_of("method", "greedy").name == "classical"
    assert registry.plugin_of("method", "extra").distribution == "ok_extra-dist"
    assert registry.plugins["ok_extra"].version == "1.2.3"
    with pytest.raises(PluginError, match="broken_import"):
        load_registry(strict=True)


def test_cli_lists_plugins_with_what_they_registered_and_their_problems(installed_plugins, capsys):
    installed_plugins("broken_import", "raise ImportError('needs a package that is missing')")
    installed_plugins("greedy_again", GOOD_PLUGIN)
    installed_plugins("ok_extra", GOOD_PLUGIN.replace('"extra"', '"extra2"'))
    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert "classical  (warpbench " in out and "method:greedy" in out
    assert "ok_extra  (ok_extra-dist 1.2.3)" in out and "method:extra2" in out
    assert "PROBLEM: failed to import: ImportError: needs a package that is missing" in out
    assert main(["--strict", "plugins"]) == 2


def test_a_hook_that_raises_or_registers_junk_is_contained():
    class RaisingHook:
        @hookimpl
        def register_methods(self, register):
            raise RuntimeError("boom")

    class JunkHook:
        @hookimpl
        def register_methods(self, register):
            register("not a method")

            class Nameless(Method):
                family = "neural"

            register(Nameless())

    registry = load_registry(extra_plugins=[RaisingHook(), JunkHook(), ToyPlugin()])
    reasons = " | ".join(str(p) for p in registry.problems)
    assert "plugin 'RaisingHook': register_methods raised RuntimeError: boom" in reasons
    assert "expected a warpbench.Method instance" in reasons
    assert "has no name" in reasons and "family 'neural'" in reasons
    assert isinstance(registry.methods["toy-shift"], ShiftMethod)


def test_every_hook_is_documented():
    hooks = {n: getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("register_")}
    assert len(hooks) == 5
    callbacks = [h for n, h in hooks.items() if n != "register_commands"]
    assert all(h.__doc__ and "register(" in h.__doc__ for h in callbacks)
    assert "@cli.command()" in hooks["register_commands"].__doc__


# --- commands a plugin adds: the register_commands hook ---------------------------------------
@pytest.fixture
def command_plugin(tmp_path, monkeypatch):
    """``toy_plugins.TOY_COMMANDS`` installed as the entry point ``toy-commands``, beside the
    executors plugin only (a plugin that adds a command need not import the others)."""
    add_distribution(tmp_path, "toy-commands", {"toy-commands": "toy_plugins:TOY_COMMANDS"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", "executors,toy-commands")


def test_a_plugin_command_is_listed_in_help_runs_and_is_attributed(command_plugin, capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert "toy-greet" in listed and "Greet someone (a plugin's command)." in listed
    assert "leaderboard" in listed  # beside warpbench's own commands
    assert main(["toy-greet", "--name", "Ada"]) == 0
    assert capsys.readouterr().out == "hello Ada\n"
    assert main(["toy-greet", "--help"]) == 0
    assert "Example: warpbench toy-greet --name Ada" in capsys.readouterr().out
    assert main(["plugins"]) == 0
    assert "toy-commands  (toy-commands 0.1.0)\n    command:toy-greet" in capsys.readouterr().out


def test_a_plugin_command_is_not_there_without_its_plugin(capsys):
    assert main(["--help"]) == 0
    assert "toy-greet" not in capsys.readouterr().out
    assert main(["toy-greet"]) == 2
    assert "No such command 'toy-greet'" in capsys.readouterr().err


class RaisingCommands:
    @hookimpl
    def register_commands(self, cli):
        raise RuntimeError("no commands today")


class TakesRun:
    @hookimpl
    def register_commands(self, cli):
        @cli.command("run")
        def impostor():
            """Not warpbench's run."""


class GreetsToo(ToyCommandPlugin):
    """The same command from a second plugin."""


def test_a_command_hook_that_raises_or_takes_a_used_name_is_contained():
    cli = build_cli()
    run = cli.commands["run"]
    registry = load_registry(
        extra_plugins=[RaisingCommands(), TakesRun(), ToyCommandPlugin(), GreetsToo()], cli=cli)
    reasons = " | ".join(str(p) for p in registry.problems)
    assert "plugin 'RaisingCommands': register_commands raised RuntimeError: no commands today" \
        in reasons
    assert "plugin 'TakesRun': command 'run' is already one of warpbench's own; this one is " \
           "ignored" in reasons
    assert "plugin 'GreetsToo': command 'toy-greet' is already registered by plugin " \
           "'ToyCommandPlugin'" in reasons
    assert cli.commands["run"] is run
    assert registry.plugin_of("command", "toy-greet").name == "ToyCommandPlugin"
    assert registry.plugins["GreetsToo"].registered == []
    with pytest.raises(PluginError, match="RaisingCommands"):
        load_registry(extra_plugins=[RaisingCommands()], strict=True, cli=build_cli())


RAISING_COMMANDS = """
    from warpbench.hookspecs import hookimpl

    @hookimpl
    def register_commands(cli):
        raise RuntimeError("no commands today")
"""


def test_a_broken_command_plugin_is_a_warning_and_fatal_with_strict(tmp_path, monkeypatch,
                                                                    capsys):
    install_module(tmp_path, "raising_commands", RAISING_COMMANDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", "executors,raising_commands")
    try:
        assert main(["--help"]) == 0
        captured = capsys.readouterr()
        assert "leaderboard" in captured.out
        assert ("warning: plugin 'raising_commands': register_commands raised RuntimeError: "
                "no commands today") in captured.err
        assert main(["--strict", "--help"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: plugin 'raising_commands': register_commands raised")
        assert err.count("\n") == 1
        assert main(["--strict", "no-such-command"]) == 2
        assert "error: plugin 'raising_commands'" in capsys.readouterr().err
    finally:
        forget_modules("raising_commands")
