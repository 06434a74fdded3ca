"""Reading ``datasets.yaml``: which datasets this machine has, how to read them, and the suites.

::

    datasets:
      NAME: {plugin: KIND, ...options of that kind and the shared split/pairs options}
    suites:
      NAME: {methods: [METHOD[:PRESET], ...], datasets: [NAME, ...], time_limit: SECONDS, seed: 0,
             train_on: [NAME, ...], description: TEXT}

``train_on`` names the datasets learning methods train on (by default every dataset of the suite
with a non-empty train split); each trained network is evaluated on every dataset of the suite.

The file, each suite and each dataset block are pydantic models (:class:`ConfigFile`,
:class:`Suite`, a kind's :attr:`~warpbench.datasets.Dataset.Options`), so a misspelt key is an
error naming the file, the block and the key; :func:`datasets_yaml_schema` writes them as a JSON
Schema that editors complete and check the file with. A broken file is reported with its path
(and line, for YAML errors). A broken block makes only that dataset unavailable, with the
reason, so the others still run: blocks are validated when a dataset is built, not on loading.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, PrivateAttr, StrictStr, create_model

from warpbench.datasets import Dataset, DatasetConfigError
from warpbench.options import Settings, must_be, number, validate

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
Names = Annotated[list[StrictStr], must_be("a list of names")]


class ConfigError(ValueError):
    """``datasets.yaml`` cannot be used; the message names the file and the entry."""


class ConfigFile(Settings):
    """A warpbench `datasets.yaml`: the datasets this machine has and the named suites.
    Relative paths are relative to the file's folder."""

    datasets: dict[str, Any] | None = None
    """Dataset name -> its block: `plugin: KIND` and that kind's options."""
    suites: dict[str, Any] | None = None
    """Suite name -> what `warpbench run --suite NAME` and `warpbench ci --suite NAME` run."""


class Suite(Settings):
    """A named evaluation: methods x datasets (x training datasets, for learning methods)."""

    methods: Names
    """Methods as NAME or NAME:PRESET (NAME:* for every preset), run in this order."""
    datasets: Names
    """The datasets every method is evaluated on."""
    time_limit: Annotated[number(gt=0), must_be("a positive number of seconds")] | None = None
    """Seconds one pair may take before it fails (none: no limit)."""
    seed: int = 0
    """The seed of every run and training."""
    train_on: Names | None = None
    """The datasets learning methods train on (default: every dataset of the suite with train
    subjects)."""
    description: str | None = None
    """What the suite is for, in words (for readers of the file)."""
    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        """The suite's name: its key in the file."""
        return self._name

    @classmethod
    def from_block(cls, path: Path, name: str, block: Any) -> Suite:
        """The suite ``name`` of the file ``path``, from its ``block``."""
        suite = validate(cls, block, f"{path}: suite {name!r}", "key", ConfigError)
        suite._name = name
        return suite


@dataclass
class Config:
    path: Path
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    suites: dict[str, Suite] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        return self.path.parent

    def suite(self, name: str) -> Suite:
        if name not in self.suites:
            defined = ", ".join(self.suites) or "none"
            raise ConfigError(f"{self.path}: no suite {name!r}; suites defined: {defined}")
        return self.suites[name]


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (pass --config PATH to a datasets.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:  # a folder, an unreadable or binary file
        raise ConfigError(f"{path}: cannot be read as a datasets.yaml ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets' and 'suites' at the top")
    top = validate(ConfigFile, raw, str(path), "top-level key", ConfigError)
    suites = {name: Suite.from_block(path, name, block)
              for name, block in (top.suites or {}).items()}
    return Config(path=path, datasets=top.datasets or {}, suites=suites)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what it was reading, what it found, and where (its own text
    spans several lines, with a copy of the offending line)."""
    def at(mark) -> str:
        return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""

    problem = getattr(error, "problem", None)
    if problem is None:
        return " ".join(str(error).split())
    context = getattr(error, "context", None)
    reading = f"{context}{at(getattr(error, 'context_mark', None))}: " if context else ""
    return f"{reading}{problem}{at(getattr(error, 'problem_mark', None))}"


def build_dataset(config: Config, name: str, dataset_kinds: dict[str, type[Dataset]]) -> Dataset:
    """Instantiate one ``datasets.yaml`` block; raise :class:`DatasetConfigError` naming the file
    and the block."""
    where = f"{config.path}: dataset {name!r}"
    if name not in config.datasets:
        raise DatasetConfigError(
            f"{config.path}: no dataset {name!r}; defined: {', '.join(config.datasets) or 'none'}"
        )
    block = config.datasets[name]
    if not isinstance(block, dict) or "plugin" not in block:
        raise DatasetConfigError(f"{where}: expected a mapping with a 'plugin' key")
    options = dict(block)
    kind = options.pop("plugin")
    if kind not in dataset_kinds:
        raise DatasetConfigError(
            f"{where}: no installed plugin supplies dataset kind {kind!r} "
            f"(installed kinds: {', '.join(sorted(dataset_kinds)) or 'none'})"
        )
    try:
        return dataset_kinds[kind].from_block(name, options, config, dataset_kinds)
    except DatasetConfigError as exc:  # it names the dataset and its kind
        raise DatasetConfigError(f"{config.path}: {exc}") from None
    except Exception as exc:
        raise DatasetConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc


def datasets_yaml_schema(dataset_kinds: dict[str, type[Dataset]]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``datasets.yaml`` using the kinds ``dataset_kinds``:
    each block is the options model of the kind its ``plugin`` names, each suite a
    :class:`Suite`."""
    blocks = [_block_model(kind, cls) for kind, cls in sorted(dataset_kinds.items())]
    if len(blocks) > 1:
        block = Annotated[Union[tuple(blocks)], Field(discriminator="plugin")]
    else:
        block = blocks[0] if blocks else dict[str, Any]
    documented = {name: info.description for name, info in ConfigFile.model_fields.items()}
    model = create_model(
        "DatasetsYaml", __base__=ConfigFile, __doc__=ConfigFile.__doc__,
        datasets=(dict[str, block] | None, Field(None, description=documented["datasets"])),
        suites=(dict[str, Suite] | None, Field(None, description=documented["suites"])),
    )
    schema = model.model_json_schema()
    schema["title"] = "datasets.yaml"
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def _block_model(kind: str, cls: type[Dataset]):
    """A block of dataset kind ``kind``: its options and ``plugin: <kind>``."""
    return create_model(
        f"{cls.__name__}Block", __base__=cls.Options,
        __doc__=inspect.cleandoc(cls.__doc__ or cls.Options.__doc__ or f"A {kind} dataset."),
        plugin=(Literal[kind], Field(description="The dataset kind: the plugin that reads it.")),
    )
