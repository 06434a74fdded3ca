"""What the platform hands a learning method when it trains one.

A training is a job of its own, cached by (method, preset and its parameters, method version,
training dataset and its fingerprint, seed): the scheduler runs it once, then every evaluation of
that configuration, in domain or on another dataset, registers with the weights it produced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from warpbench.datasets import Dataset


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
