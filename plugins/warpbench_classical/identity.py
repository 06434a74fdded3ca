"""The do-nothing baseline: every score a method reports is read against this one."""

from __future__ import annotations

import torch

from warpbench import Grid, Method
from warpbench.options import Settings


class IdentityMethod(Method):
    name = "identity"
    family = "baseline"
    version = "1"
    description = "No registration (zero displacement): the overlap the pair has to begin with."
    Params = Settings  # no parameters: any key is a mistake
    presets = {"default": {}}

    def register(self, fixed, moving, params, device, *, grid: Grid = Grid()):
        """A zero field of the pair's shape, on ``device`` (whatever the ``grid``)."""
        self.resolve(params)
        return torch.zeros(3, *fixed.shape, device=device, dtype=torch.float32)
