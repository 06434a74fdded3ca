"""``warpbench new-plugin``: a new plugin package that installs, passes ``warpbench check`` and
its own test, and evaluates itself in CI, before its author has changed a line.

A method plugin fits a translation by gradient descent (a real method with the right sign, small
enough to read in a minute); a dataset plugin generates two nested boxes per subject. Both say
where the author's own code goes.
"""

from __future__ import annotations

import re
from pathlib import Path

KINDS = ("method", "dataset")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
TOKENS = ("__NAME__", "__DIST__", "__MODULE__", "__CLASS__")


class ScaffoldError(ValueError):
    """The plugin cannot be created where or as asked; the message says why."""


def names(name: str, kind: str) -> dict[str, str]:
    """The names a plugin called ``name`` gets: its method name or dataset kind (``name``), its
    distribution, import package and class."""
    if not NAME_PATTERN.match(name):
        raise ScaffoldError(f"plugin name {name!r}: use lower-case letters, digits and single "
                            "hyphens, starting with a letter (e.g. 'my-method')")
    if kind not in KINDS:
        raise ScaffoldError(f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")
    base = name.removeprefix("warpbench-")
    dist = f"warpbench-{base}"
    return {
        "__NAME__": name,
        "__DIST__": dist,
        "__MODULE__": dist.replace("-", "_"),
        "__CLASS__": "".join(part.capitalize() for part in base.split("-"))
                     + ("Method" if kind == "method" else "Dataset"),
    }


def create_plugin(name: str, kind: str = "method",
                  directory: str | Path | None = None) -> list[Path]:
    """Write the package into ``directory`` (default ``./warpbench-<name>``), which must not exist
    or be empty; return the files written."""
    values = names(name, kind)
    root = Path(directory) if directory else Path(values["__DIST__"])
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root}: already exists and is not an empty folder; "
                            "choose another --dir")
    module, test = {"method": (METHOD_MODULE, METHOD_TEST),
                    "dataset": (DATASET_MODULE, DATASET_TEST)}[kind]
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{values['__MODULE__']}/__init__.py": module,
        f"tests/test_{values['__MODULE__']}.py": test,
        ".github/workflows/evaluate.yml": workflow(kind),
    }
    written = []
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = template
        for token in TOKENS:
            text = text.replace(token, values[token])
        path.write_text(text.lstrip("\n"))
        written.append(path)
    return written


PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "__NAME__: a warpbench plugin"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["warpbench"]

[project.optional-dependencies]
test = ["pytest>=8"]

# warpbench finds its plugins through this entry-point group.
[project.entry-points.warpbench]
__NAME__ = "__MODULE__"

[tool.setuptools]
packages = ["__MODULE__"]
'''

README = '''
# __DIST__

A [warpbench](https://github.com/warpbench/warpbench) plugin supplying `__NAME__`.

```sh
pip install -e ".[test]"     # next to warpbench, in the same environment
warpbench plugins            # lists __NAME__
warpbench check __NAME__     # the contract: every rule, with what was expected when one fails
pytest                       # the same contract, as a test
```

`.github/workflows/evaluate.yml` runs the contract and warpbench's quick evaluation suite on every
push, uploads the results store and writes the leaderboard into the job summary.
'''

METHOD_MODULE = '''
"""__NAME__: a warpbench method plugin.

Replace the body of ``register`` with your method and keep its contract: two float32 (D, H, W)
images in, a float32 (3, D, H, W) pull-back displacement in voxels out, such that
``moving(x + u(x))`` matches ``fixed(x)``. ``warpbench check __NAME__`` says whether it does.
"""

import torch

from warpbench import Grid, Method
from warpbench.hookspecs import hookimpl
from warpbench.spatial import warp_tensor


class __CLASS__(Method):
    name = "__NAME__"
    family = "classical"  # classical / learning / baseline
    version = "1"  # bump it when results would change: stored runs are keyed by it
    presets = {"default": {"steps": 100, "learning_rate": 0.2}}

    def register(self, fixed, moving, params, device, *, grid=Grid()):
        """A translation, fitted by gradient descent on the mean squared difference (``grid``
        holds the voxel spacing in mm and whether the dataset is pre-aligned; unused here)."""
        fixed_t = torch.as_tensor(fixed, device=device)[None, None]
        moving_t = torch.as_tensor(moving, device=device)[None, None]
        shift = torch.zeros(1, 3, 1, 1, 1, device=device, requires_grad=True)
        optimiser = torch.optim.Adam([shift], lr=params["learning_rate"])
        with torch.enable_grad():
            for _ in range(params["steps"]):
                optimiser.zero_grad()
                moved = warp_tensor(moving_t, shift.expand(1, 3, *fixed.shape))
                loss = ((moved - fixed_t) ** 2).mean()
                loss.backward()
                optimiser.step()
        return shift.detach()[0].expand(3, *fixed.shape).contiguous()


@hookimpl
def register_methods(register):
    register(__CLASS__())
'''

METHOD_TEST = '''
"""The warpbench contract for __NAME__: shape, dtype, finiteness, the pull-back sign, identical
images, determinism, CPU; a failure names the rule and shows what was expected."""

from warpbench.testing import assert_method_contract

from __MODULE__ import __CLASS__


def test_the_default_preset_keeps_the_contract():
    assert_method_contract(__CLASS__(), "default")
'''

DATASET_MODULE = '''
"""__NAME__: a warpbench dataset plugin.

Replace ``all_subjects`` and ``load`` with reading your files, bringing every subject to one grid
(float32 image, integer label map of the same shape, 4x4 affine). A ``datasets.yaml`` block uses
it with ``plugin: __NAME__``; its options, declared in ``Options``, arrive validated and typed in
``self.settings``. ``warpbench check __NAME__`` says whether it keeps the contract.
"""

import numpy as np
from pydantic import Field

from warpbench import Dataset, Subject
from warpbench.datasets import DatasetOptions
from warpbench.hookspecs import hookimpl

SHAPE = (32, 32, 32)


class __CLASS__(Dataset):
    kind = "__NAME__"
    version = "1"  # bump it when the content would change
    labels = {1: "outer", 2: "inner"}  # evaluated labels; 0 is background
    license = "CC0"
    citation = ""

    class Options(DatasetOptions):
        """A block's options besides the shared ones (split, pairs, ...); a misspelt key is an
        error naming the block."""

        subjects: int = Field(8, ge=1)
        """How many subjects."""

    def all_subjects(self):
        return [f"case_{i:03d}" for i in range(self.settings.subjects)]

    def load(self, subject_id):
        shift = int(subject_id.split("_")[1]) % 4  # each subject's boxes sit a little elsewhere
        labels = np.zeros(SHAPE, np.int16)
        labels[6 + shift : 26 + shift, 6:26, 8:24] = 1
        labels[12 + shift : 20 + shift, 12:20, 12:20] = 2
        image = np.array([0.0, 0.5, 1.0], np.float32)[labels]
        return Subject(subject_id, image, labels, np.eye(4))


@hookimpl
def register_datasets(register):
    register(__CLASS__)
'''

DATASET_TEST = '''
"""The warpbench contract for the __NAME__ dataset kind: labels declared, one grid, float32
images, disjoint splits, valid pairs; a failure names the rule and shows what was expected."""

from warpbench.testing import assert_dataset_contract

from __MODULE__ import __CLASS__


def test_the_default_options_keep_the_contract(tmp_path):
    assert_dataset_contract(__CLASS__("__NAME__", {}, tmp_path))
'''

# The reusable workflow lives in warpbench's repository; a fork changes the owner below.
WORKFLOW = '''
name: evaluate
on: [push, pull_request]
permissions:
  contents: read
  actions: read
jobs:
  warpbench:
    uses: warpbench/warpbench/.github/workflows/evaluate.yml@main
    with:
      plugin: "."
      check: __NAME__
__INPUTS__'''
# A method plugin is evaluated on the quick suite and compared with the last run's results; a
# dataset plugin is only checked.
WORKFLOW_INPUTS = {
    "method": '''      methods: __NAME__
      suite: quick
      baseline-artifact: warpbench-results
''',
    "dataset": '''      suite: ""
''',
}


def workflow(kind: str) -> str:
    """The GitHub workflow a new ``kind`` plugin gets (names still as tokens)."""
    return WORKFLOW.replace("__INPUTS__", WORKFLOW_INPUTS[kind])
