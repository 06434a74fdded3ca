"""A dataset derived from another block of the same ``datasets.yaml`` by acquisition changes.

It is its source seen through another scanner: the same subjects, splits, pairs and label maps,
each image changed (:mod:`warpbench_shifted.shifts`). So a network trained on the source is
tested under a controlled shift on the very subjects it would be tested on in domain, and a
classical method's score on the two tells what the change costs without any training.

The source is built through the same file (:meth:`ShiftedDataset.from_block`): a source block
that is not there or cannot be built makes this one unusable with the source's reason, and a
source whose files are missing makes it unavailable, naming the source; blocks that derive from
each other in a cycle are an error naming them. The fingerprint hashes the block (its changes
and seed), the source's fingerprint and TorchIO's version, so a change of any of them is new
data to the store (new runs), never a resumed one.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torchio
from pydantic import Field, StrictInt

from warpbench.config import build_dataset
from warpbench.datasets import Dataset, DatasetConfigError, DatasetOptions, Pair, Subject
from warpbench.options import must_be, validate
from warpbench_shifted.shifts import AnyChange, shifted_image

if TYPE_CHECKING:
    from warpbench.config import Config

KEPT = "left out: a shifted dataset keeps its source's"


class ShiftedOptions(DatasetOptions):
    """Another block of this file under acquisition changes: its subjects, splits, pairs and
    labels, each image changed in the order listed."""

    source: Annotated[str, Field(min_length=1), must_be("the name of another dataset block")]
    """The dataset block of this file whose subjects are shifted."""
    shift: Annotated[list[AnyChange], Field(min_length=1)]
    """The changes, applied in this order, each named by its `transform`: invert, gamma
    (`gamma`), bias_field (`coefficients`, `order`), noise (`std`), blur (`std` in mm) or
    resample (`spacing` in mm, and back)."""
    seed: Annotated[StrictInt, Field(ge=0), must_be("a non-negative integer")] = 0
    """Seed of the random changes (bias field, noise): with the subject id it decides each
    subject's draw."""
    split: Annotated[None, must_be(f"{KEPT} split")] = None
    """Not used: the split is the source's."""
    pairs: Annotated[None, must_be(f"{KEPT} pairs")] = None
    """Not used: the pairs are the source's."""


class ShiftedDataset(Dataset):
    """A dataset block's subjects under acquisition changes (contrast inversion or gamma, bias
    field, noise, blur, anisotropic resampling), applied with TorchIO."""

    kind = "shifted"
    version = "1"
    Options = ShiftedOptions

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path,
                 source: Dataset | None = None):
        super().__init__(name, options, base_dir)
        if source is None or source.name != self.settings.source:
            self.fail(f"needs its source dataset {self.settings.source!r}, built from the same "
                      "datasets.yaml (warpbench.config.build_dataset builds both)")
        self.source = source
        self.labels = source.label_names()
        self.license = self.settings.license or source.license
        self.citation = self.settings.citation or source.citation

    @classmethod
    def from_block(cls, name: str, options: dict[str, Any], config: Config,
                   dataset_kinds: dict[str, type[Dataset]]) -> ShiftedDataset:
        """The block ``name`` with its source built from the same ``config``."""
        where = f"dataset {name!r} ({cls.kind})"
        source = validate(cls.Options, options, where, "option", DatasetConfigError).source
        _refuse_cycle(config, name)
        try:
            built = build_dataset(config, source, dataset_kinds)
        except DatasetConfigError as exc:
            reason = str(exc).removeprefix(f"{config.path}: ")
            raise DatasetConfigError(f"{where}: its source {source!r} cannot be used: "
                                     f"{reason}") from None
        return cls(name, options, config.base_dir, built)

    # --- the source's subjects, splits and pairs ------------------------------------------------
    def all_subjects(self) -> list[str]:
        return self.source.all_subjects()

    def subjects(self, split: str) -> list[str]:
        return self.source.subjects(split)

    def pairs(self, split: str = "test") -> list[Pair]:
        return self.source.pairs(split)

    @property
    def pre_aligned(self) -> bool:
        """The block's ``pre_aligned``, else the source's: a shift changes no subject's pose."""
        stated = self.settings.pre_aligned
        return self.source.pre_aligned if stated is None else stated

    def availability(self) -> tuple[bool, str]:
        available, reason = self.source.availability()
        if available:
            return True, ""
        return False, f"its source dataset {self.source.name!r} is unavailable: {reason}"

    # --- what is shifted ------------------------------------------------------------------------
    def load(self, subject_id: str) -> Subject:
        """The source's subject with its image changed; labels and affine are the source's."""
        subject = self.source.load(subject_id)
        image = shifted_image(subject.image, subject.affine, self.settings.shift,
                              self.settings.seed, subject_id)
        return Subject(subject_id, image, subject.labels, subject.affine)

    def fingerprint(self) -> str:
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        blob = json.dumps([super().fingerprint(), self.source.fingerprint(),
                           f"torchio {torchio.__version__}"])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _refuse_cycle(config: Config, name: str) -> None:
    """Raise :class:`DatasetConfigError` naming the blocks when following the ``source`` of
    shifted blocks from ``name`` comes back to a block already passed."""
    chain = [name]
    block = config.datasets.get(name)
    while (isinstance(block, dict) and block.get("plugin") == ShiftedDataset.kind
           and isinstance(block.get("source"), str)):
        source = block["source"]
        if source in chain:
            raise DatasetConfigError(
                f"dataset {name!r} ({ShiftedDataset.kind}): its sources form a cycle, "
                f"{' -> '.join([*chain, source])}; a shifted dataset's source must lead to a "
                "dataset of another kind")
        chain.append(source)
        block = config.datasets.get(source)
