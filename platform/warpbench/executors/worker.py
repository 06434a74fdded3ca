"""What runs in a worker process, the pool's or Ray's: the plugins loaded there, the method and
dataset built again from their names (:class:`~warpbench.executors.work.WorkSpec`), and pairs
registered by the in-process executor on the worker's device.

:func:`serve` is a pool worker's whole life: it loads the plugins, says it is ready, and then
registers the pairs and runs the trainings it is sent, telling its pool before each call of the
method (the pool keeps the time limit) and sending each result as it finishes. It leaves by
itself when it should take no more work (:func:`tainted`); the pool starts another.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from warpbench.config import build_dataset
from warpbench.datasets import Dataset, DatasetConfigError, Pair
from warpbench.executors.inprocess import InProcessExecutor
from warpbench.executors.work import DatasetSpec, RunWork, TrainingSpec, WorkSpec, failed
from warpbench.methods import Method
from warpbench.plugins import load_registry
from warpbench.runner import PairResult, abandoned_calls
from warpbench.training import TrainingJob, run_training

_PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """A worker cannot do the work it was sent (a method its plugins do not register, a dataset
    it cannot build); the message says which and why."""


class _Reporting(InProcessExecutor):
    """The in-process executor, telling ``report`` which pairs its method is about to get."""

    report: Callable[[list[Pair]], None] | None = None

    def starting(self, pairs: list[Pair]) -> None:
        if self.report is not None:
            self.report(pairs)


class WorkerState:
    """What a worker process keeps between tasks: its plugins, the datasets it built and the
    subjects it read. ``label`` is the device as the scheduler's process names it (a pool worker
    pinned to GPU 3 sees it as cuda:0, and its pairs record cuda:3)."""

    def __init__(self, device: torch.device | str, label: str | None = None):
        self.device = torch.device(device)
        self.label = label or str(self.device)
        self.registry = load_registry()
        self.executor = _Reporting(self.device)
        self._datasets: dict[tuple[str, str], Dataset] = {}

    def method(self, name: str, version: str) -> Method:
        method = self.registry.methods.get(name)
        if method is None:
            problems = "".join(f"; {problem}" for problem in self.registry.problems)
            raise WorkerError(
                f"method {name!r} is not registered in the worker process (registered there: "
                f"{', '.join(sorted(self.registry.methods)) or 'none'}{problems}); a worker loads "
                "installed plugins (entry points) only: run an in-process plugin with "
                "--executor inprocess")
        if method.version != version:
            raise WorkerError(f"method {name!r} is version {method.version} in the worker "
                              f"process but {version} in the scheduler's: install one version")
        return method

    def dataset(self, spec: DatasetSpec) -> Dataset:
        key = (spec.name, spec.fingerprint)
        if key not in self._datasets:
            try:
                dataset = build_dataset(spec.config, spec.name, self.registry.dataset_kinds)
            except DatasetConfigError as exc:
                raise WorkerError(f"the worker process cannot build dataset {spec.name!r}: "
                                  f"{exc}") from None
            # Trusted, not computed again: a kind that hashes its files would read them all.
            dataset.fingerprint = lambda known=spec.fingerprint: known
            self._datasets[key] = dataset
        return self._datasets[key]

    def evaluate(self, spec: WorkSpec, pairs: list[Pair],
                 starting: Callable[[list[Pair]], None] | None = None) -> Iterator[PairResult]:
        """Each pair's result as the in-process executor computes it here; every pair fails with
        the reason when the method or dataset cannot be built."""
        try:
            work = RunWork(self.method(spec.method, spec.method_version), spec.params,
                           self.dataset(spec.dataset), pairs, spec.seed, spec.time_limit,
                           spec.weights)
        except WorkerError as exc:
            for pair in pairs:
                yield failed(pair, str(exc), self.label)
            return
        self.executor.report = starting
        for result in self.executor.evaluate(work):
            result.device = self.label
            yield result

    def train(self, spec: TrainingSpec, log, progress) -> tuple[Path | None, str | None]:
        """The training's weights, or the error it failed with."""
        try:
            method = self.method(spec.method, spec.method_version)
            job = TrainingJob(self.dataset(spec.dataset), dict(spec.params), self.device,
                              spec.seed, spec.folder, log=log, progress=progress)
            return run_training(method, job), None
        except WorkerError as exc:
            return None, str(exc)
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"


def tainted(result: PairResult) -> str | None:
    """Why the worker that produced ``result`` should take no more work, or None: a timed-out
    call still running in it would slow every later pair (and have them time out too), and a
    CUDA error can leave the device unusable in this process."""
    if abandoned_calls():
        return "a call past its time limit still runs in it"
    if result.error and "CUDA error" in result.error:
        return "a CUDA error can leave its device unusable"
    return None


def serve(conn, device: str, label: str, threads: int | None, environment: dict[str, str]):
    """A pool worker: ``conn`` is its end of the pipe to the pool; ``environment`` is the
    scheduler's, with this worker's ``CUDA_VISIBLE_DEVICES`` (set before CUDA starts here)."""
    os.environ.clear()
    os.environ.update(environment)
    _die_with_parent()
    # Ctrl-C and SIGTERM are for the scheduler, which stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if threads:
        torch.set_num_threads(threads)
    state = WorkerState(device, label)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the scheduler is gone
            return
        if message is None:
            return
        kind, spec, pairs = message
        if kind == "train":
            weights, error = state.train(
                spec, log=lambda *point: conn.send(("curve", *point)),
                progress=lambda done, total: conn.send(("progress", done, total)))
            conn.send(("trained", weights, error))
            continue
        for result in state.evaluate(spec, pairs, lambda unit: conn.send(
                ("started", [(p.fixed, p.moving) for p in unit]))):
            conn.send(("result", result))
            reason = tainted(result)
            if reason:
                conn.send(("retire", reason))
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)  # a normal exit would abort under a running torch call


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent ends, however it ends (Linux): a
    scheduler killed with -9 leaves no worker computing for nobody."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent ended before the call
        os._exit(0)
