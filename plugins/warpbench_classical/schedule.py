"""How the optimising methods read their hyperparameters and decide when to stop."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator

from warpbench.options import Settings


class ScheduleParams(Settings):
    """The coarse-to-fine schedule and the stop that every optimising method's parameters
    share. A parameter named in ``per_scale`` takes a value for every scale or one list entry
    per scale."""

    #: The parameters that may be a list with one value per scale.
    per_scale: ClassVar[tuple[str, ...]] = ("iterations",)

    scales: list[PositiveInt] = Field(min_length=1)
    """Shrink factors, coarse to fine."""
    iterations: NonNegativeInt | list[NonNegativeInt]
    """At most this many iterations per scale."""
    check_every: PositiveInt
    """Iterations between convergence checks."""
    tolerance: NonNegativeFloat
    """Relative loss improvement per check below which a scale stops."""

    @model_validator(mode="after")
    def _one_value_per_scale(self):
        for key in self.per_scale:
            value = getattr(self, key)
            if isinstance(value, list) and len(value) != len(self.scales):
                raise ValueError(f"{key} has {len(value)} values for {len(self.scales)} scales")
        return self


def per_scale(value, scales) -> list:
    """One value per scale: a scalar applies to every scale, a list (as long as ``scales``, which
    :class:`ScheduleParams` checks) gives each its own."""
    return list(value) if isinstance(value, list) else [value] * len(scales)


class Convergence:
    """Stops each pair of a batch once its loss improves by less than ``tolerance`` (relative)
    over ``every`` iterations. Losses are read back from the device only at those checks, so the
    inner loop never waits on the device."""

    def __init__(self, every: int, tolerance: float):
        self.every = every
        self.tolerance = tolerance
        self.last_checked: torch.Tensor | None = None

    def converged(self, iteration: int, loss: torch.Tensor) -> torch.Tensor | None:
        """Which pairs' optimisation may stop after ``iteration`` (counted from 1), whose
        per-pair losses (N,) were ``loss``: a bool tensor (N,) on the CPU at a check, else None."""
        if iteration % self.every:
            return None
        values = loss.detach().reshape(-1).to("cpu", torch.float64)
        previous, self.last_checked = self.last_checked, values
        if previous is None:
            return torch.zeros_like(values, dtype=torch.bool)
        return previous - values <= self.tolerance * previous.abs()


class ActivePairs:
    """Which pairs of a batch are still being optimised on this level: a pair that converged is
    frozen, so that a batch gives every pair the field it would have had alone."""

    def __init__(self, count: int, device: torch.device):
        self.active = torch.ones(count, dtype=torch.bool)
        self.device = device
        self._mask: torch.Tensor | None = None  # on the device, once a pair has stopped

    def update(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``new`` for the active pairs and ``old`` for the frozen ones. Fields (k N, ...) are
        k blocks of N, one field per pair in each (syn keeps two per pair)."""
        if self._mask is None:
            return new
        mask = self._mask.repeat(new.shape[0] // self._mask.numel())
        return torch.where(mask.view(-1, *[1] * (new.dim() - 1)), new, old)

    def stop(self, converged: torch.Tensor | None) -> bool:
        """Freeze the pairs that ``converged`` (a :meth:`Convergence.converged` answer); whether
        every pair has now stopped."""
        if converged is None or not converged.any():
            return False
        self.active &= ~converged
        self._mask = self.active.to(self.device)
        return not self.active.any()
