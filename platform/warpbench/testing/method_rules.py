"""The method rules: a method registers a known pair, and its field is judged.

Method rules run on the CPU, on a pair of smooth synthetic images of shape :data:`CHECK_SHAPE`
(its three sides differ, so a transposed field cannot pass): the moving image is the fixed one
shifted by :data:`CHECK_SHIFT` voxels, a different amount and sign along each axis, so a field with
the wrong sign, the wrong channel order or the Learn2Reg file layout is caught. Time and peak
memory of a registration are reported.

A learning method (:class:`warpbench.LearningMethod`) is checked on the larger grid
:data:`LEARNING_SHAPE` (U-Nets halve the grid once per level) and first trained there, in a
temporary folder, on :func:`training_dataset`: a few copies of the check image shifted by up to
:data:`TRAIN_SHIFT` voxels per axis. The preset is kept, except that a ``steps`` budget is cut to
:data:`TRAIN_STEPS` (the preset's own budget took over 10 minutes on 2 busy CPU cores), so the
check proves that training and registering with its weights work, not that the network learnt:
for it a wrong shift or a moved identical pair is a warning, not a failure.

torch and the platform's modules are imported where a check runs, not with this module.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from warpbench.testing.engine import ContractReport, RuleBook, Skipped, Violation, Warned, describe

#: The grid of the method checks: small, and a different length along each axis.
CHECK_SHAPE = (20, 24, 28)
#: The known shift of the moving image, voxels per axis: the pull-back field should recover it.
CHECK_SHIFT = (2.0, -1.5, 1.0)
#: A recovered shift component must have the right sign and lie within this factor range.
SHIFT_RATIO = (0.5, 1.5)
#: Identical images must give a field that moves no voxel by this much (voxels): below half a
#: voxel, nearest-neighbour label warping leaves every label where it was.
IDENTITY_TOLERANCE = 0.5
#: Two registrations of one pair under one seed may differ by at most this (voxels).
DETERMINISM_TOLERANCE = 1e-4
#: A pair registered in a batch may differ from the same pair alone by this much on average
#: (voxels): float rounding differs between batch sizes, and an optimiser amplifies it a little.
BATCH_TOLERANCE = 0.05
#: Voxels left out at each face when judging the shift (the shifted image left the grid there).
BORDER = 3
#: A learning method's training set: copies of the check image shifted by up to this many voxels
#: per axis (so its pairs differ as the checked pair does), split into these many subjects.
TRAIN_SHIFT = 2.5
TRAIN_SPLIT = {"train": 8, "val": 2, "test": 2}
#: The grid of a learning method's checks, and its training budget when the preset has ``steps``.
LEARNING_SHAPE = (32, 40, 48)
TRAIN_STEPS = 10

METHOD_RULES = RuleBook()
method_rule = METHOD_RULES.rule


def check_grid():
    """The grid the kit's pairs are on: 1 mm voxels, pre-aligned (the pair differs by a shift)."""
    from warpbench.methods import Grid

    return Grid((1.0, 1.0, 1.0), pre_aligned=True)


def smooth_image(shape=CHECK_SHAPE, offset=(0.0, 0.0, 0.0), seed: int = 3) -> np.ndarray:
    """A smooth, non-periodic float32 image filling the grid: a sum of Gaussian blobs of 2.5 to
    4 voxels, evaluated at ``x - offset`` so a shifted copy is exact (no interpolation)."""
    rng = np.random.default_rng(seed)
    axes = [np.arange(n, dtype=np.float64) - offset[k] for k, n in enumerate(shape)]
    grid = np.meshgrid(*axes, indexing="ij")
    image = np.zeros(shape)
    blobs = max(8, int(np.prod(shape) / 600))
    for _ in range(blobs):
        centre = rng.uniform(-3, np.array(shape) + 3)
        sigma = rng.uniform(2.5, 4.0)
        weight = rng.uniform(0.4, 1.0)
        r2 = sum((grid[k] - centre[k]) ** 2 for k in range(3))
        image += weight * np.exp(-r2 / (2 * sigma**2))
    return (image / image.max()).astype(np.float32)


def training_dataset(shape=CHECK_SHAPE, seed: int = 0):
    """The tiny dataset a learning method is trained on by the kit: the check image (see
    :func:`smooth_image`) shifted by a random amount per subject, labelled by two intensity
    thresholds, split by :data:`TRAIN_SPLIT`. Built on first use, so importing the kit stays
    cheap."""
    from warpbench.datasets import Dataset, Subject

    class ShiftedCopies(Dataset):
        kind = "warpbench-check"
        labels = {1: "bright", 2: "brightest"}

        def all_subjects(self):
            return [f"copy{i}" for i in range(sum(TRAIN_SPLIT.values()))]

        def load(self, subject_id):
            rng = np.random.default_rng([seed, int(subject_id.removeprefix("copy"))])
            image = smooth_image(shape, tuple(rng.uniform(-TRAIN_SHIFT, TRAIN_SHIFT, 3)))
            labels = (image > 0.4).astype(np.int16) + (image > 0.7)
            return Subject(subject_id, image, labels, np.eye(4))

    options = {"split": {**TRAIN_SPLIT, "seed": seed}, "pairs": {"test": 2}}
    return ShiftedCopies("warpbench-check", options, Path("."))


@dataclass
class Call:
    """One call of ``register`` (or ``train``): its value or its error, time and peak memory."""

    value: Any = None
    error: BaseException | None = None
    seconds: float | None = None
    peak_mb: float | None = None

    @classmethod
    def measure(cls, fn, time_limit: float | None, device) -> Call:
        """Call ``fn()`` as the platform calls a method (:func:`warpbench.runner.run_with_limit`:
        in a worker thread, timed, under ``time_limit``), keeping its error instead of raising."""
        from warpbench.runner import run_with_limit

        try:
            value, seconds, peak_mb = run_with_limit(fn, time_limit, device)
        except Exception as exc:
            return cls(error=exc)
        return cls(value, None, seconds, peak_mb)


class MethodProbe:
    """Runs the registrations the method rules judge, each once, lazily."""

    def __init__(self, method, preset: str = "default", *, device="cpu", shape=None,
                 seed: int = 0, time_limit: float | None = 120.0,
                 train_time_limit: float | None = 600.0):
        import torch

        from warpbench.methods import LearningMethod

        self.method = method
        self.preset = preset
        self.device = torch.device(device)
        self.learning = isinstance(method, LearningMethod)
        self.shape = tuple(shape or (LEARNING_SHAPE if self.learning else CHECK_SHAPE))
        self.seed = seed
        self.time_limit = time_limit
        self.train_time_limit = train_time_limit
        self.fixed = smooth_image(self.shape)
        self.moving = smooth_image(self.shape, CHECK_SHIFT)
        self._calls: dict[str, Call] = {}
        self._folder: tempfile.TemporaryDirectory | None = None

    @cached_property
    def training(self) -> Call:
        """A learning method's one training on :func:`training_dataset`, in a temporary folder
        that :meth:`close` removes."""
        from warpbench.training import TrainingJob

        self._folder = tempfile.TemporaryDirectory(prefix="warpbench-check-",
                                                   ignore_cleanup_errors=True)
        job = TrainingJob(training_dataset(self.shape, self.seed), self.params, self.device,
                          self.seed, Path(self._folder.name))
        return Call.measure(lambda: self.method.train(job), self.train_time_limit, self.device)

    def weights(self) -> Path:
        """The file a learning method's training returned; raises when there is none."""
        call = self.training
        if call.error is not None or call.value is None or not Path(call.value).is_file():
            raise RuntimeError("no weights to register with: the training failed (see trains)")
        return Path(call.value)

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()

    @property
    def params(self) -> dict:
        """The preset, with a learning method's ``steps`` cut to :data:`TRAIN_STEPS` (for
        ``train`` and ``register`` alike: weights go with the parameters they were trained
        under)."""
        params = dict(self.method.presets[self.preset])
        if self.learning and "steps" in params:
            params["steps"] = min(params["steps"], TRAIN_STEPS)
        return params

    def call(self, key: str, fixed, moving) -> Call:
        if key not in self._calls:
            self._calls[key] = self._register(fixed, moving)
        return self._calls[key]

    def _register(self, fixed, moving) -> Call:
        import torch

        try:
            extra = {"weights": self.weights()} if self.learning else {}
        except Exception as exc:
            return Call(error=exc)
        from warpbench.methods import grid_keyword

        extra.update(grid_keyword(self.method.register, check_grid()))
        torch.manual_seed(self.seed)
        return Call.measure(
            lambda: self.method.register(fixed.copy(), moving.copy(), self.params, self.device,
                                         **extra),
            self.time_limit, self.device)

    @property
    def shifted(self) -> Call:
        return self.call("shifted", self.fixed, self.moving)

    def field(self, key: str = "shifted") -> np.ndarray:
        """The field of a call as float64 numpy, or :class:`Skipped` when the earlier rules
        found it unusable."""
        call = self.shifted if key == "shifted" else self._calls[key]
        if call.error is not None:
            raise Skipped("no field to judge: register raised (see runs-on-cpu)")
        value = call.value
        if not hasattr(value, "shape") or tuple(value.shape) != (3, *self.shape):
            raise Skipped("no field to judge: wrong type or shape (see field-shape)")
        array = _numpy(value).astype(np.float64)
        if not np.isfinite(array).all():
            raise Skipped("no field to judge: it has NaN or infinite values (see field-finite)")
        return array


def _same_device(got, wanted) -> bool:
    """``cuda:0`` is the device ``cuda`` asked for; ``cpu`` is ``cpu``."""
    import torch

    got, wanted = torch.device(got), torch.device(wanted)
    return got.type == wanted.type and (wanted.index is None or got.index == wanted.index)


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _not_for_pair_methods(probe: MethodProbe) -> None:
    if getattr(probe.method, "wants_pair", False):
        raise Skipped("does not apply: the method looks fields up by pair (wants_pair) "
                      "instead of registering images")


def _shifted_call(probe: MethodProbe, *, array: bool = False) -> Call:
    """The shifted pair's registration, for a rule judging what came back (``array``: the array
    itself); :class:`Skipped` when register raised or returned no array, which runs-on-cpu and
    field-shape report."""
    _not_for_pair_methods(probe)
    call = probe.shifted
    if array and (call.error is not None or not hasattr(call.value, "dtype")):
        raise Skipped("no array came back (see runs-on-cpu, field-shape)")
    if call.error is not None:
        raise Skipped("register raised (see runs-on-cpu)")
    return call


@method_rule("declaration", "name, family, supervision and presets are declared soundly")
def rule_declaration(probe: MethodProbe) -> str:
    method = probe.method
    problems = method.check()
    if problems:
        raise Violation("the method's declaration is not sound", "no problems", "; ".join(problems))
    if probe.preset not in method.presets:
        raise Violation(f"no preset {probe.preset!r}", f"one of {list(method.presets)}",
                        probe.preset)
    try:
        json.dumps(probe.params, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise Violation(f"preset {probe.preset!r} cannot be stored with the run",
                        "a JSON-serialisable dict", f"{exc}") from None
    return (f"{method.name!r}: family {method.family}, supervision {method.supervision}, "
            f"version {method.version!r}, presets {list(method.presets)}")


@method_rule("trains", "a learning method trains on a tiny dataset and returns its weights file")
def rule_trains(probe: MethodProbe) -> str:
    if not probe.learning:
        raise Skipped("does not apply: not a learning method")
    call = probe.training
    if call.error is not None:
        raise Violation("train raised on the kit's tiny dataset", "the path of the saved weights",
                        f"{type(call.error).__name__}: {call.error}")
    if call.value is None or not Path(call.value).is_file():
        raise Violation("train must return the path of an existing weights file",
                        "an existing file", repr(call.value))
    budget = f"{TRAIN_STEPS} steps, " if "steps" in probe.params else ""
    return (f"trained ({budget}{call.seconds:.1f} s, {call.peak_mb:.0f} MB peak) on "
            f"{TRAIN_SPLIT['train']} shifted copies of a {probe.shape} image; weights "
            f"{Path(call.value).name}, {Path(call.value).stat().st_size / 2**20:.1f} MB")


@method_rule("takes-grid", "register takes the grid's spacing and alignment (grid=)")
def rule_takes_grid(probe: MethodProbe) -> str:
    from warpbench.methods import takes_grid

    _not_for_pair_methods(probe)
    if not takes_grid(probe.method.register):
        raise Warned("register takes no `grid` keyword, so it is called without one and cannot "
                     "know the voxel spacing or whether the data is pre-aligned: add `*, grid: "
                     "warpbench.Grid = warpbench.Grid()` to its parameters and read "
                     "grid.spacing (mm per array axis) and grid.pre_aligned")
    grid = check_grid()
    return f"given grid=Grid(spacing={grid.spacing}, pre_aligned={grid.pre_aligned})"


@method_rule("runs-on-cpu", "register returns on the CPU without raising")
def rule_runs_on_cpu(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    call = probe.shifted
    if call.error is not None:
        raise Violation("register raised on a small pair", f"a field computed on {probe.device}",
                        f"{type(call.error).__name__}: {call.error}")
    device = getattr(call.value, "device", None)
    if device is not None and not _same_device(device, probe.device):
        raise Violation("the field came back on another device than the one given",
                        str(probe.device), str(device))
    return f"returned a field on {probe.device}"


@method_rule("field-shape", "the field is (3, D, H, W) on the fixed image's grid")
def rule_field_shape(probe: MethodProbe) -> str:
    call = _shifted_call(probe)
    expected = (3, *probe.shape)
    value = call.value
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise Violation("register must return a numpy array or a torch tensor",
                        f"array of shape {expected}", describe(value))
    if tuple(value.shape) != expected:
        hint = ""
        if tuple(value.shape) == (*probe.shape, 3):
            hint = " (channels-last is the Learn2Reg file layout; return channels first)"
        raise Violation(f"wrong shape{hint}", f"{expected} = (3, D, H, W)", str(tuple(value.shape)))
    return f"shape {expected}"


@method_rule("field-dtype", "the field is float32")
def rule_field_dtype(probe: MethodProbe) -> str:
    call = _shifted_call(probe, array=True)
    dtype = str(call.value.dtype).replace("torch.", "")
    if dtype != "float32":
        raise Violation("wrong dtype", "float32", dtype)
    return "float32"


@method_rule("field-finite", "every value of the field is finite")
def rule_field_finite(probe: MethodProbe) -> str:
    call = _shifted_call(probe, array=True)
    array = _numpy(call.value)
    if not np.issubdtype(array.dtype, np.number):
        raise Skipped(f"the field is not numeric ({array.dtype})")
    bad = int(array.size - np.isfinite(array).sum())
    if bad:
        raise Violation("the field has NaN or infinite values", "0 non-finite values",
                        f"{bad} of {array.size}")
    return f"all {array.size} values finite"


def recovered_shift(disp: np.ndarray, fixed: np.ndarray) -> list[float]:
    """Each component's mean over the interior, weighted by the fixed image's squared gradient
    along that axis (where a shift along the axis is observable at all)."""
    inner = tuple(slice(BORDER, n - BORDER) for n in fixed.shape)
    gradients = np.gradient(fixed.astype(np.float64))
    means = []
    for k in range(3):
        weight = gradients[k][inner] ** 2
        means.append(float((disp[k][inner] * weight).sum() / max(weight.sum(), 1e-12)))
    return means


@method_rule("pull-back-sign", "a known shift is recovered with the right sign and rough size")
def rule_pull_back_sign(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    disp = probe.field()
    got = recovered_shift(disp, probe.fixed)
    expected = ", ".join(f"{s:+g}" for s in CHECK_SHIFT)
    shown = ", ".join(f"{g:+.2f}" for g in got)
    if np.abs(disp).max() < 1e-6:
        if probe.method.family == "baseline":
            raise Skipped("the field is zero: a baseline that does not register")
        if probe.learning:
            raise Warned("the field is zero for a shifted pair after the kit's short training")
        raise Violation("the method returned a zero field for a shifted pair",
                        f"mean displacement about ({expected}) voxels", f"({shown})")
    low, high = SHIFT_RATIO
    wrong = [k for k in range(3) if not low <= got[k] / CHECK_SHIFT[k] <= high]
    if wrong:
        flipped = [k for k in wrong if got[k] * CHECK_SHIFT[k] <= 0]
        axes = ", ".join(str(k) for k in (flipped or wrong))
        why = (f"wrong sign along axis {axes} (a push-forward field, or channels in another order?)"
               if flipped else f"size off along axis {axes} (channels in another axis order?)")
        if probe.learning:
            raise Warned(f"{why}: recovered ({shown}) for ({expected}) voxels after the kit's "
                         "short training (a hint, not a failure: the network had few steps)")
        raise Violation(
            why + "; moving(y) = fixed(y - s) needs u = +s, since moved(x) = moving(x + u(x))",
            f"({expected}) voxels, each within x{low:g} to x{high:g} with its sign", f"({shown})")
    return f"recovered ({shown}) for a shift of ({expected}) voxels"


@method_rule("identical-images", "identical images give a near-zero field")
def rule_identical_images(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    call = probe.call("identical", probe.fixed, probe.fixed)
    if call.error is not None and probe.shifted.error is not None:
        raise Skipped("register raised (see runs-on-cpu)")
    if call.error is not None:
        raise Violation("register raised on identical images", "a near-zero field",
                        f"{type(call.error).__name__}: {call.error}")
    disp = probe.field("identical")
    largest = float(np.abs(disp).max())
    if not largest < IDENTITY_TOLERANCE:
        if probe.learning:
            raise Warned(f"identical images moved by up to {largest:.3f} voxels after the kit's "
                         "short training")
        raise Violation("identical images moved", f"max |u| < {IDENTITY_TOLERANCE} voxels",
                        f"max |u| = {largest:.3f} voxels")
    return f"max |u| = {largest:.3g} voxels"


@method_rule("deterministic", "two runs under one seed give the same field")
def rule_deterministic(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    first = probe.field()
    call = probe.call("repeat", probe.fixed, probe.moving)
    if call.error is not None:
        raise Violation("the second run raised", "the same field again",
                        f"{type(call.error).__name__}: {call.error}")
    second = probe.field("repeat")
    difference = float(np.abs(first - second).max())
    if not difference <= DETERMINISM_TOLERANCE:
        raise Violation(f"the field changed between two runs under torch.manual_seed({probe.seed})",
                        f"max difference <= {DETERMINISM_TOLERANCE:g} voxels",
                        f"max difference {difference:.3g} voxels")
    return f"max difference {difference:.2g} voxels under torch.manual_seed({probe.seed})"


@method_rule("batch", "register_batch gives each pair, in order, the field register gives it")
def rule_batch(probe: MethodProbe) -> str:
    from warpbench.methods import Method

    _not_for_pair_methods(probe)
    if probe.learning or type(probe.method).register_batch is Method.register_batch:
        raise Skipped("does not apply: the method registers one pair at a time")
    from warpbench.methods import grid_keyword

    alone = [probe.field(), probe.field("identical")]
    try:
        fields = probe.method.register_batch(
            [(probe.fixed.copy(), probe.moving.copy()), (probe.fixed.copy(), probe.fixed.copy())],
            probe.params, probe.device,
            **grid_keyword(probe.method.register_batch, check_grid()))
    except Exception as exc:
        raise Violation("register_batch raised", "one field per pair",
                        f"{type(exc).__name__}: {exc}") from None
    expected_shape = (3, *probe.shape)
    if len(fields) != 2 or any(tuple(getattr(f, "shape", ())) != expected_shape for f in fields):
        raise Violation("register_batch returned the wrong fields",
                        f"2 fields of (3, {probe.shape})",
                        f"{len(fields)}: {', '.join(describe(f) for f in fields)}")
    differences = [float(np.abs(_numpy(f).astype(np.float64) - a).mean())
                   for f, a in zip(fields, alone)]
    if not max(differences) <= BATCH_TOLERANCE:
        raise Violation("a batched pair's field differs from its field alone",
                        f"mean difference <= {BATCH_TOLERANCE:g} voxels for both pairs",
                        f"{differences[0]:.3g} (shifted pair), "
                        f"{differences[1]:.3g} (identical pair)")
    return (f"mean difference from register {max(differences):.2g} voxels "
            "(shifted and identical pair)")


@method_rule("time-and-memory", "a registration's time and peak memory, reported")
def rule_time_and_memory(probe: MethodProbe) -> str:
    call = _shifted_call(probe)
    voxels = math.prod(probe.shape)
    return (f"{call.seconds:.2f} s and {call.peak_mb:.0f} MB peak on {probe.device} "
            f"for a {voxels}-voxel pair (preset {probe.preset!r})")


def check_method(method, preset: str = "default", *, device="cpu", shape=None,
                 seed: int = 0, time_limit: float | None = 120.0,
                 train_time_limit: float | None = 600.0) -> ContractReport:
    """Put ``method`` (a :class:`warpbench.Method` instance) with one preset through every method
    rule on ``shape`` (default :data:`CHECK_SHAPE`, :data:`LEARNING_SHAPE` for a learning method);
    ``time_limit`` seconds per registration (a hang fails runs-on-cpu), and
    ``train_time_limit`` for a learning method's training (a hang fails trains)."""
    name = getattr(method, "name", type(method).__name__)
    probe = MethodProbe(method, preset, device=device, shape=shape, seed=seed,
                        time_limit=time_limit, train_time_limit=train_time_limit)
    try:
        return METHOD_RULES.run(probe, f"method {name!r} (preset {preset!r})")
    finally:
        probe.close()


def assert_method_contract(method, preset: str = "default", **options) -> ContractReport:
    """:func:`check_method`, raising :class:`ContractError` with the report on any failure."""
    return check_method(method, preset, **options).raise_for_failures()

