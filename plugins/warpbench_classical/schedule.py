"""How the optimising methods read their hyperparameters and decide when to stop."""

from __future__ import annotations

from typing import Any

import torch


def resolve_params(defaults: dict[str, Any], params: dict[str, Any], method: str) -> dict[str, Any]:
    """``params`` over ``defaults``; an unknown key is an error, so a misspelt hyperparameter
    cannot silently fall back to its default and skew a comparison."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{method}: unknown parameters {unknown}; known are {sorted(defaults)}")
    return {**defaults, **params}


def per_scale(value, scales, name: str) -> list:
    """One value per scale: a scalar applies to every scale, a list must name one for each."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(scales):
            raise ValueError(f"{name} has {len(value)} values for {len(scales)} scales")
        return list(value)
    return [value] * len(scales)


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
