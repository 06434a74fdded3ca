"""The executor interface: what the scheduler calls, and what an executor plugin implements.

An executor implements either :meth:`Executor.evaluate` (one run's pairs, one after another:
the base class then runs a feed's tasks in turn, trainings in this process) or
:meth:`Executor.execute` (the whole feed, as many tasks at once as it has room for: the pool and
Ray). Each is available through the other, so the scheduler calls ``execute`` and a benchmark or
a tuning may call ``evaluate`` on any executor.
"""

from __future__ import annotations

from collections.abc import Iterator
import torch

from warpbench.executors.work import PairDone, RunWork, TaskFeed, TrainingDone, TrainingWork
from warpbench.provenance import environment
from warpbench.runner import PairResult
from warpbench.training import TrainingJob, run_training


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ExecutorError(ValueError):
    """An executor that cannot run here or cannot go on (ray not installed, workers that die as
    they start); the message says why and what to do."""


class Executor:
    """Base of every executor. ``device`` is where the work runs, as a run's provenance records
    it (the pool's workers may each have a GPU of their own: every pair records its own)."""

    device: torch.device

    def describe(self) -> str:
        """Where the work runs, in words, for the command's first line."""
        return str(self.device)

    def environment(self) -> dict[str, str | None]:
        """What every run and training records of the software and device (its provenance)."""
        return environment(self.device)

    def execute(self, feed: TaskFeed) -> Iterator[PairDone | TrainingDone]:
        """Every task of ``feed``, one after another: a run's pairs through :meth:`evaluate`,
        a training in this process."""
        while (work := feed.next()) is not None:
            if isinstance(work, TrainingWork):
                yield self.train(work)
                continue
            for result in self.evaluate(work):
                yield PairDone(work, result)

    def evaluate(self, work: RunWork) -> Iterator[PairResult]:
        """The result of each pair of ``work`` as it finishes (by default through
        :meth:`execute`)."""
        for event in self.execute(_Once(work)):
            yield event.result

    def train(self, work: TrainingWork) -> TrainingDone:
        """Train in this process on :attr:`device`; an exception of the method is the
        training's error, an interruption goes on."""
        job = TrainingJob(work.dataset, dict(work.params), self.device, work.seed, work.folder,
                          log=work.log, progress=work.progress)
        try:
            return TrainingDone(work, weights=run_training(work.method, job))
        except Exception as exc:
            return TrainingDone(work, error=f"{type(exc).__name__}: {exc}")


class _Once:
    """A feed of one run's pairs."""

    def __init__(self, work: RunWork):
        self._work: RunWork | None = work

    def next(self) -> RunWork | None:
        work, self._work = self._work, None
        return work

