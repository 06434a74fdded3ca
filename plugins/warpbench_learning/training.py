"""The training loop every network shares.

Pairs of distinct training subjects, and their random transforms, are drawn by one
``torch.Generator`` seeded with the job's seed, which (with the seeded initialisation) makes a
CPU training reproducible; its state goes into every checkpoint, so a resumed training draws the
pairs the uninterrupted one would have. The learning rate is a function of the step and of the
budget spent (:func:`learning_rate_at`), so a resume needs no scheduler state. Validations choose
the weights and may end the training early (:mod:`warpbench_learning.selection`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from warpbench import metrics
from warpbench.spatial import warp_labels
from warpbench.training import TrainingJob
from warpbench_learning import augmentation
from warpbench_learning.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_atomic, save_weights
from warpbench_learning.data import Subjects
from warpbench_learning.integrate import displacement
from warpbench_learning.losses import registration_loss
from warpbench_learning.model import build_network
from warpbench_learning.params import TrainingParams
from warpbench_learning.selection import Selection

if TYPE_CHECKING:
    from warpbench_learning.methods import NetworkMethod


def autocast_for(device: torch.device):
    """Mixed precision on CUDA (bfloat16 where the card has it, else float16); full precision
    elsewhere, where it would be slower, not faster."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def validation_pairs(dataset, count: int, seed: int) -> list[tuple[str, str]]:
    """The dataset's own validation pairs, else up to ``count`` ordered pairs of its validation
    subjects drawn with ``seed`` (empty when it has fewer than two)."""
    pairs = [(p.fixed, p.moving) for p in dataset.pairs("val")]
    if pairs:
        return pairs
    every = list(itertools.permutations(dataset.subjects("val"), 2))
    order = torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))
    return [every[i] for i in order[:count].tolist()]


def sample_pairs(generator: torch.Generator, subjects: int, batch: int):
    """``batch`` (fixed, moving) index pairs of distinct subjects."""
    fixed = torch.randint(subjects, (batch,), generator=generator)
    moving = torch.randint(subjects - 1, (batch,), generator=generator)
    return fixed, moving + (moving >= fixed).long()


def learning_rate_at(step: int, spent: float, settings: TrainingParams) -> float:
    """The learning rate of the step after ``step`` steps, ``spent`` the fraction of the budget
    used so far: a linear rise over the first ``warmup_steps``, times, for "cosine", half a
    cosine that reaches zero when the budget is spent."""
    rate = settings.learning_rate * min(1.0, (step + 1) / max(settings.warmup_steps, 1))
    if settings.lr_schedule == "cosine":
        rate *= 0.5 * (1 + math.cos(math.pi * min(spent, 1.0)))
    return rate


def budget_spent(step: int, seconds: float, settings: TrainingParams) -> float:
    """The fraction of the budget used: of the steps, or of the minutes when they run out
    first, so that under a wall-clock budget the schedule still ends where the training does."""
    spent = step / max(settings.steps, 1)
    if settings.minutes:
        spent = max(spent, seconds / (60 * settings.minutes))
    return spent


class _Trainer:
    def __init__(self, job: TrainingJob, settings: TrainingParams, architecture: str):
        self.job, self.settings = job, settings
        self.device = job.device
        self.supervised = settings.supervision == "labels"
        self.batch = settings.cuda_batch_size if self.device.type == "cuda" else settings.batch_size
        self.train_set = Subjects(job.dataset, job.dataset.subjects("train"), self.device)
        if len(self.train_set) < 2:
            raise ValueError(f"dataset {job.dataset.name!r} has fewer than 2 training subjects")
        self.val_pairs = validation_pairs(job.dataset, settings.val_pairs, job.seed)
        val_ids = sorted({s for pair in self.val_pairs for s in pair})
        self.val_set = Subjects(job.dataset, val_ids, self.device) if val_ids else None
        torch.manual_seed(job.seed)
        grid = self.train_set.images.shape[2:]
        self.net = build_network(architecture, settings, grid).to(self.device)
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=settings.learning_rate)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.sampler = torch.Generator().manual_seed(job.seed)
        self.selection = Selection(settings.patience)
        self.step, self.spent = 0, 0.0

    # --- state ---------------------------------------------------------------------------------
    def resume(self, trained_params: dict) -> None:
        state = load_checkpoint(self.job.folder)
        if state is None:
            return
        if state["params"] != trained_params:
            raise ValueError(
                f"{self.job.folder / CHECKPOINT_NAME} belongs to a training under other "
                "parameters; remove it or train into another folder"
            )
        self.net.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.set_state(state["sampler"])
        self.selection.load(state["selection"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.step, self.spent = state["step"], state["seconds"]

    def save_checkpoint(self, trained_params: dict, seconds: float) -> None:
        save_atomic(
            {
                "params": trained_params,
                "model": self.net.state_dict(),
                "optimiser": self.optimiser.state_dict(),
                "scaler": self.scaler.state_dict(),
                "sampler": self.sampler.get_state(),
                "selection": self.selection.state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "step": self.step,
                "seconds": seconds,
            },
            self.job.folder / CHECKPOINT_NAME,
        )

    def weights(self) -> dict:
        """What the training returns: the state of the best validation, else (no validation
        subjects) the last one."""
        best = self.selection.best_state
        return best if best is not None else self.net.state_dict()

    # --- one step and one validation -----------------------------------------------------------
    def loss(self, subjects: Subjects, fixed_i, moving_i, augmented: bool):
        fixed, moving = subjects.images[fixed_i], subjects.images[moving_i]
        fixed_hot = moving_hot = None
        if self.supervised:
            fixed_hot, moving_hot = subjects.onehot(fixed_i), subjects.onehot(moving_i)
        if augmented and self.settings.augment is not None:
            with torch.no_grad():  # each volume by its own transform, its labels with it
                hot = torch.cat([fixed_hot, moving_hot]) if self.supervised else None
                images, hot = augmentation.augment(self.sampler, torch.cat([fixed, moving]), hot,
                                                   self.settings.augment)
                fixed, moving = images.chunk(2)
                if self.supervised:
                    fixed_hot, moving_hot = hot.chunk(2)
        with autocast_for(self.device):
            velocity = self.net(fixed, moving)
        disp = displacement(velocity, self.settings.integration_steps, fixed.shape[2:],
                            self.settings.integration_downsize)
        loss, parts = registration_loss(fixed, moving, disp, self.settings, fixed_hot, moving_hot)
        return loss, parts, disp

    def train_step(self, spent: float) -> torch.Tensor:
        """One optimiser step; ``spent`` is the fraction of the budget used before it."""
        self.net.train()
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate_at(self.step, spent, self.settings)
        fixed_i, moving_i = sample_pairs(self.sampler, len(self.train_set), self.batch)
        loss, _, _ = self.loss(self.train_set, fixed_i, moving_i, augmented=True)
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimiser)
        self.scaler.update()
        self.step += 1
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The mean validation loss, its parts, and the mean Dice of the validation pairs'
        labels warped as the platform scores them (nearest neighbour); recorded in the
        selection."""
        self.net.eval()
        index = {subject_id: i for i, subject_id in enumerate(self.val_set.ids)}
        labels = range(1, len(self.val_set.label_values) + 1)
        totals: dict[str, list[float]] = {}
        for fixed_id, moving_id in self.val_pairs:
            fixed_i, moving_i = torch.tensor([index[fixed_id]]), torch.tensor([index[moving_id]])
            loss, parts, disp = self.loss(self.val_set, fixed_i, moving_i, augmented=False)
            fixed_labels = self.val_set.labels[fixed_i[0]].cpu().numpy()
            moved = warp_labels(self.val_set.labels[moving_i[0]].cpu().numpy(), disp[0].cpu())
            scores = {"loss": float(loss), **{k: float(v) for k, v in parts.items()}}
            scores["dice"] = float(np.nanmean(metrics.dice(fixed_labels, moved, labels)))
            for name, value in scores.items():
                totals.setdefault(name, []).append(value)
        means = {name: float(np.mean(values)) for name, values in totals.items()}
        self.selection.update(self.step, means["dice"], self.net.state_dict())
        return means


def train(job: TrainingJob, method: NetworkMethod, settings: TrainingParams) -> Path:
    """Train ``method``'s network under ``settings`` (a resolved preset) until its budget
    (``steps``, and ``minutes`` when set, counting time spent before a resume) is spent or
    validation stops improving; validate every ``val_every`` steps and at the end, checkpoint
    every ``checkpoint_every`` steps, after every validation and at the end; save the weights of
    the best validation, tagged with the method, its version and its trained parameters, and
    return their path."""
    trained_params = method.trained_params(settings)
    trainer = _Trainer(job, settings, method.architecture)
    trainer.resume(trained_params)
    seconds_allowed = settings.minutes * 60 if settings.minutes else math.inf
    started = time.perf_counter() - trainer.spent

    def checkpoint() -> None:
        trainer.save_checkpoint(trained_params, time.perf_counter() - started)

    def log_validation(scores: dict[str, float]) -> None:
        for name, value in scores.items():
            job.log(trainer.step, "val", name, value)

    running, count = torch.zeros((), device=job.device), 0
    while (trainer.step < settings.steps and time.perf_counter() - started < seconds_allowed
           and not trainer.selection.exhausted):
        running += trainer.train_step(budget_spent(trainer.step, time.perf_counter() - started,
                                                   settings))
        count += 1
        step = trainer.step
        # Validation, then the checkpoint, then the logs: a training interrupted while logging
        # resumes after a validation it has already counted.
        scores = trainer.validate() if trainer.val_set and step % settings.val_every == 0 else {}
        if scores or step % settings.checkpoint_every == 0:
            checkpoint()
        if step % settings.log_every == 0:
            job.log(step, "train", "loss", float(running) / count)
            running, count = torch.zeros((), device=job.device), 0
        log_validation(scores)
        job.progress(step, settings.steps)
    last = {}
    if trainer.val_set and trainer.step and trainer.selection.validated_at != trainer.step:
        last = trainer.validate()  # the last step competes too
    checkpoint()
    log_validation(last)
    return save_weights(job.folder, trainer.weights(), method.name, method.version,
                        trained_params)
