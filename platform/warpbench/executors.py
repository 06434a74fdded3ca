"""Executors run a run's pairs and hand back results as they finish; the scheduler writes them.

An executor is anything with ``evaluate(work) -> Iterator[PairResult]``. The in-process one here
computes pair after pair on one device, several at once for a method that batches on a GPU. A
local executor that keeps several GPUs busy, or one that hands pairs to a distributed engine,
implements the same method with workers that rebuild the method and dataset from their names
(``RunWork`` carries them) and yield results as they arrive; the scheduler, the only writer of the
store, does not change.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from warpbench.datasets import Dataset, Pair, Subject, SubjectError, load_subject
from warpbench.hookspecs import hookimpl
from warpbench.methods import Method
from warpbench.runner import PairResult, evaluate_batch, evaluate_pair


@dataclass
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


def loading_failed(pair: Pair, error: str, device: torch.device | str) -> PairResult:
    """The failed result of a pair whose subject could not be loaded, with the error naming it
    (a :class:`SubjectError`'s message)."""
    return PairResult(pair.fixed, pair.moving, "failed", error=f"loading failed: {error}",
                      device=str(device))


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class InProcessExecutor:
    """Evaluate pairs one after another in this process, on one device.

    A pair that overruns its time limit is abandoned, not killed (Python threads cannot be), so it
    may keep a core busy until the process ends.
    """

    cache_size = 32  # subjects kept in memory, so each subject is read once per run

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device else default_device()
        self._subjects: OrderedDict[tuple[str, str], Subject] = OrderedDict()

    def describe(self) -> str:
        return str(self.device)

    def subject(self, dataset: Dataset, subject_id: str) -> Subject:
        """A subject of ``dataset``, read and checked (:func:`load_subject`) on first use and then
        kept among the last :attr:`cache_size` used (a benchmark reads its subjects here before it
        starts the clock)."""
        key = (dataset.fingerprint(), subject_id)
        if key in self._subjects:
            self._subjects.move_to_end(key)
            return self._subjects[key]
        subject = load_subject(dataset, subject_id)
        self._subjects[key] = subject
        if len(self._subjects) > self.cache_size:
            self._subjects.popitem(last=False)
        return subject

    def evaluate(self, work: RunWork) -> Iterator[PairResult]:
        """Each pair's result, in order; pairs go in batches where the method takes several at
        once on this device (:meth:`Method.max_batch`, a GPU's memory permitting)."""
        batch: list[tuple[Subject, Subject]] = []
        size = None
        for pair in work.pairs:
            try:
                fixed = self.subject(work.dataset, pair.fixed)
                moving = self.subject(work.dataset, pair.moving)
            except SubjectError as exc:
                yield loading_failed(pair, str(exc), self.device)
                continue
            if size is None:
                size = self._batch_size(work, fixed.image.shape)
            if size == 1:
                yield evaluate_pair(
                    work.method, work.params, work.dataset, fixed, moving,
                    self.device, work.time_limit, work.seed, weights=work.weights,
                )
                continue
            batch.append((fixed, moving))
            if len(batch) == size:
                yield from self._evaluate_batch(work, batch)
                batch = []
        if batch:
            yield from self._evaluate_batch(work, batch)

    def _evaluate_batch(self, work: RunWork, batch) -> list[PairResult]:
        return evaluate_batch(work.method, work.params, work.dataset, batch, self.device,
                              work.time_limit, work.seed)

    def _batch_size(self, work: RunWork, shape) -> int:
        """How many pairs to register at once: 1 for methods that look pairs up or need weights,
        and where the method's ``max_batch`` raises (with a warning naming the method)."""
        if work.weights is not None or work.method.wants_pair:
            return 1
        try:
            return max(1, int(work.method.max_batch(tuple(shape), dict(work.params), self.device)))
        except Exception as exc:
            warnings.warn(f"method {work.method.name!r}: max_batch raised {type(exc).__name__}: "
                          f"{exc}; registering its pairs one by one", stacklevel=2)
            return 1


@hookimpl
def register_executors(register):
    register("inprocess", InProcessExecutor)
