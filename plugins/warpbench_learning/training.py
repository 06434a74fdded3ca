"""The training loop shared by both architectures.

Pairs of distinct training subjects are drawn by one ``torch.Generator`` seeded with the job's
seed, which (with the seeded initialisation) makes a CPU training reproducible; its state goes
into every checkpoint, so a resumed training draws the pairs the uninterrupted one would have.
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
from warpbench_learning.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_atomic, save_weights
from warpbench_learning.data import Subjects
from warpbench_learning.integrate import displacement
from warpbench_learning.losses import registration_loss
from warpbench_learning.model import build_network
from warpbench_learning.params import UNetParams

if TYPE_CHECKING:
    from warpbench_learning.methods import UNetMethod


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


def flip_together(generator: torch.Generator, *volumes: torch.Tensor) -> list[torch.Tensor]:
    """The same random flips of the spatial axes applied to every volume of a batch: a pair and
    its labels stay in correspondence, and fixed and moving swap nothing."""
    axes = [2 + a for a in range(3) if torch.rand((), generator=generator) < 0.5]
    return [v.flip(axes) if axes and v is not None else v for v in volumes]


class _Trainer:
    def __init__(self, job: TrainingJob, settings: UNetParams, architecture: str):
        self.job, self.settings = job, settings
        self.device = job.device
        self.supervised = settings.supervision == "labels"
        self.train_set = Subjects(job.dataset, job.dataset.subjects("train"), self.device)
        if len(self.train_set) < 2:
            raise ValueError(f"dataset {job.dataset.name!r} has fewer than 2 training subjects")
        self.val_pairs = validation_pairs(job.dataset, settings.val_pairs, job.seed)
        val_ids = sorted({s for pair in self.val_pairs for s in pair})
        self.val_set = Subjects(job.dataset, val_ids, self.device) if val_ids else None
        torch.manual_seed(job.seed)
        self.net = build_network(architecture, settings).to(self.device)
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=settings.learning_rate)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.sampler = torch.Generator().manual_seed(job.seed)
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
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "step": self.step,
                "seconds": seconds,
            },
            self.job.folder / CHECKPOINT_NAME,
        )

    # --- one step and one validation -----------------------------------------------------------
    def loss(self, subjects: Subjects, fixed_i, moving_i, augment: bool):
        fixed, moving = subjects.images[fixed_i], subjects.images[moving_i]
        fixed_hot = moving_hot = None
        if self.supervised:
            fixed_hot, moving_hot = subjects.onehot(fixed_i), subjects.onehot(moving_i)
        if augment:
            fixed, moving, fixed_hot, moving_hot = flip_together(
                self.sampler, fixed, moving, fixed_hot, moving_hot
            )
        with autocast_for(self.device):
            velocity = self.net(fixed, moving)
        disp = displacement(velocity, self.settings.integration_steps, fixed.shape[2:])
        loss, parts = registration_loss(fixed, moving, disp, self.settings, fixed_hot, moving_hot)
        return loss, parts, disp

    def train_step(self) -> torch.Tensor:
        self.net.train()
        batch = self.settings.batch_size
        fixed_i, moving_i = sample_pairs(self.sampler, len(self.train_set), batch)
        loss, _, _ = self.loss(self.train_set, fixed_i, moving_i, self.settings.augment)
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimiser)
        self.scaler.update()
        self.step += 1
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> None:
        """Log the mean validation loss, its parts, and the mean Dice of the validation pairs'
        labels warped as the platform scores them (nearest neighbour)."""
        self.net.eval()
        index = {subject_id: i for i, subject_id in enumerate(self.val_set.ids)}
        labels = range(1, len(self.val_set.label_values) + 1)
        totals: dict[str, list[float]] = {}
        for fixed_id, moving_id in self.val_pairs:
            fixed_i, moving_i = torch.tensor([index[fixed_id]]), torch.tensor([index[moving_id]])
            loss, parts, disp = self.loss(self.val_set, fixed_i, moving_i, augment=False)
            fixed_labels = self.val_set.labels[fixed_i[0]].cpu().numpy()
            moved = warp_labels(self.val_set.labels[moving_i[0]].cpu().numpy(), disp[0].cpu())
            scores = {"loss": float(loss), **{k: float(v) for k, v in parts.items()}}
            scores["dice"] = float(np.nanmean(metrics.dice(fixed_labels, moved, labels)))
            for name, value in scores.items():
                totals.setdefault(name, []).append(value)
        for name, values in totals.items():
            self.job.log(self.step, "val", name, float(np.mean(values)))


def train(job: TrainingJob, method: UNetMethod, settings: UNetParams) -> Path:
    """Train ``method``'s network under ``settings`` (a resolved preset) until its budget
    (``steps``, and ``minutes`` when set, counting time spent before a resume) is spent;
    checkpoint every ``checkpoint_every`` steps and at the end; save the final weights, tagged
    with the method, its version and its trained parameters, and return their path."""
    trained_params = method.trained_params(settings)
    trainer = _Trainer(job, settings, method.architecture)
    trainer.resume(trained_params)
    steps = settings.steps
    seconds_allowed = settings.minutes * 60 if settings.minutes else math.inf
    started = time.perf_counter() - trainer.spent
    running, count = torch.zeros((), device=job.device), 0
    while trainer.step < steps and time.perf_counter() - started < seconds_allowed:
        running += trainer.train_step()
        count += 1
        step = trainer.step
        if step % settings.checkpoint_every == 0:
            trainer.save_checkpoint(trained_params, time.perf_counter() - started)
        if step % settings.log_every == 0:
            job.log(step, "train", "loss", float(running) / count)
            running, count = torch.zeros((), device=job.device), 0
        if trainer.val_set is not None and step % settings.val_every == 0:
            trainer.validate()
        job.progress(step, steps)
    trainer.save_checkpoint(trained_params, time.perf_counter() - started)
    return save_weights(job.folder, trainer.net.state_dict(), method.name, method.version,
                        trained_params)
