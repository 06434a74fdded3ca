"""The Ray executor (``--executor ray [--address auto|HOST:PORT]``, extra ``warpbench[ray]``):
pairs and trainings as Ray tasks on a cluster, for work that outgrows one machine.

A run's pairs go out in tasks of a few pairs (``num_cpus=1``, and ``num_gpus=1`` on a GPU
cluster), each building the method and dataset again from their names where it runs and reading
its subjects there (the data's paths, and the checkpoints folder beside the store, must be the
same on every node: a shared file system). Results come back task by task as each finishes;
this process, the scheduler's, stays the store's only writer.

A task whose worker or node is lost is tried again, its pairs one per task so that a crash is
blamed on its own pair, at most ``retries`` more times, and then stored as failed with the
cause. A task of a run with a time limit (and every GPU task, whose GPU Ray assigns afresh each
time) runs in a worker process of its own (``max_calls=1``), so that a call still running past
its limit leaves with its process. Ray has no say in a call that holds the interpreter past its
limit; the pool executor kills those.

Trainings are Ray tasks too, streaming their curve points back as they train; one whose worker
is lost is started again (it resumes from its checkpoints) up to ``retries`` times.
"""

from __future__ import annotations

import math
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from warpbench.datasets import Pair
from warpbench.executors.base import Executor, ExecutorError
from warpbench.executors.work import (PairDone, RunWork, TaskFeed, TrainingDone, TrainingSpec,
                                      TrainingWork, WorkSpec, failed)
from warpbench.executors.worker import WorkerState, tainted
from warpbench.provenance import environment

#: How many more times a task whose worker or node was lost is tried.
RETRIES = 2
#: The most pairs in one task.
MAX_PAIRS_PER_TASK = 16
#: How often a training task sends its curve points.
REPORT_SECONDS = 1.0
#: Environment variables the tasks get from this process (which plugins load, OpenMP's waiting).
PASSED_ENVIRONMENT = ("WARPBENCH_LOAD_PLUGINS", "OMP_WAIT_POLICY")


class RayExecutor(Executor):
    """Pairs and trainings as Ray tasks (see the module's docstring). ``address`` is the
    cluster's (``auto``: the one ``ray start`` began on this machine); without it, a Ray
    instance already started in this process is used, or a local one is started. A lost task
    is tried ``retries`` more times (default :data:`RETRIES`)."""

    def __init__(self, device: str | torch.device | None = None, address: str | None = None,
                 retries: int | None = None):
        try:
            import ray
        except ImportError:
            raise ExecutorError("the Ray executor needs ray: pip install 'warpbench[ray]'") \
                from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level="warning")
            except ConnectionError as exc:
                raise ExecutorError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.device = torch.device(device) if device else torch.device("cuda" if gpus else "cpu")
        if self.device.type == "cuda" and not gpus:
            raise ExecutorError("device cuda was asked for, but the Ray cluster has no GPU")
        self.slots = gpus if self.device.type == "cuda" else max(1, int(resources.get("CPU", 1)))
        self.retries = RETRIES if retries is None else retries
        environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
        options = {"num_cpus": 1, "num_gpus": 1 if self.device.type == "cuda" else 0,
                   "max_retries": 0, "runtime_env": {"env_vars": environment}}
        self._pairs_task = ray.remote(**options)(_evaluate_pairs)
        self._pairs_task_alone = ray.remote(**options, max_calls=1)(_evaluate_pairs)
        self._training_task = ray.remote(**options, num_returns="streaming")(_train)

    def describe(self) -> str:
        kind = "GPUs" if self.device.type == "cuda" else "CPUs"
        return f"{self.device} (Ray cluster, {self.slots} {kind})"

    def environment(self) -> dict[str, str | None]:
        """This process's software, and the cluster as the device (this process may have no
        GPU of its own to name)."""
        return {**environment(torch.device("cpu")), "device": self.describe()}

    def execute(self, feed: TaskFeed) -> Iterator[PairDone | TrainingDone]:
        tasks = _Tasks(self, feed)
        try:
            yield from tasks.run()
        finally:
            tasks.cancel()


@dataclass(eq=False)
class _PairsTask:
    work: RunWork
    spec: WorkSpec
    pairs: list[Pair]
    attempt: int = 0


@dataclass(eq=False)
class _TrainingTask:
    work: TrainingWork
    attempt: int = 0


class _Tasks:
    """One ``execute`` call's tasks: at most two per CPU or GPU of the cluster in flight, so the
    cluster stays busy while later work (a network trained meanwhile) can still go first."""

    def __init__(self, executor: RayExecutor, feed: TaskFeed):
        self.executor = executor
        self.ray = executor._ray
        self.feed = feed
        self.queue: deque[_PairsTask | _TrainingTask] = deque()
        self.in_flight: dict = {}  # ObjectRef or ObjectRefGenerator -> task

    def run(self) -> Iterator[PairDone | TrainingDone]:
        while True:
            while len(self.in_flight) < 2 * self.executor.slots:
                task = self._next()
                if task is None:
                    break
                self._submit(task)
            if not self.in_flight:
                return
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
            for handle in ready:
                task = self.in_flight.pop(handle)
                if isinstance(task, _TrainingTask):
                    yield from self._training_progress(handle, task)
                else:
                    yield from self._pairs_done(handle, task)

    def _next(self) -> _PairsTask | _TrainingTask | None:
        if self.queue:
            return self.queue.popleft()
        work = self.feed.next()
        if work is None:
            return None
        if isinstance(work, TrainingWork):
            return _TrainingTask(work)
        spec = WorkSpec.of(work)
        size = max(1, min(MAX_PAIRS_PER_TASK,
                          math.ceil(len(work.pairs) / (2 * self.executor.slots))))
        self.queue.extend(_PairsTask(work, spec, work.pairs[i:i + size])
                          for i in range(0, len(work.pairs), size))
        return self.queue.popleft()

    def _submit(self, task: _PairsTask | _TrainingTask) -> None:
        device = self.executor.device.type
        if isinstance(task, _TrainingTask):
            handle = self.executor._training_task.remote(TrainingSpec.of(task.work), device)
        else:
            alone = task.work.time_limit is not None or device == "cuda"
            remote = self.executor._pairs_task_alone if alone else self.executor._pairs_task
            handle = remote.remote(task.spec, task.pairs, device)
        self.in_flight[handle] = task

    def _pairs_done(self, handle, task: _PairsTask) -> Iterator[PairDone]:
        try:
            results, unfinished = self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as exc:  # warpbench's own code raised there
            for pair in task.pairs:
                yield PairDone(task.work, failed(pair, f"the Ray task failed: {exc}"))
            return
        except self.ray.exceptions.RayError as exc:  # its worker or node was lost
            yield from self._lost(task, exc)
            return
        for result in results:
            yield PairDone(task.work, result)
        if unfinished:  # its worker left after a time-out: the rest go in another task
            self.queue.appendleft(_PairsTask(task.work, task.spec, unfinished))

    def _lost(self, task: _PairsTask, exc: Exception) -> Iterator[PairDone]:
        if len(task.pairs) > 1:  # one pair per task from now on: a crash blames its own pair
            self.queue.extendleft(_PairsTask(task.work, task.spec, [pair], task.attempt)
                                  for pair in reversed(task.pairs))
        elif task.attempt < self.executor.retries:
            self.queue.appendleft(_PairsTask(task.work, task.spec, task.pairs, task.attempt + 1))
        else:
            (pair,) = task.pairs
            yield PairDone(task.work, failed(
                pair, f"Ray worker lost while registering {pair.fixed} <- {pair.moving}, "
                      f"{task.attempt + 1} times: {_first_line(exc)}"))

    def _training_progress(self, handle, task: _TrainingTask) -> Iterator[TrainingDone]:
        """The next batch of a training task's reports; the task goes on waiting until it
        reports its weights or error."""
        try:
            events = self.ray.get(next(handle))
        except StopIteration:
            yield TrainingDone(task.work, error="the Ray training task ended without a result")
            return
        except self.ray.exceptions.RayTaskError as exc:
            yield TrainingDone(task.work, error=f"the Ray task failed: {exc}")
            return
        except self.ray.exceptions.RayError as exc:
            if task.attempt < self.executor.retries:  # it resumes from its checkpoints
                self.queue.appendleft(_TrainingTask(task.work, task.attempt + 1))
                return
            yield TrainingDone(task.work, error=f"Ray worker lost while training "
                                                f"{task.work.label}, {task.attempt + 1} times: "
                                                f"{_first_line(exc)}")
            return
        for kind, *body in events:
            if kind == "curve":
                task.work.log(*body)
            elif kind == "progress":
                task.work.progress(*body)
            else:
                weights, error = body
                yield TrainingDone(task.work, weights=weights, error=error)
                return
        self.in_flight[handle] = task

    def cancel(self) -> None:
        """Stop what is still running (an interruption, or an error here)."""
        for handle in self.in_flight:
            self.ray.cancel(handle, force=True)
        self.in_flight.clear()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# --- what runs in a Ray worker --------------------------------------------------------------------
_state: WorkerState | None = None


def _worker_state(device_type: str) -> WorkerState:
    """This Ray worker's plugins, datasets and subjects, kept between its tasks; on a GPU the
    one Ray gave the task (``CUDA_VISIBLE_DEVICES``)."""
    global _state
    if _state is None:
        device = torch.device("cuda:0" if device_type == "cuda" else "cpu")
        torch.set_num_threads(1)
        _state = WorkerState(device, f"{device} on {socket.gethostname()}")
    return _state


def _evaluate_pairs(spec: WorkSpec, pairs: list[Pair], device_type: str):
    """The results of ``pairs``, and those left undone because this worker should take no more
    (:func:`~warpbench.executors.worker.tainted`)."""
    results = []
    for result in _worker_state(device_type).evaluate(spec, pairs):
        results.append(result)
        if tainted(result):
            break
    done = {(r.fixed, r.moving) for r in results}
    return results, [pair for pair in pairs if (pair.fixed, pair.moving) not in done]


def _train(spec: TrainingSpec, device_type: str):
    """Train, yielding the curve points and steps every ``REPORT_SECONDS``, and at last
    ``("trained", weights, error)``."""
    state = _worker_state(device_type)
    reports: queue.SimpleQueue = queue.SimpleQueue()
    outcome = {}

    def log(step, split, name, value):
        reports.put(("curve", int(step), str(split), str(name), float(value)))

    def train():
        outcome["value"] = state.train(
            spec, log, lambda done, total: reports.put(("progress", int(done), int(total))))

    thread = threading.Thread(target=train, daemon=True, name="warpbench-training")
    thread.start()
    while thread.is_alive():
        thread.join(REPORT_SECONDS)
        batch = _drain(reports)
        if batch:
            yield batch
    yield [*_drain(reports), ("trained", *outcome["value"])]


def _drain(reports: queue.SimpleQueue) -> list:
    batch = []
    while not reports.empty():
        batch.append(reports.get())
    return batch
