"""What greedy, syn and demons share as methods: one preset family and one way into torch.

Each keeps its own ``default`` (tuned for accuracy); ``fast`` and ``literature`` are derived from
it the same way for all three, so the instrumentation-bias axis means the same thing for each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from warpbench import Method
from warpbench.spatial import as_tensor

from warpbench_classical.schedule import resolve_params

#: The weak settings of earlier comparisons: a short schedule and a loose stop (and mean squares,
#: for a method whose default loss is another).
LITERATURE = {"iterations": [40, 20, 10], "tolerance": 1e-2}
FAST = {"iterations": [100, 50, 15], "tolerance": 1e-3}


def preset_family(default: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``default``, ``fast`` (about half the schedule, a looser stop) and ``literature``."""
    literature = {**default, **LITERATURE}
    if "loss" in default:
        literature["loss"] = "mse"
    return {"default": default, "fast": {**default, **FAST}, "literature": literature}


class DenseMethod(Method):
    """A dense deformable method whose ``optimise(fixed, moving, settings)`` takes and returns
    tensors of shape (1, C, D, H, W)."""

    family = "classical"
    optimise: Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]

    def register(self, fixed, moving, params, device):
        """Run the schedule in ``params`` on ``device`` and return the (3, D, H, W) field."""
        settings = resolve_params(self.presets["default"], params, self.name)
        with torch.no_grad():
            fixed_t = as_tensor(fixed, device)[None, None]
            moving_t = as_tensor(moving, device)[None, None]
            return self.optimise(fixed_t, moving_t, settings)[0]
