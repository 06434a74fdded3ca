"""Writing a plugin: the README's example plugin is built, pip-installed and run end to end from
the README text itself; `warpbench new-plugin` output passes `warpbench check` and its own test."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUILTIN_PLUGINS, REPO
from fake_dist import add_distribution, forget_modules
from warpbench.cli import main
from warpbench import scaffold
from warpbench.scaffold import names

BIN = Path(sys.executable).parent
# Subprocesses use one torch thread: on a small shared machine, two threads that spin-wait for a
# busy core make each command many times slower, and these tests judge behaviour, not speed.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def readme_example() -> tuple[dict[str, str], list[str]]:
    """The files after ``<!-- example-plugin: PATH -->`` markers and the command lines after
    ``<!-- example-commands -->``, exactly as the README shows them."""
    text = (REPO / "README.md").read_text()
    fence = r"\s*```[a-z]*\n(.*?)```"
    files = dict(re.findall(r"<!-- example-plugin: (\S+) -->" + fence, text, re.S))
    commands = re.findall(r"<!-- example-commands -->" + fence, text, re.S)
    assert files and len(commands) == 1, "README markers for the example plugin are missing"
    return files, [line for line in commands[0].splitlines() if line.strip()]


def run(argv, cwd, env, timeout=300):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def readme_plugin(tmp_path):
    """Write the README's plugin package to tmp_path and pip-install it (editable, offline) into
    this environment; uninstall it afterwards."""
    files, commands = readme_example()
    for relative, content in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    package = tmp_path / Path(next(iter(files))).parts[0]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    installed = run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", "-e",
                     str(package)], tmp_path, os.environ.copy())
    assert installed.returncode == 0, installed.stdout + installed.stderr
    dist = re.search(r'^name = "(.+)"', files[f"{package.name}/pyproject.toml"], re.M).group(1)
    try:
        yield package, commands
    finally:
        run([*pip, "uninstall", "-y", dist], tmp_path, os.environ.copy())


def test_the_readme_example_plugin_installs_checks_runs_and_reaches_the_leaderboard(
        readme_plugin, tmp_path):
    package, commands = readme_plugin
    (tmp_path / "datasets.yaml").write_text((REPO / "datasets.yaml").read_text())
    env = {**os.environ, **ONE_THREAD, "WARPBENCH_LOAD_PLUGINS": f"{BUILTIN_PLUGINS},translation"}
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        if argv[0] == "warpbench":
            argv[0] = str(BIN / "warpbench")
        elif argv[0] == "pytest":
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv[1:]]
        else:
            pytest.fail(f"unexpected command in the README example: {line}")
        done = run(argv, tmp_path, env)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    joined = "\n".join(outputs)
    assert "method:translation" in joined  # warpbench plugins
    assert "method 'translation' (preset 'default') passes" in joined  # warpbench check
    assert "1 passed" in joined  # pytest on the package's own test
    board = [line.split() for line in outputs[-1].splitlines()[1:]]
    rows = {(row[0], row[3]): row for row in board}
    translation = rows[("translation", "quick-distinct")]
    assert translation[4:6] == ["6", "0"]  # pairs, failed
    assert float(translation[6]) >= float(rows[("identity", "quick-distinct")][6]) - 0.01


@pytest.fixture
def visible(tmp_path, monkeypatch):
    """Make a scaffolded package importable and its entry point visible, as an install would."""

    def show(kind: str, name: str) -> Path:
        root = tmp_path / f"pkg-{name}"
        assert main(["new-plugin", name, "--kind", kind, "--dir", str(root)]) == 0
        values = names(name, kind)
        add_distribution(tmp_path / "site", values["__DIST__"], {name: values["__MODULE__"]})
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
        monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", f"{BUILTIN_PLUGINS},{name}")
        return root

    monkeypatch.chdir(tmp_path)
    yield show
    forget_modules("warpbench_scaffolded")


@pytest.mark.parametrize("kind", ["method", "dataset"])
def test_new_plugin_passes_check_and_its_own_test_out_of_the_box(visible, kind, capsys):
    name = f"scaffolded-{kind}"
    root = visible(kind, name)
    module = names(name, kind)["__MODULE__"]
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", f"{module}/__init__.py", f"tests/test_{module}.py",
        ".github/workflows/evaluate.yml"}
    pyproject = (root / "pyproject.toml").read_text()
    assert f'[project.entry-points.warpbench]\n{name} = "{module}"' in pyproject
    workflow = (root / ".github" / "workflows" / "evaluate.yml").read_text()
    assert "uses: warpbench/warpbench/.github/workflows/evaluate.yml@main" in workflow
    assert f"check: {name}" in workflow

    capsys.readouterr()
    assert main(["check", name]) == 0
    assert "passes of the warpbench contract" in capsys.readouterr().out

    env = {**os.environ, **ONE_THREAD,
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    test = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)], root, env)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout


def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "My_Method"]) == 2
    assert "plugin name 'My_Method': use lower-case letters" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["new-plugin", "fine", "--dir", "taken"]) == 2
    assert "taken: already exists and is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert main(["new-plugin", "fine"]) == 0
    assert (tmp_path / "warpbench-fine" / "warpbench_fine" / "__init__.py").exists()


def test_the_reusable_workflow_is_callable_with_the_inputs_the_scaffold_passes():
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "evaluate.yml").read_text())
    inputs = workflow[True]["workflow_call"]["inputs"]  # YAML 1.1 reads the key `on` as True
    for kind in ("method", "dataset"):
        scaffolded = yaml.safe_load(scaffold.workflow(kind))
        assert set(scaffolded["jobs"]["warpbench"]["with"]) <= set(inputs)
    steps = " ".join(str(step.get("run", "")) for step in workflow["jobs"]["evaluate"]["steps"])
    assert "download.pytorch.org/whl/cpu" in steps and "warpbench ci" in steps
    assert "GITHUB_STEP_SUMMARY" in steps
    uses = [step.get("uses", "") for step in workflow["jobs"]["evaluate"]["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    # torch is installed before warpbench, so pip never resolves a CUDA build
    install = next(s["run"] for s in workflow["jobs"]["evaluate"]["steps"] if "TORCH_SPEC" in str(s))
    assert install.index("TORCH_SPEC") < install.index("./.warpbench")
