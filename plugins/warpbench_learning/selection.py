"""Validation-based model selection and early stopping.

The weights a training returns are those of its best validation (the highest mean Dice of the
validation pairs' labels, warped as the platform scores them), not of its last step: a network
past its best is not what the published methods report either. Training stops early once
``patience`` validations in a row have not beaten the best. The selection's state (the best
step, its Dice and a copy of its weights, the validations since) goes into every checkpoint, so
a resumed training keeps the best it had already seen.
"""

from __future__ import annotations

import copy
from typing import Any


class Selection:
    """The best validation so far, and how many validations have passed without a better one."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_step: int | None = None
        self.best_dice = float("-inf")
        self.best_state: dict[str, Any] | None = None
        self.stale = 0
        self.validated_at: int | None = None

    def update(self, step: int, dice: float, state_dict: dict[str, Any]) -> bool:
        """Record the validation of ``step`` (its mean Dice and the network's state then);
        True when it is the best so far."""
        self.validated_at = step
        if dice > self.best_dice:
            self.best_step, self.best_dice, self.stale = step, dice, 0
            self.best_state = copy.deepcopy(state_dict)
            return True
        self.stale += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether training should stop: ``patience`` validations in a row without a better one."""
        return self.patience > 0 and self.stale >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best_step": self.best_step, "best_dice": self.best_dice,
                "best_state": self.best_state, "stale": self.stale,
                "validated_at": self.validated_at}

    def load(self, state: dict[str, Any]) -> None:
        self.best_step, self.best_dice = state["best_step"], state["best_dice"]
        self.best_state, self.stale = state["best_state"], state["stale"]
        self.validated_at = state["validated_at"]
