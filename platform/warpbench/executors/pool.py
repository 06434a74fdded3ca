"""The pool executor, the default: pairs and trainings in worker processes, one per GPU (or N on
the CPU), so that every device is busy and a method can never take the command down.

Each worker (:func:`warpbench.executors.worker.serve`) loads the plugins and builds each method
and dataset again from its name; a worker on a GPU sees only its own (``CUDA_VISIBLE_DEVICES``),
and CPU workers share the cores out as torch threads. Workers are started from a fork server
that has imported torch and warpbench once and never run them, so a new worker is ready in a
fraction of a second without forking this process (its threads, a CUDA context).

This process keeps the limits and tells what happened, so a worker's end is never silent:

- a pair past its time limit: the worker's own limit (the in-process one) fails the pair and the
  worker leaves, since the call still runs in it; a worker that cannot even notice (a call that
  holds the interpreter) is killed ``GRACE_SECONDS`` plus the limit again after the call began;
- a worker that dies (a signal, an exit status, the kernel's out-of-memory killer, or this
  pool's ``memory_limit_mb``) costs only the pairs it held: the pair being registered is stored
  as failed with the cause ("worker killed by SIGSEGV while registering a <- b"), the others it
  was sent are handed out again, a training fails with the cause (its checkpoints stay, so the
  next run resumes it), and another worker takes the place;
- results stream back as each finishes; the scheduler, in this process, stays the only writer.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import time
import types
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import connection, forkserver

import psutil
import torch

from warpbench.datasets import Pair
from warpbench.executors.base import Executor, ExecutorError, default_device
from warpbench.executors.work import (PairDone, RunWork, TaskFeed, TrainingDone, TrainingSpec,
                                      TrainingWork, WorkSpec, failed)
from warpbench.executors.worker import serve

#: Seconds past a call's time limit (plus the limit again) after which its worker is killed.
GRACE_SECONDS = 5.0
#: A slot whose workers end this many times in a row before they are ready stops the command.
START_ATTEMPTS = 3
#: How often each worker's memory is looked at when there is a memory limit.
MEMORY_POLL_SECONDS = 0.2
#: The most pairs sent to one GPU worker at once (it may register them as one batch).
MAX_CHUNK = 8


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its device as it sees it, as this process names it (``label``),
    its torch threads, and the GPU it is given (``CUDA_VISIBLE_DEVICES``; None: not pinned)."""

    device: str
    label: str
    threads: int
    gpu: str | None = None


def plan_slots(device: torch.device, workers: int | None) -> list[Slot]:
    """The pool's workers on ``device``: ``cuda`` gives one per visible GPU, ``cuda:N`` one on
    GPU N, the CPU one; ``workers`` asks for that many instead (round-robin over the GPUs).
    The cores are shared out among them as torch threads."""
    if workers is not None and workers < 1:
        raise ExecutorError(f"--workers must be at least 1, not {workers}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if device.type != "cuda":
        count = workers or 1
        return [Slot(str(device), str(device), max(1, (cores or 1) // count))] * count
    gpus = _visible_gpus()
    if device.index is not None:
        if device.index >= len(gpus):
            raise ExecutorError(f"device {device} does not exist: {len(gpus)} GPU(s) visible")
        chosen = [device.index]
    else:
        chosen = list(range(len(gpus)))
    if not chosen:
        raise ExecutorError("device cuda was asked for, but no GPU is visible")
    count = workers or len(chosen)
    threads = max(1, (cores or 1) // count)
    return [Slot("cuda:0", f"cuda:{chosen[i % len(chosen)]}", threads,
                 gpus[chosen[i % len(chosen)]]) for i in range(count)]


def _visible_gpus() -> list[str]:
    """The GPUs of this process as ``CUDA_VISIBLE_DEVICES`` names them, in torch's order."""
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [name.strip() for name in listed.split(",")][:count]
    return [str(index) for index in range(count)]


class PoolExecutor(Executor):
    """Pairs and trainings in worker processes that are killed and replaced when they hang,
    crash or pass ``memory_limit_mb`` of resident memory (see the module's docstring)."""

    def __init__(self, device: str | torch.device | None = None, workers: int | None = None,
                 memory_limit_mb: float | None = None):
        self.device = torch.device(device) if device else default_device()
        self.slots = plan_slots(self.device, workers)
        if memory_limit_mb is not None and memory_limit_mb <= 0:
            raise ExecutorError(f"--memory-limit must be a positive number of MB, not "
                                f"{memory_limit_mb:g}")
        self.memory_limit_mb = memory_limit_mb
        self._context = _context()  # its fork server imports while the scheduler plans

    def describe(self) -> str:
        count = len(self.slots)
        where = ", ".join(dict.fromkeys(slot.label for slot in self.slots))
        threads = self.slots[0].threads
        return (f"{self.device} ({count} worker process{'es' if count > 1 else ''} on {where}, "
                f"{threads} torch thread{'s' if threads > 1 else ''} each)")

    def execute(self, feed: TaskFeed) -> Iterator[PairDone | TrainingDone]:
        pool = _Pool(self.slots, self.memory_limit_mb, self._context)
        try:
            yield from pool.run(feed)
        finally:
            pool.close()


@dataclass(eq=False)
class _Pending:
    """Pairs of a run not handed to a worker yet."""

    work: RunWork
    spec: WorkSpec
    pairs: deque[Pair]


@dataclass(eq=False)
class _Chunk:
    """Pairs of a run sent to one worker; ``pairs`` are those without a result yet."""

    work: RunWork
    spec: WorkSpec
    pairs: list[Pair]


@dataclass(eq=False)
class _Worker:
    index: int
    slot: Slot
    process: multiprocessing.process.BaseProcess
    conn: connection.Connection
    ready: bool = False
    item: _Chunk | TrainingWork | None = None
    #: The pairs the method was given and has not returned yet, and since when.
    unit: set[tuple[str, str]] = field(default_factory=set)
    unit_size: int = 0
    unit_started: float = 0.0
    retiring: str | None = None  # why it leaves by itself
    kill_cause: str | None = None  # why this pool killed it
    at_eof: bool = False

    def send_item(self) -> None:
        if isinstance(self.item, TrainingWork):
            message = ("train", TrainingSpec.of(self.item), None)
        else:
            message = ("pairs", self.item.spec, list(self.item.pairs))
        try:
            self.conn.send(message)
        except OSError:  # it died meanwhile: its sentinel says so next
            pass

    def kill(self, cause: str) -> None:
        self.kill_cause = self.kill_cause or cause
        self.process.kill()


class _Pool:
    """One ``execute`` call's workers: started as work comes, stopped when it is done."""

    def __init__(self, slots: list[Slot], memory_limit_mb: float | None, context):
        self.slots = slots
        self.memory_limit_mb = memory_limit_mb
        self.context = context
        self.workers: dict[int, _Worker] = {}
        self.failed_starts = [0] * len(slots)
        self.pending: deque[_Pending] = deque()
        self.trainings: deque[TrainingWork] = deque()  # handed out again after a failed start
        self.starved = False
        self.feed: TaskFeed | None = None

    # --- the loop ----------------------------------------------------------------------------
    def run(self, feed: TaskFeed) -> Iterator[PairDone | TrainingDone]:
        self.feed = feed
        while True:
            self._dispatch(feed)
            if self.starved and not any(w.item is not None for w in self.workers.values()):
                return
            yield from self._wait()

    def _dispatch(self, feed: TaskFeed) -> None:
        """Give every free slot something to do, starting its worker if it has none."""
        self.starved = False
        for index, slot in enumerate(self.slots):
            worker = self.workers.get(index)
            if worker is not None and (worker.item is not None or worker.retiring
                                       or worker.at_eof):  # busy, leaving, or ending
                continue
            item = self._next_item(feed)
            if item is None:
                self.starved = True
                return
            if worker is None:
                worker = self.workers[index] = self._start(index, slot)
            worker.item = item
            if worker.ready:
                worker.send_item()

    def _next_item(self, feed: TaskFeed) -> _Chunk | TrainingWork | None:
        while True:
            if self.trainings:
                return self.trainings.popleft()
            while self.pending and not self.pending[0].pairs:
                self.pending.popleft()
            if self.pending:
                return self._chunk(self.pending[0])
            work = feed.next()
            if work is None or isinstance(work, TrainingWork):
                return work
            self.pending.append(_Pending(work, WorkSpec.of(work), deque(work.pairs)))

    def _chunk(self, pending: _Pending) -> _Chunk:
        """One pair for a CPU worker; on a GPU a share of the run's pairs, which the worker may
        register as a batch."""
        size = 1
        if self.slots[0].gpu is not None:
            size = max(1, min(MAX_CHUNK, math.ceil(len(pending.pairs) / len(self.slots))))
        pairs = [pending.pairs.popleft() for _ in range(min(size, len(pending.pairs)))]
        return _Chunk(pending.work, pending.spec, pairs)

    def _requeue(self, item: _Chunk | TrainingWork | None, pairs: list[Pair] | None = None):
        """Hand out ``item`` again (only ``pairs`` of a chunk, when given), before other work."""
        if isinstance(item, TrainingWork):
            self.trainings.appendleft(item)
        elif item is not None:
            again = item.pairs if pairs is None else pairs
            if again:
                self.pending.appendleft(_Pending(item.work, item.spec, deque(again)))

    def _start(self, index: int, slot: Slot) -> _Worker:
        environment = dict(os.environ)
        if slot.gpu is not None:
            environment["CUDA_VISIBLE_DEVICES"] = slot.gpu
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=serve, args=(theirs, slot.device, slot.label, slot.threads, environment),
            name=f"warpbench-worker-{index}")
        with _plain_main():
            process.start()
        theirs.close()
        return _Worker(index, slot, process, ours)

    # --- what the workers say ------------------------------------------------------------------
    def _wait(self) -> Iterator[PairDone | TrainingDone]:
        waitables = {}
        for worker in self.workers.values():
            if not worker.at_eof:
                waitables[worker.conn] = worker
            waitables[worker.process.sentinel] = worker
        ready = connection.wait(list(waitables), timeout=self._timeout())
        ended = []
        for handle in ready:
            worker = waitables[handle]
            if handle is worker.conn:
                yield from self._drain(worker)
            elif worker not in ended:
                ended.append(worker)
        for worker in ended:
            yield from self._drain(worker)
            yield from self._bury(worker)
        self._enforce_limits()

    def _drain(self, worker: _Worker) -> Iterator[PairDone | TrainingDone]:
        while not worker.at_eof:
            try:
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                worker.at_eof = True
                return
            yield from self._handle(worker, message)

    def _handle(self, worker: _Worker, message: tuple) -> Iterator[PairDone | TrainingDone]:
        kind, *body = message
        item = worker.item
        if kind == "ready":
            worker.ready = True
            self.failed_starts[worker.index] = 0
            if item is not None:
                worker.send_item()
        elif kind == "started":
            worker.unit = {tuple(pair) for pair in body[0]}
            worker.unit_size = len(worker.unit)
            worker.unit_started = time.monotonic()
        elif kind == "result":
            result = body[0]
            item.pairs.remove(Pair(result.fixed, result.moving))
            worker.unit.discard((result.fixed, result.moving))
            if not item.pairs:  # its next work goes out before this result is stored
                worker.item = None
                self._dispatch(self.feed)
            yield PairDone(item.work, result)
        elif kind == "retire":
            worker.retiring = body[0]
            self._requeue(item)
            worker.item = None
        elif kind == "curve":
            item.log(*body)
        elif kind == "progress":
            item.progress(*body)
        elif kind == "trained":
            worker.item = None
            weights, error = body
            yield TrainingDone(item, weights=weights, error=error)

    def _bury(self, worker: _Worker) -> Iterator[PairDone | TrainingDone]:
        """A worker has ended: what it held is failed with the cause, or handed out again."""
        del self.workers[worker.index]
        worker.process.join()
        worker.conn.close()
        cause = worker.kill_cause or exit_cause(worker.process.exitcode)
        item = worker.item
        if not worker.ready:
            self._requeue(item)
            self.failed_starts[worker.index] += 1
            if self.failed_starts[worker.index] >= START_ATTEMPTS:
                raise ExecutorError(
                    f"worker processes on {worker.slot.label} end as they start ({cause}), "
                    f"{START_ATTEMPTS} times in a row; their messages are above")
            return
        if item is None:  # it was idle, or it left by itself after its last result
            return
        if isinstance(item, TrainingWork):
            yield TrainingDone(item, error=f"{cause} while training {item.label}")
            return
        if worker.unit:
            blamed = [p for p in item.pairs if (p.fixed, p.moving) in worker.unit]
            doing = "while registering"
        else:  # before the method was called: building it, or loading the subjects
            blamed = item.pairs[:1]
            doing = "while preparing to register"
        self._requeue(item, [p for p in item.pairs if p not in blamed])
        for pair in blamed:
            yield PairDone(item.work, failed(pair, f"{cause} {doing} {pair.fixed} <- "
                                                   f"{pair.moving}", worker.slot.label))

    # --- limits --------------------------------------------------------------------------------
    def _limit(self, worker: _Worker) -> float | None:
        """When the worker's current call is over its time (None: no limit, or no call)."""
        item = worker.item
        if not worker.unit or not isinstance(item, _Chunk) or item.work.time_limit is None:
            return None
        limit = item.work.time_limit
        return worker.unit_started + limit * worker.unit_size + GRACE_SECONDS + limit

    def _timeout(self) -> float | None:
        deadlines = [d for d in map(self._limit, self.workers.values()) if d is not None]
        timeout = min(deadlines) - time.monotonic() if deadlines else None
        if self.memory_limit_mb is not None and self.workers:
            timeout = MEMORY_POLL_SECONDS if timeout is None else min(timeout,
                                                                      MEMORY_POLL_SECONDS)
        return None if timeout is None else max(0.0, timeout)

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for worker in self.workers.values():
            deadline = self._limit(worker)
            if deadline is not None and now > deadline:
                worker.kill(f"timed out after {worker.item.work.time_limit:g} s (the call did "
                            "not stop, so its worker was killed)")
            elif self.memory_limit_mb is not None and worker.ready:
                used = resident_mb(worker.process.pid)
                if used > self.memory_limit_mb:
                    worker.kill(f"worker killed: its memory reached {used:.0f} MB, over the "
                                f"limit of {self.memory_limit_mb:g} MB")

    def close(self) -> None:
        """Stop every worker: an idle one is asked to, a busy one (an interruption) killed."""
        for worker in self.workers.values():
            if worker.ready and worker.item is None and not worker.retiring:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            else:
                worker.process.kill()
        deadline = time.monotonic() + 5
        for worker in self.workers.values():
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers.clear()


def exit_cause(exitcode: int | None) -> str:
    """How a worker ended, in words."""
    if exitcode is None or exitcode >= 0:
        return f"worker exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return "worker killed by SIGKILL (the kernel's out-of-memory killer, or kill -9)"
    return f"worker killed by {name}"


def resident_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its children, in MB (0 once it has ended)."""
    try:
        process = psutil.Process(pid)
        processes = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 2**20
    except psutil.Error:
        return 0.0


def _context():
    """A fork server that imports the worker's modules (started now), where there is one
    (POSIX); else plain spawn. Either way no worker is a fork of this process."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["warpbench.executors.worker"])
    # Methods run in a thread of the worker (the time limit): idle OpenMP threads must sleep,
    # not spin, or they starve it. OpenMP reads this as torch loads, in the fork server.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with _plain_main():
        forkserver.ensure_running()
    return context


@contextmanager
def _plain_main():
    """Start processes as if ``__main__`` were an empty module. Multiprocessing has a new process
    run this process's main script again (so that what it defines unpickles there); a worker is
    sent only warpbench's own objects, and a main script that is not importable (a Streamlit
    page, a notebook, stdin) or does work when run would break every worker."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main
