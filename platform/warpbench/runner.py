"""Evaluating one pair: run the method under a time limit, check its field, score it.

The platform, never the method, warps the moving labels and computes the scores, so every method
is scored the same way; the method only sees the two intensity images. Whatever goes wrong (an
exception, an invalid field, a time-out, running out of memory) becomes a failed
:class:`PairResult` with the reason, so one pair never stops a run. :func:`run_with_limit` is how
a call of a method is timed and its memory measured, here and wherever else that is reported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import psutil
import torch

from warpbench import metrics
from warpbench.datasets import Dataset, Subject
from warpbench.methods import Grid, Method, PairIds, grid_keyword
from warpbench.spatial import InvalidField, validate_displacement, warp_labels

MEMORY_POLL_SECONDS = 0.02
#: The name of every worker thread a method runs in (see :func:`run_with_limit`).
PAIR_THREAD = "warpbench-pair"


@dataclass
class PairResult:
    fixed: str
    moving: str
    status: str  # "ok" or "failed"
    error: str | None = None
    labels: list[int] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    hd95: list[float] = field(default_factory=list)
    mean_dice: float | None = None
    mean_hd95: float | None = None
    sdlogj: float | None = None
    folding_percent: float | None = None
    seconds: float | None = None
    peak_memory_mb: float | None = None
    device: str = ""
    #: The validated field itself, kept only when ``evaluate_pair(keep_field=True)`` asked for it.
    displacement: np.ndarray | None = field(default=None, repr=False)


class PairTimeout(RuntimeError):
    """A call of a method overran its time limit (see :func:`run_with_limit`)."""


class Measured(NamedTuple):
    """What :func:`run_with_limit` measured: the call's value, its wall-clock seconds and its
    peak memory in MB."""

    value: Any
    seconds: float
    peak_memory_mb: float


def run_with_limit(fn: Callable[[], Any], time_limit: float | None,
                   device: torch.device | str) -> Measured:
    """Call ``fn()`` in a worker thread, as the platform calls every method, and measure it.

    This is how a pair's time and peak memory are measured, so that anything else that reports
    them (the contract kit, benchmarks) measures the same way. Peak memory is CUDA's peak
    allocation on a GPU ``device``, and otherwise the peak growth of this process's resident
    memory, sampled every ``MEMORY_POLL_SECONDS``. An exception of ``fn`` is raised again here. A
    call that overruns ``time_limit`` seconds (None: no limit) is abandoned (a thread cannot be
    killed; it ends with the process) and raises :class:`PairTimeout`.
    """
    device = torch.device(device)
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # carried back to the caller's thread
            outcome["error"] = exc

    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    worker = threading.Thread(target=target, daemon=True, name=PAIR_THREAD)
    start = time.perf_counter()
    worker.start()
    while worker.is_alive():
        worker.join(MEMORY_POLL_SECONDS)
        peak = max(peak, process.memory_info().rss)
        if time_limit is not None and time.perf_counter() - start > time_limit:
            raise PairTimeout(f"timed out after {time_limit:g} s")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if "error" in outcome:
        raise outcome["error"]
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = (peak - baseline) / 2**20
    return Measured(outcome.get("value"), seconds, peak_mb)


def abandoned_calls() -> list[threading.Thread]:
    """The worker threads of :func:`run_with_limit` still running: calls abandoned by a time-out
    or an interruption. While one runs torch, a normal interpreter exit aborts the process: the
    thread, made to exit as it takes the GIL back, unwinds through torch's C++ frames, and
    ``std::terminate`` ends it with status 134 (pytorch/pytorch#38228). A thread leaves
    ``threading.enumerate()`` as it ends; its ``is_alive()`` is not asked, since a ``join`` that
    Ctrl-C interrupted marks it stopped while it runs on (Python 3.11)."""
    return [t for t in threading.enumerate() if t.name == PAIR_THREAD]


def evaluate_pair(
    method: Method,
    params: dict[str, Any],
    dataset: Dataset,
    fixed: Subject,
    moving: Subject,
    device: torch.device,
    time_limit: float | None = None,
    seed: int = 0,
    keep_field: bool = False,
    weights: Path | None = None,
) -> PairResult:
    """Register ``moving`` onto ``fixed`` with ``method`` and score the result (keeping the
    field in ``result.displacement`` when ``keep_field``). A learning method is given its trained
    ``weights``."""
    result = PairResult(fixed.id, moving.id, status="failed", device=str(device))
    try:
        _check_grid(dataset, fixed, moving)
        torch.manual_seed(seed)
        extra = {}
        if method.wants_pair:
            extra["pair"] = PairIds(dataset.name, fixed.id, moving.id,
                                    tuple(dataset.all_subjects()))
        if weights is not None:
            extra["weights"] = weights
        extra.update(grid_keyword(method.register, grid_of(dataset, fixed)))
        disp, result.seconds, result.peak_memory_mb = run_with_limit(
            lambda: method.register(fixed.image, moving.image, dict(params), device, **extra),
            time_limit,
            device,
        )
    except Exception as exc:
        result.error = _failure(exc)
        return result
    return _score(result, disp, dataset, fixed, moving, keep_field)


def evaluate_batch(
    method: Method,
    params: dict[str, Any],
    dataset: Dataset,
    pairs: list[tuple[Subject, Subject]],
    device: torch.device,
    time_limit: float | None = None,
    seed: int = 0,
) -> list[PairResult]:
    """Register the (fixed, moving) ``pairs`` in one call of ``method.register_batch`` and score
    each. The batch's time and peak memory are shared equally among its pairs, and its time limit
    is ``time_limit`` per pair. Should the batch as a whole fail (an exception, running out of
    memory, a time-out), every pair is registered again alone, so that a failure is recorded
    against the pair that causes it; a single invalid field fails only its own pair."""
    try:
        for fixed, moving in pairs:
            _check_grid(dataset, fixed, moving)
        torch.manual_seed(seed)
        limit = None if time_limit is None else time_limit * len(pairs)
        extra = grid_keyword(method.register_batch, grid_of(dataset, pairs[0][0]))
        fields, seconds, peak_mb = run_with_limit(
            lambda: method.register_batch([(f.image, m.image) for f, m in pairs], dict(params),
                                          device, **extra),
            limit,
            device,
        )
        if len(fields) != len(pairs):
            raise InvalidField(
                f"register_batch returned {len(fields)} fields for {len(pairs)} pairs")
    except Exception:
        return [evaluate_pair(method, params, dataset, f, m, device, time_limit, seed)
                for f, m in pairs]
    results = []
    for (fixed, moving), disp in zip(pairs, fields):
        result = PairResult(fixed.id, moving.id, status="failed", device=str(device),
                            seconds=seconds / len(pairs), peak_memory_mb=peak_mb / len(pairs))
        results.append(_score(result, disp, dataset, fixed, moving, keep_field=False))
    return results


def grid_of(dataset: Dataset, fixed: Subject) -> Grid:
    """What a method is told of a pair's grid: the fixed subject's spacing (every subject of a
    dataset shares the grid) and whether the dataset declares itself pre-aligned."""
    return Grid(fixed.spacing, dataset.pre_aligned)


def _check_grid(dataset: Dataset, fixed: Subject, moving: Subject) -> None:
    if fixed.image.shape != moving.image.shape:
        raise ValueError(
            f"dataset {dataset.name!r}: {fixed.id} has shape {fixed.image.shape} but "
            f"{moving.id} has {moving.image.shape}; a dataset must bring subjects to one grid"
        )


def _failure(exc: Exception) -> str:
    """The error a failed pair is stored with."""
    if isinstance(exc, InvalidField):
        return f"invalid field: {exc}"
    if isinstance(exc, PairTimeout):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _score(result: PairResult, disp, dataset: Dataset, fixed: Subject, moving: Subject,
           keep_field: bool) -> PairResult:
    """Validate the method's field and fill ``result`` with the pair's scores (or the reason the
    field is invalid)."""
    try:
        disp = validate_displacement(disp, fixed.image.shape)
    except InvalidField as exc:
        result.error = _failure(exc)
        return result
    labels = sorted(dataset.labels)
    moved_labels = warp_labels(moving.labels, disp)
    scores = metrics.score_pair(fixed.labels, moved_labels, labels, disp, fixed.spacing)
    result.status = "ok"
    result.labels = labels
    result.dice = [_finite_or_none(v) for v in scores["dice"]]
    result.hd95 = [_finite_or_none(v) for v in scores["hd95"]]
    result.mean_dice = _finite_or_none(scores["mean_dice"])
    result.mean_hd95 = _finite_or_none(scores["mean_hd95"])
    result.sdlogj = _finite_or_none(scores["sdlogj"])
    result.folding_percent = _finite_or_none(scores["folding_percent"])
    if keep_field:
        result.displacement = disp
    return result


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
