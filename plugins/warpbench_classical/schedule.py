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
    """Stops an optimisation once the loss improves by less than ``tolerance`` (relative) over
    ``every`` iterations. The loss is read back from the device only at those checks, so the
    inner loop never waits on the device."""

    def __init__(self, every: int, tolerance: float):
        self.every = every
        self.tolerance = tolerance
        self.last_checked: float | None = None

    def converged(self, iteration: int, loss: torch.Tensor) -> bool:
        """Whether to stop after ``iteration`` (counted from 1), whose loss was ``loss``."""
        if iteration % self.every:
            return False
        value = float(loss)
        previous, self.last_checked = self.last_checked, value
        if previous is None:
            return False
        return previous - value <= self.tolerance * abs(previous)
