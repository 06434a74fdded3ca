"""Reading ``datasets.yaml``: which datasets this machine has, how to read them, and the suites.

::

    datasets:
      NAME: {plugin: KIND, ...options of that kind and the shared split/pairs options}
    suites:
      NAME: {methods: [METHOD[:PRESET], ...], datasets: [NAME, ...], time_limit: SECONDS, seed: 0,
             train_on: [NAME, ...]}

``train_on`` names the datasets learning methods train on (by default every dataset of the suite
with a non-empty train split); each trained network is evaluated on every compatible dataset.

A broken file is reported with its path (and line, for YAML errors). A broken block makes only
that dataset unavailable, with the reason, so the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from warpbench.datasets import Dataset, DatasetConfigError


class ConfigError(ValueError):
    """``datasets.yaml`` cannot be used; the message names the file and the entry."""


@dataclass
class Suite:
    name: str
    methods: list[str]
    datasets: list[str]
    time_limit: float | None = None
    seed: int = 0
    train_on: list[str] | None = None  # None: every suite dataset with train subjects


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
            raise ConfigError(
                f"{self.path}: no suite {name!r}; suites defined: {', '.join(self.suites) or 'none'}"
            )
        return self.suites[name]


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (pass --config PATH to a datasets.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets' and 'suites' at the top")
    unknown = set(raw) - {"datasets", "suites"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}")
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise ConfigError(f"{path}: 'datasets' must map names to blocks")
    config = Config(path=path, datasets=datasets)
    for name, block in (raw.get("suites") or {}).items():
        config.suites[name] = _parse_suite(path, name, block)
    return config


def _parse_suite(path: Path, name: str, block: Any) -> Suite:
    where = f"{path}: suite {name!r}"
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(block) - {"methods", "datasets", "time_limit", "seed", "description", "train_on"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    methods, datasets, train_on = block.get("methods"), block.get("datasets"), block.get("train_on")
    for key, value in (("methods", methods), ("datasets", datasets), ("train_on", train_on or [])):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: '{key}' must be a list of names")
    time_limit = block.get("time_limit")
    if time_limit is not None and (not isinstance(time_limit, (int, float)) or time_limit <= 0):
        raise ConfigError(f"{where}: 'time_limit' must be a positive number of seconds")
    return Suite(name, methods, datasets, time_limit, int(block.get("seed", 0)), train_on)


def build_dataset(config: Config, name: str, dataset_kinds: dict[str, type[Dataset]]) -> Dataset:
    """Instantiate one ``datasets.yaml`` block; raise :class:`DatasetConfigError` naming it."""
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
        return dataset_kinds[kind](name, options, config.base_dir)
    except DatasetConfigError:
        raise
    except Exception as exc:
        raise DatasetConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc
