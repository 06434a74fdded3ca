"""What the scheduler hands an executor, and what comes back.

The scheduler hands out two kinds of work through a :class:`TaskFeed`: a run's pairs
(:class:`RunWork`) and a training (:class:`TrainingWork`). An executor asks the feed for the next
one whenever it has room, and yields :class:`PairDone` and :class:`TrainingDone` as they finish;
the feed may hold more after an event (a network's evaluations once its training is done).

A worker process (the pool's or Ray's) cannot be given the method and dataset objects of this
process: it rebuilds them from their names. :class:`WorkSpec` and :class:`TrainingSpec` are what
it is sent instead: the method's name and version, the parameters, the dataset's name with the
``datasets.yaml`` it was built from, and the rest of the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from warpbench.config import Config
from warpbench.datasets import Dataset, Pair
from warpbench.methods import Method
from warpbench.runner import PairResult


def _no_log(step: int, split: str, name: str, value: float) -> None:
    pass


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass(eq=False)
class RunWork:
    """The pairs of one run still to do, with everything needed to do them."""

    method: Method
    params: dict[str, Any]
    dataset: Dataset
    pairs: list[Pair]
    seed: int = 0
    time_limit: float | None = None
    #: The trained state a learning method registers with (None for other methods).
    weights: Path | None = None
    #: The ``datasets.yaml`` the dataset was built from, so a worker process can build it again
    #: (None: the dataset's own block is enough, as it is for any dataset with no source block).
    config: Config | None = None


@dataclass(eq=False)
class TrainingWork:
    """One training: ``method.train`` on ``dataset`` under ``params``, into ``folder`` (where
    its checkpoints are, so a training that was stopped resumes). ``log`` and ``progress`` are
    called in the scheduler's process with the training's curve points and steps, wherever the
    training runs."""

    method: Method
    params: dict[str, Any]
    dataset: Dataset
    seed: int
    folder: Path
    config: Config | None = None
    log: Callable[[int, str, str, float], None] = field(default=_no_log)
    progress: Callable[[int, int], None] = field(default=_no_progress)
    #: What the training is, in words ("voxelmorph:default trained on oasis"), for messages.
    label: str = ""


class TaskFeed(Protocol):
    """Where an executor gets its work: the next run's pairs or training, or None when there is
    nothing to hand out now. After an event the executor yielded, there may be more."""

    def next(self) -> RunWork | TrainingWork | None: ...


@dataclass
class PairDone:
    """One pair of ``work`` has an outcome (a score or a failure with its reason)."""

    work: RunWork
    result: PairResult


@dataclass
class TrainingDone:
    """``work`` has finished: its ``weights``, or the ``error`` it failed with."""

    work: TrainingWork
    weights: Path | None = None
    error: str | None = None


def loading_failed(pair: Pair, error: str, device: torch.device | str) -> PairResult:
    """The failed result of a pair whose subject could not be loaded, with the error naming it
    (a :class:`SubjectError`'s message)."""
    return PairResult(pair.fixed, pair.moving, "failed", error=f"loading failed: {error}",
                      device=str(device))


def failed(pair: Pair, error: str, device: str = "") -> PairResult:
    """The failed result of ``pair`` with ``error``."""
    return PairResult(pair.fixed, pair.moving, "failed", error=error, device=device)


# --- what a worker process is sent --------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as a worker builds it again: its block of ``config``, and the fingerprint this
    process computed (a worker trusts it rather than hashing every file again)."""

    name: str
    fingerprint: str
    config: Config

    @classmethod
    def of(cls, dataset: Dataset, config: Config | None) -> DatasetSpec:
        if config is None:  # the dataset's own block, in a file of one block beside its folder
            block = {"plugin": dataset.kind, **dataset.options}
            config = Config(path=dataset.base_dir / "datasets.yaml",
                            datasets={dataset.name: block})
        return cls(dataset.name, dataset.fingerprint(), config)


@dataclass(frozen=True)
class WorkSpec:
    """A :class:`RunWork` without its pairs, as a worker is sent it."""

    method: str
    method_version: str
    params: dict[str, Any]
    dataset: DatasetSpec
    seed: int
    time_limit: float | None
    weights: Path | None

    @classmethod
    def of(cls, work: RunWork) -> WorkSpec:
        return cls(work.method.name, work.method.version, dict(work.params),
                   DatasetSpec.of(work.dataset, work.config), work.seed, work.time_limit,
                   work.weights)


@dataclass(frozen=True)
class TrainingSpec:
    """A :class:`TrainingWork` as a worker is sent it."""

    method: str
    method_version: str
    params: dict[str, Any]
    dataset: DatasetSpec
    seed: int
    folder: Path
    label: str

    @classmethod
    def of(cls, work: TrainingWork) -> TrainingSpec:
        return cls(work.method.name, work.method.version, dict(work.params),
                   DatasetSpec.of(work.dataset, work.config), work.seed, work.folder, work.label)
