"""What a dataset is to the platform: subjects on one grid, splits, and evaluation pairs.

A dataset *kind* (a :class:`Dataset` subclass supplied by a plugin) is instantiated once per block
of ``datasets.yaml``; the base class owns the options every kind shares (``split``, ``pairs``), so
every dataset splits and pairs its subjects the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from warpbench.spatial import spacing_from_affine

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = {"train": 0.6, "val": 0.1, "test": 0.3, "seed": 0}
DEFAULT_PAIRS = {"test": 10, "seed": 0}
#: Options any dataset block may carry besides its kind's own.
SHARED_OPTIONS = frozenset({"split", "pairs", "license", "citation", "description", "label_map"})


class DatasetConfigError(ValueError):
    """A ``datasets.yaml`` block that cannot describe a dataset; the message names it."""


@dataclass
class Subject:
    """One subject: intensity image and label map on the dataset's grid, with their affine."""

    id: str
    image: np.ndarray  # float32 (D, H, W)
    labels: np.ndarray  # integer (D, H, W)
    affine: np.ndarray  # 4x4

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)


@dataclass(frozen=True)
class Pair:
    """An ordered evaluation pair: ``moving`` is registered onto ``fixed``."""

    fixed: str
    moving: str


class Dataset:
    """Base class of every dataset kind.

    Subclasses set ``kind`` (the name ``datasets.yaml`` uses after ``plugin:``), read their own
    options in ``__init__`` (calling ``super().__init__`` first), and implement
    :meth:`all_subjects`, :meth:`load` and, when files may be missing, :meth:`availability`.
    """

    kind: ClassVar[str]
    version: ClassVar[str] = "0"
    license: str = ""
    citation: str = ""
    #: Evaluated labels, value -> name; background (0) is never evaluated.
    labels: dict[int, str]

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        self.name = name
        self.options = dict(options)
        self.base_dir = Path(base_dir)
        self._split = self._parse_split(self.options.get("split", DEFAULT_SPLIT))
        self._pairs = self._parse_pairs(self.options.get("pairs", DEFAULT_PAIRS))
        self.license = self.options.get("license", self.license)
        self.citation = self.options.get("citation", self.citation)

    # --- what subclasses implement -------------------------------------------------------------
    def all_subjects(self) -> list[str]:
        """Every subject id, in a stable order."""
        raise NotImplementedError

    def load(self, subject_id: str) -> Subject:
        """One subject on the dataset's grid, intensities normalised."""
        raise NotImplementedError

    def availability(self) -> tuple[bool, str]:
        """Whether the dataset's files are here, and if not, why (shown to the user)."""
        return True, ""

    # --- shared behaviour ----------------------------------------------------------------------
    def fail(self, message: str):
        """Raise the configuration error that names this dataset and its kind."""
        raise DatasetConfigError(f"dataset {self.name!r} ({self.kind}): {message}")

    def reject_unknown_options(self, own) -> None:
        """Catch typos (``noize: 0.1``) instead of silently running with the default."""
        unknown = set(self.options) - set(own) - SHARED_OPTIONS
        if unknown:
            self.fail(f"unknown option(s) {sorted(unknown)}; known: {sorted(set(own) | SHARED_OPTIONS)}")

    def label_names(self) -> dict[int, str]:
        """Each evaluated label's canonical name: its own name unless the block's ``label_map``
        ({id: canonical name}) renames it. Networks trained on one dataset are evaluated on
        another only when these names agree (see :mod:`warpbench.compatibility`)."""
        mapping = self.options.get("label_map") or {}
        if not isinstance(mapping, dict):
            self.fail(f"'label_map' must map label ids to canonical names, got {mapping!r}")
        renamed = {}
        for key, name in mapping.items():
            try:
                label = int(key)
            except (TypeError, ValueError):
                label = None
            if label not in self.labels or not isinstance(name, str) or not name:
                self.fail(f"label_map entry {key!r}: {name!r} must map one of its label ids "
                          f"{sorted(self.labels)} to a name")
            renamed[label] = name
        return {label: renamed.get(label, name) for label, name in self.labels.items()}

    def fingerprint(self) -> str:
        """A short hash of everything that decides this dataset's content and pairs."""
        blob = json.dumps([self.kind, self.version, self.options], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def subjects(self, split: str) -> list[str]:
        """The subject ids of one split (disjoint, deterministic from the split seed)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        ids = sorted(self.all_subjects())
        order = np.random.default_rng(self._split["seed"]).permutation(len(ids))
        shuffled = [ids[i] for i in order]
        counts = self._split_counts(len(ids))
        start = sum(counts[s] for s in SPLITS[: SPLITS.index(split)])
        return sorted(shuffled[start : start + counts[split]])

    def pairs(self, split: str = "test") -> list[Pair]:
        """Ordered evaluation pairs within one split: ``pairs.<split>`` random distinct pairs, or
        every ordered pair when it is ``all``."""
        ids = self.subjects(split)
        wanted = self._pairs.get(split, 0)
        every = [Pair(f, m) for f in ids for m in ids if f != m]
        if wanted == "all" or wanted >= len(every):
            return every
        rng = np.random.default_rng(self._pairs["seed"])
        chosen = rng.choice(len(every), size=int(wanted), replace=False)
        return [every[i] for i in sorted(chosen)]

    def _split_counts(self, n: int) -> dict[str, int]:
        values = {s: self._split.get(s, 0) for s in SPLITS}
        if all(isinstance(v, float) and v <= 1 for v in values.values() if v):
            counts = {s: int(round(values[s] * n)) for s in SPLITS}
            counts["train"] = n - counts["val"] - counts["test"]
        else:
            counts = {s: int(values[s]) for s in SPLITS}
        if sum(counts.values()) > n or min(counts.values()) < 0:
            raise DatasetConfigError(
                f"dataset {self.name!r}: split {values} asks for more than its {n} subjects"
            )
        return counts

    def _parse_split(self, split: Any) -> dict[str, Any]:
        if not isinstance(split, dict) or not set(split) <= {*SPLITS, "seed"}:
            raise DatasetConfigError(
                f"dataset {self.name!r}: 'split' must map train/val/test to fractions or counts "
                f"(and optionally seed), got {split!r}"
            )
        for key in SPLITS:
            value = split.get(key, 0)
            if not isinstance(value, (int, float)) or value < 0:
                raise DatasetConfigError(
                    f"dataset {self.name!r}: split.{key} must be a non-negative number, got {value!r}"
                )
        fractions = [split.get(k, 0) for k in SPLITS]
        if all(isinstance(v, float) for v in fractions if v) and sum(fractions) > 1 + 1e-9:
            raise DatasetConfigError(
                f"dataset {self.name!r}: split fractions add up to {sum(fractions):g}, more than 1"
            )
        return {"seed": 0, **split}

    def _parse_pairs(self, pairs: Any) -> dict[str, Any]:
        if not isinstance(pairs, dict) or not set(pairs) <= {*SPLITS, "seed"}:
            raise DatasetConfigError(
                f"dataset {self.name!r}: 'pairs' must map splits to a count or 'all' "
                f"(and optionally seed), got {pairs!r}"
            )
        for key in SPLITS:
            value = pairs.get(key, 0)
            if value != "all" and (not isinstance(value, int) or value < 0):
                raise DatasetConfigError(
                    f"dataset {self.name!r}: pairs.{key} must be a count or 'all', got {value!r}"
                )
        return {"seed": 0, **pairs}
