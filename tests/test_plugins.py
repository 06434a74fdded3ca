"""Plugin loading: entry points, attribution, and containment of broken plugins."""

import sys
import textwrap

import pytest

from toy_plugins import ShiftMethod, ToyPlugin
from warpbench import Method, hookspecs
from warpbench.cli import main
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
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-dist\nVersion: 1.2.3\n")
        (dist / "entry_points.txt").write_text(f"[warpbench]\n{name} = {name}\n")

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", "executors,classical,broken_import,greedy_again,ok_extra")
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
    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("register_")]
    assert len(hooks) == 4
    assert all(h.__doc__ and "register(" in h.__doc__ for h in hooks)
