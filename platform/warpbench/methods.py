"""What a registration method is to the platform: its declaration, its presets and how a
preset becomes the settings ``register`` and ``train`` read (:meth:`Method.resolve`)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from warpbench.options import OptionsError, Settings, unknown_keys, validate
from warpbench.search_space import Range, known_parameters, space_problems

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
    #: Every subject id of the dataset, so a file name that could mean two pairs is refused.
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grid:
    """What a method may need to know of the grid a pair shares, beyond the two arrays: the
    voxel spacing in mm along each array axis, so that settings in millimetres (smoothing, a
    window) mean the same on anisotropic data, and whether the dataset declares its subjects
    affinely aligned already, so that a method starts from an affine alignment only when they
    are not. Passed as ``register(..., grid=...)`` to a method whose ``register`` takes it."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pre_aligned: bool = False


def takes_grid(function: Callable) -> bool:
    """Whether ``function`` (a method's bound ``register`` or ``register_batch``) takes a
    ``grid`` keyword: a plugin written before :class:`Grid` existed is called without one."""
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == "grid" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def grid_keyword(function: Callable, grid: Grid) -> dict[str, Grid]:
    """``{"grid": grid}`` for a ``function`` that :func:`takes_grid`, else nothing."""
    return {"grid": grid} if takes_grid(function) else {}


class Method:
    """A registration method. Plugins subclass it and register one instance per method.

    Class attributes describe it; ``presets`` name hyperparameter sets (the instrumentation axis,
    e.g. ``default``, ``fast``, ``literature``), each a plain dict that is stored with every run.
    ``Params``, when set, declares the parameters as a :class:`warpbench.options.Settings` model
    (their types; the ``default`` preset holds their defaults): ``register`` and ``train`` read
    a preset through :meth:`resolve`, typed, and :meth:`check` reports a preset that does not
    validate, so a broken one is refused when the plugin registers. ``search_space`` says which
    parameters ``warpbench tune`` may change and over what range (:mod:`warpbench.search_space`);
    :meth:`check` refuses one that names an unknown parameter or a value ``Params`` refuses.
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
    #: The parameters' model; None: the presets' dicts are the only declaration.
    Params: ClassVar[type[Settings] | None] = None
    #: The tunable parameters and their ranges; empty: the method is not tuned.
    search_space: ClassVar[dict[str, Range]] = {}

    def register(
        self, fixed: np.ndarray, moving: np.ndarray, params: dict[str, Any], device: torch.device,
        *, grid: Grid = Grid(),
    ) -> np.ndarray | torch.Tensor:
        """Register one pair of intensity images (float32, (D, H, W), same grid) and return the
        pull-back displacement (3, D, H, W) in voxels, such that ``moving(x + u(x))`` matches
        ``fixed(x)``. ``params`` is one preset's dict (:meth:`resolve` checks it and fills in
        the ``default`` preset); ``device`` is where to compute; ``grid`` the pair's spacing
        and alignment (:class:`Grid`)."""
        raise NotImplementedError

    def register_batch(self, pairs, params: dict[str, Any], device: torch.device, *,
                       grid: Grid = Grid()) -> list:
        """Register several ``(fixed, moving)`` pairs of one grid at once and return their fields
        in order. Called only with up to :meth:`max_batch` pairs; by default one after another.
        A method that fills a GPU better with a batch overrides both."""
        extra = grid_keyword(self.register, grid)
        return [self.register(fixed, moving, params, device, **extra) for fixed, moving in pairs]

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

    def resolve(self, params: dict[str, Any]) -> Any:
        """``params`` over the ``default`` preset, checked: a ``Params`` instance, or for a
        method without one the merged dict. An unknown key is an :class:`OptionsError` naming
        the method (and the preset ``params`` is), the key and the known keys, so a misspelt
        hyperparameter cannot silently fall back to its default and skew a comparison."""
        preset = next((name for name, values in self.presets.items() if values == params), None)
        where = f"method {self.name!r}" + (f" preset {preset!r}" if preset else "")
        return self._validated(params, where)

    def _validated(self, params: dict[str, Any], where: str) -> Any:
        merged = {**self.presets["default"], **params}
        if self.Params is not None:
            return validate(self.Params, merged, where, "parameter")
        known = {key for values in self.presets.values() for key in values}
        unknown = [key for key in params if key not in known]
        if unknown:
            raise OptionsError(f"{where}: {unknown_keys(unknown, known, 'parameter')}")
        return merged

    def stored_params(self, preset: str) -> str:
        """``preset``'s parameters as every run of it stores them (JSON, keys sorted): what a
        replay compares with to tell whether the preset still means what it meant then."""
        return json.dumps(self.presets[preset], sort_keys=True)

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
            return [*problems, "has no 'default' preset"]
        for preset in self.presets:
            if self.supervision_of(preset) not in SUPERVISION:
                problems.append(f"preset {preset!r}: supervision is not one of {SUPERVISION}")
            try:
                self._validated(self.presets[preset], f"preset {preset!r}")
            except OptionsError as exc:
                problems.append(str(exc))
        return [*problems, *space_problems(self)]


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
    #: What a tuning trial may spend on its training at most, as preset keys and their caps
    #: (``{"steps": 300}``): a learning method with a search space must declare it, every trial
    #: trains under it (:meth:`capped`), and the training's seconds count in the tuning budget.
    tuning_budget: ClassVar[dict[str, float]] = {}

    def training_params(self, preset: str) -> dict[str, Any]:
        """The parameters of ``preset`` that decide the trained weights (its cache key)."""
        return {k: v for k, v in self.presets[preset].items() if k not in self.test_time_keys}

    def capped(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with every :attr:`tuning_budget` key at most its cap (a key left unset,
        None, takes the cap)."""
        return {**params, **{key: cap if params.get(key) is None else min(params[key], cap)
                             for key, cap in self.tuning_budget.items()}}

    def check(self) -> list[str]:
        """As :meth:`Method.check`, and a search space comes with a training budget whose keys
        are parameters and whose caps the space does not exceed."""
        problems = super().check()
        if not self.search_space:
            return problems
        if not self.tuning_budget:
            return [*problems, "search space: a learning method caps each trial's training "
                    "with tuning_budget (such as {'steps': 300}), and declares none"]
        known = known_parameters(self)
        for key, cap in self.tuning_budget.items():
            if key not in known:
                problems.append(f"tuning_budget: {unknown_keys([key], known, 'parameter')}")
            spec = self.search_space.get(key)
            values = [v for v in (spec.values_to_check() if spec else [])
                      if isinstance(v, (int, float))]
            if values and max(values) > cap:
                problems.append(f"search space {key!r} goes beyond its tuning_budget cap {cap!r}")
        return problems

    def train(self, job: TrainingJob) -> Path:
        """Train under ``job.params``'s budget, resuming from the newest checkpoint in
        ``job.folder`` if there is one; save the final weights under ``job.folder`` and return
        their path."""
        raise NotImplementedError

    def register(self, fixed, moving, params, device, *, weights: Path, grid: Grid = Grid()):
        """As :meth:`Method.register`, with the trained ``weights`` file."""
        raise NotImplementedError


def availability_of(method: Method) -> tuple[bool, str]:
    """``method.availability()``, with a plugin's exception in it reported as the reason."""
    try:
        return method.availability()
    except Exception as exc:  # a broken plugin must not stop the plan or the listing
        return False, f"method {method.name!r}: availability() raised {type(exc).__name__}: {exc}"
