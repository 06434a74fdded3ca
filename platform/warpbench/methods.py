"""What a registration method is to the platform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:
    from warpbench.training import TrainingJob

FAMILIES = ("classical", "learning", "baseline")
SUPERVISION = ("none", "labels")


@dataclass(frozen=True)
class PairIds:
    """Which pair is being registered: passed only to methods that set ``wants_pair``."""

    dataset: str
    fixed: str
    moving: str


class Method:
    """A registration method. Plugins subclass it and register one instance per method.

    Class attributes describe it; ``presets`` name hyperparameter sets (the instrumentation axis,
    e.g. ``default``, ``fast``, ``literature``), each a plain dict that is stored with every run.
    """

    name: ClassVar[str]
    family: ClassVar[str] = "classical"
    supervision: ClassVar[str] = "none"
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}
    #: A method that looks results up by pair rather than computing them from the images (such
    #: as fields precomputed elsewhere) sets this, and ``register`` is then also given
    #: ``pair=PairIds(dataset, fixed, moving)``. A method that registers images leaves it False.
    wants_pair: ClassVar[bool] = False

    def register(
        self, fixed: np.ndarray, moving: np.ndarray, params: dict[str, Any], device: torch.device
    ) -> np.ndarray | torch.Tensor:
        """Register one pair of intensity images (float32, (D, H, W), same grid) and return the
        pull-back displacement (3, D, H, W) in voxels, such that ``moving(x + u(x))`` matches
        ``fixed(x)``. ``params`` is one preset's dict; ``device`` is where to compute."""
        raise NotImplementedError

    def register_batch(self, pairs, params: dict[str, Any], device: torch.device) -> list:
        """Register several ``(fixed, moving)`` pairs of one grid at once and return their fields
        in order. Called only with up to :meth:`max_batch` pairs; by default one after another.
        A method that fills a GPU better with a batch overrides both."""
        return [self.register(fixed, moving, params, device) for fixed, moving in pairs]

    def max_batch(self, shape: tuple[int, int, int], params: dict[str, Any],
                  device: torch.device) -> int:
        """How many pairs of grid ``shape`` :meth:`register_batch` takes at once on ``device``
        (1: no batching)."""
        return 1

    def availability(self) -> tuple[bool, str]:
        """Whether the method can run here, and if not why (shown to the user): a wrapper of an
        optional package says so when the package is missing, and every run then sets the
        method aside instead of failing each of its pairs."""
        return True, ""

    def supervision_of(self, preset: str) -> str:
        """The supervision a run under ``preset`` used: a preset may set ``"supervision"`` (a
        learning method trained with and without labels), otherwise the method's own."""
        return self.presets[preset].get("supervision", self.supervision)

    def check(self) -> list[str]:
        """Problems with the declaration itself (empty when it is sound)."""
        problems = []
        if not getattr(self, "name", None):
            problems.append("has no name")
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} is not one of {FAMILIES}")
        if self.supervision not in SUPERVISION:
            problems.append(f"supervision {self.supervision!r} is not one of {SUPERVISION}")
        if "default" not in self.presets:
            problems.append("has no 'default' preset")
        for preset in self.presets:
            if self.supervision_of(preset) not in SUPERVISION:
                problems.append(f"preset {preset!r}: supervision is not one of {SUPERVISION}")
        return problems


class LearningMethod(Method):
    """A method that must be trained before it registers.

    The scheduler calls ``train`` once per cache key (method, the preset's training parameters,
    version, training dataset, seed) and then ``register(..., weights=path)`` with the file
    ``train`` returned, for every pair of every dataset it is evaluated on. ``register`` may be
    called many times with the same weights, so it should keep the loaded network (per weights
    file and device) between calls.
    """

    family = "learning"
    #: Preset keys that act only when registering (test-time optimisation, say): presets that
    #: differ only in these share one training. ``train`` is still given the whole preset.
    test_time_keys: ClassVar[tuple[str, ...]] = ()

    def training_params(self, preset: str) -> dict[str, Any]:
        """The parameters of ``preset`` that decide the trained weights (its cache key)."""
        return {k: v for k, v in self.presets[preset].items() if k not in self.test_time_keys}

    def train(self, job: TrainingJob) -> Path:
        """Train under ``job.params``'s budget, resuming from the newest checkpoint in
        ``job.folder`` if there is one; save the final weights under ``job.folder`` and return
        their path."""
        raise NotImplementedError

    def register(self, fixed, moving, params, device, *, weights: Path):
        """As :meth:`Method.register`, with the trained ``weights`` file."""
        raise NotImplementedError


def availability_of(method: Method) -> tuple[bool, str]:
    """``method.availability()``, with a plugin's exception in it reported as the reason."""
    try:
        return method.availability()
    except Exception as exc:  # a broken plugin must not stop the plan or the listing
        return False, f"method {method.name!r}: availability() raised {type(exc).__name__}: {exc}"
