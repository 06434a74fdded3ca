"""The in-process executor: pair after pair in this process, on one device (``--executor
inprocess``, for debugging, and what every worker process of the pool and of Ray runs inside).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator

import torch

from warpbench.datasets import Dataset, Pair, Subject, SubjectError, load_subject
from warpbench.executors.base import Executor, default_device
from warpbench.executors.work import RunWork, loading_failed
from warpbench.runner import PairResult, evaluate_batch, evaluate_pair


class InProcessExecutor(Executor):
    """Evaluate pairs one after another in this process, on one device.

    A pair that overruns its time limit is abandoned, not killed (Python threads cannot be), so it
    may keep a core busy until the process ends; a method that crashes the interpreter ends the
    command. The pool executor runs this one in worker processes that it kills and replaces.
    """

    cache_size = 32  # subjects kept in memory, so each subject is read once per run

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device else default_device()
        self._subjects: OrderedDict[tuple[str, str], Subject] = OrderedDict()

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

    def starting(self, pairs: list[Pair]) -> None:
        """Called just before the method is given ``pairs`` (one, or a batch): a worker process
        tells its pool, which keeps the time limit."""

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
                self.starting([pair])
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
        self.starting([Pair(fixed.id, moving.id) for fixed, moving in batch])
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
