"""What the platform hands a learning method when it trains one.

A training is a job of its own, cached by (method, its preset's training parameters, method
version, training dataset and its fingerprint, seed): the scheduler runs it once, then every
evaluation of that configuration, in domain or on another dataset, registers with the weights it
produced.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from warpbench.datasets import Dataset

#: How often buffered loss-curve points are written: the store opens the file per transaction, so
#: one write per logged point would make the store, not the network, the bottleneck.
FLUSH_SECONDS = 5.0


def training_key(method, preset: str, dataset: Dataset, seed: int) -> str:
    """The cache key of a training: the same key means the same trained weights. It holds the
    preset's training parameters, not its name, so presets that differ only in test-time keys
    (:attr:`warpbench.LearningMethod.test_time_keys`) share one training."""
    blob = json.dumps(
        [method.name, method.training_params(preset), method.version, dataset.name,
         dataset.fingerprint(), seed],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _no_log(step: int, split: str, name: str, value: float) -> None:
    pass


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass
class TrainingJob:
    """One training of one learning method under one preset.

    The method reads its subjects with ``dataset.subjects("train")`` / ``dataset.load(id)`` (and
    validates on ``dataset.pairs("val")``), keeps its budget (steps or minutes) in ``params``, and
    saves checkpoints under ``folder`` often enough that an interrupted training resumes from its
    newest one instead of starting again.
    """

    dataset: Dataset
    params: dict[str, Any]
    device: torch.device
    seed: int
    folder: Path
    #: ``log(step, split, name, value)``: one point of a loss curve (``split`` is "train" or
    #: "val"); the platform stores it with the training.
    log: Callable[[int, str, str, float], None] = field(default=_no_log)
    #: ``progress(done_steps, total_steps)``, for a progress bar.
    progress: Callable[[int, int], None] = field(default=_no_progress)


def run_training(method, job: TrainingJob) -> Path:
    """``method.train(job)`` and the weights file it returned, checked to exist: how every
    executor trains, in this process or in a worker."""
    returned = method.train(job)
    if returned is None or not Path(returned).exists():
        raise FileNotFoundError(f"train() returned {returned!r}, which does not exist")
    return Path(returned).resolve()


class CurveRecorder:
    """Collects a training's ``log`` points and writes them to the store in batches: every
    ``FLUSH_SECONDS`` and on :meth:`flush` (which the scheduler calls however the training ends).
    A point logged again (a resumed training repeating the steps after its last checkpoint)
    replaces the earlier one, so the stored curve has one value per (step, split, name)."""

    def __init__(self, store, key: str, flush_seconds: float = FLUSH_SECONDS):
        self.store = store
        self.key = key
        self.flush_seconds = flush_seconds
        self.points: dict[tuple[int, str, str], float] = {}
        self.last_step = 0
        self._flushed_at = time.monotonic()

    def log(self, step: int, split: str, name: str, value: float) -> None:
        self.points[(int(step), str(split), str(name))] = float(value)
        self.last_step = max(self.last_step, int(step))
        if time.monotonic() - self._flushed_at >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.points:
            self.store.record_curve(self.key, [(*k, v) for k, v in self.points.items()])
            self.points = {}
        self._flushed_at = time.monotonic()
