"""The contract kit: put a method or a dataset through warpbench's contract on tiny inputs.

Each rule is a named function. Use the kit three ways:

- ``warpbench check NAME`` on the command line (a method, a dataset kind, a ``datasets.yaml``
  dataset, or an installed plugin's entry-point name);
- plain functions in any test: ``assert_method_contract(MyMethod())`` and
  ``assert_dataset_contract(dataset)`` raise :class:`ContractError` (an ``AssertionError``) listing
  every broken rule with what was expected and what came back; ``check_method`` and
  ``check_dataset`` return the :class:`ContractReport` instead;
- as a pytest plugin (installed with warpbench through the ``pytest11`` entry point): the
  ``warpbench_contract`` fixture has ``.method(method, preset="default")`` and ``.dataset(dataset)``.

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

This module imports only numpy at import time, so loading it as a pytest plugin costs nothing.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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

PASS, FAIL, SKIP, WARN = "PASS", "FAIL", "SKIP", "WARN"


class Violation(Exception):
    """Raised by a rule: what the contract expects and what came back."""

    def __init__(self, message: str, expected: str | None = None, got: str | None = None):
        super().__init__(message)
        self.message, self.expected, self.got = message, expected, got


class Skipped(Exception):
    """Raised by a rule that cannot judge (an earlier rule failed, or it does not apply)."""


class Warned(Exception):
    """Raised by a rule whose finding is worth a look but does not break the contract."""


@dataclass
class RuleResult:
    rule: str
    status: str  # PASS / FAIL / SKIP / WARN
    message: str = ""
    expected: str | None = None
    got: str | None = None

    def __str__(self) -> str:
        text = f"{self.status} {self.rule}: {self.message}"
        if self.expected is not None:
            text += f"\n       expected: {self.expected}"
        if self.got is not None:
            text += f"\n       got:      {self.got}"
        return text


class ContractError(AssertionError):
    """A method or dataset broke at least one rule; the message is the whole report."""


@dataclass
class ContractReport:
    subject: str  # what was checked, in words
    results: list[RuleResult] = field(default_factory=list)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def result(self, rule: str) -> RuleResult:
        return next(r for r in self.results if r.rule == rule)

    def format(self) -> str:
        verdict = "passes" if self.ok else f"breaks {len(self.failures)} rule(s)"
        lines = [f"{self.subject} {verdict} of the warpbench contract"]
        lines += [f"  {result}" for result in self.results]
        return "\n".join(lines)

    def raise_for_failures(self) -> ContractReport:
        if not self.ok:
            raise ContractError(self.format())
        return self


@dataclass
class Rule:
    name: str
    description: str
    function: Callable[[Any], str]


def _run_rules(rules: list[Rule], probe, report: ContractReport) -> ContractReport:
    for rule in rules:
        try:
            message = rule.function(probe)
            report.results.append(RuleResult(rule.name, PASS, message or rule.description))
        except Violation as exc:
            report.results.append(RuleResult(rule.name, FAIL, exc.message, exc.expected, exc.got))
        except Skipped as exc:
            report.results.append(RuleResult(rule.name, SKIP, str(exc)))
        except Warned as exc:
            report.results.append(RuleResult(rule.name, WARN, str(exc)))
        except Exception as exc:  # a rule that cannot even run is a broken contract
            report.results.append(RuleResult(
                rule.name, FAIL, f"checking raised {type(exc).__name__}: {exc}"))
    return report


def _rule_decorator(rules: list[Rule]):
    """A decorator ``@rule(name, description)`` that adds a check function to ``rules``."""

    def rule(name: str, description: str):
        def decorate(function):
            rules.append(Rule(name, description, function))
            function.rule = name
            return function

        return decorate

    return rule


# ==== methods =================================================================================

METHOD_RULES: list[Rule] = []
method_rule = _rule_decorator(METHOD_RULES)


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
        self._training: Call | None = None
        self._folder: tempfile.TemporaryDirectory | None = None

    @property
    def training(self) -> Call:
        """A learning method's one training on :func:`training_dataset`, in a temporary folder
        that :meth:`close` removes."""
        if self._training is None:
            from warpbench.runner import _run_with_limit
            from warpbench.training import TrainingJob

            self._folder = tempfile.TemporaryDirectory(prefix="warpbench-check-",
                                                       ignore_cleanup_errors=True)
            job = TrainingJob(training_dataset(self.shape, self.seed), self.params, self.device,
                              self.seed, Path(self._folder.name))
            try:
                value, seconds, peak = _run_with_limit(
                    lambda: self.method.train(job), self.train_time_limit, self.device)
                self._training = Call(value, None, seconds, peak)
            except Exception as exc:
                self._training = Call(error=exc)
        return self._training

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
        ``train`` and ``register`` alike: weights go with the parameters they were trained under)."""
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

        from warpbench.runner import _run_with_limit

        try:
            extra = {"weights": self.weights()} if self.learning else {}
            torch.manual_seed(self.seed)
            value, seconds, peak = _run_with_limit(
                lambda: self.method.register(fixed.copy(), moving.copy(), self.params, self.device,
                                             **extra),
                self.time_limit, self.device)
        except Exception as exc:
            return Call(error=exc)
        return Call(value, None, seconds, peak)

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


def _describe(value) -> str:
    if hasattr(value, "detach"):
        return f"torch.Tensor shape {tuple(value.shape)} dtype {value.dtype} on {value.device}"
    if isinstance(value, np.ndarray):
        return f"numpy array shape {value.shape} dtype {value.dtype}"
    return f"{type(value).__name__} {value!r:.60}"


def _not_for_pair_methods(probe: MethodProbe) -> None:
    if getattr(probe.method, "wants_pair", False):
        raise Skipped("does not apply: the method looks fields up by pair (wants_pair) "
                      "instead of registering images")


@method_rule("declaration", "name, family, supervision and presets are declared soundly")
def rule_declaration(probe: MethodProbe) -> str:
    method = probe.method
    problems = method.check()
    if problems:
        raise Violation("the method's declaration is not sound", "no problems", "; ".join(problems))
    if probe.preset not in method.presets:
        raise Violation(f"no preset {probe.preset!r}", f"one of {list(method.presets)}", probe.preset)
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
    _not_for_pair_methods(probe)
    call = probe.shifted
    if call.error is not None:
        raise Skipped("register raised (see runs-on-cpu)")
    expected = (3, *probe.shape)
    value = call.value
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise Violation("register must return a numpy array or a torch tensor",
                        f"array of shape {expected}", _describe(value))
    if tuple(value.shape) != expected:
        hint = ""
        if tuple(value.shape) == (*probe.shape, 3):
            hint = " (channels-last is the Learn2Reg file layout; return channels first)"
        raise Violation(f"wrong shape{hint}", f"{expected} = (3, D, H, W)", str(tuple(value.shape)))
    return f"shape {expected}"


@method_rule("field-dtype", "the field is float32")
def rule_field_dtype(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    call = probe.shifted
    if call.error is not None or not hasattr(call.value, "dtype"):
        raise Skipped("no array came back (see runs-on-cpu, field-shape)")
    dtype = str(call.value.dtype).replace("torch.", "")
    if dtype != "float32":
        raise Violation("wrong dtype", "float32", dtype)
    return "float32"


@method_rule("field-finite", "every value of the field is finite")
def rule_field_finite(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    call = probe.shifted
    if call.error is not None or not hasattr(call.value, "dtype"):
        raise Skipped("no array came back (see runs-on-cpu, field-shape)")
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
    alone = [probe.field(), probe.field("identical")]
    try:
        fields = probe.method.register_batch(
            [(probe.fixed.copy(), probe.moving.copy()), (probe.fixed.copy(), probe.fixed.copy())],
            probe.params, probe.device)
    except Exception as exc:
        raise Violation("register_batch raised", "one field per pair",
                        f"{type(exc).__name__}: {exc}") from None
    if len(fields) != 2 or any(tuple(getattr(f, "shape", ())) != (3, *probe.shape) for f in fields):
        raise Violation("register_batch returned the wrong fields", f"2 fields of (3, {probe.shape})",
                        f"{len(fields)}: {', '.join(_describe(f) for f in fields)}")
    differences = [float(np.abs(_numpy(f).astype(np.float64) - a).mean()) for f, a in zip(fields, alone)]
    if not max(differences) <= BATCH_TOLERANCE:
        raise Violation("a batched pair's field differs from its field alone",
                        f"mean difference <= {BATCH_TOLERANCE:g} voxels for both pairs",
                        f"{differences[0]:.3g} (shifted pair), {differences[1]:.3g} (identical pair)")
    return f"mean difference from register {max(differences):.2g} voxels (shifted and identical pair)"


@method_rule("time-and-memory", "a registration's time and peak memory, reported")
def rule_time_and_memory(probe: MethodProbe) -> str:
    _not_for_pair_methods(probe)
    call = probe.shifted
    if call.error is not None:
        raise Skipped("register raised (see runs-on-cpu)")
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
    report = ContractReport(f"method {name!r} (preset {preset!r})")
    probe = MethodProbe(method, preset, device=device, shape=shape, seed=seed,
                        time_limit=time_limit, train_time_limit=train_time_limit)
    try:
        return _run_rules(METHOD_RULES, probe, report)
    finally:
        probe.close()


def assert_method_contract(method, preset: str = "default", **options) -> ContractReport:
    """:func:`check_method`, raising :class:`ContractError` with the report on any failure."""
    return check_method(method, preset, **options).raise_for_failures()


# ==== datasets ================================================================================

DATASET_RULES: list[Rule] = []
dataset_rule = _rule_decorator(DATASET_RULES)


class DatasetProbe:
    """Loads a dataset's subjects once for the dataset rules (at most ``max_subjects``)."""

    def __init__(self, dataset, max_subjects: int | None = None):
        self.dataset = dataset
        self.max_subjects = max_subjects
        self._available: tuple[bool, str] | None = None
        self._subjects: dict[str, Any] | None = None

    def require_available(self) -> None:
        if self._available is None:
            self._available = self.dataset.availability()
        if not self._available[0]:
            raise Skipped(f"the dataset is unavailable: {self._available[1]}")

    def ids(self) -> list[str]:
        self.require_available()
        return list(self.dataset.all_subjects())

    def subjects(self) -> dict[str, Any]:
        """id -> Subject or the exception its load raised."""
        if self._subjects is None:
            ids = self.ids()
            if self.max_subjects is not None:
                ids = ids[: self.max_subjects]
            self._subjects = {}
            for subject_id in ids:
                try:
                    self._subjects[subject_id] = self.dataset.load(subject_id)
                except Exception as exc:
                    self._subjects[subject_id] = exc
        return self._subjects

    def loaded(self) -> dict[str, Any]:
        good = {k: v for k, v in self.subjects().items() if not isinstance(v, Exception)}
        if not good:
            raise Skipped("no subject loaded (see subjects-load)")
        return good


@dataset_rule("available", "the dataset's files are present")
def rule_available(probe: DatasetProbe) -> str:
    available, reason = probe.dataset.availability()
    probe._available = (available, reason)
    if not available:
        raise Violation("the dataset says its files are missing", "available", reason)
    return "available"


@dataset_rule("labels-declared", "evaluated labels are declared: integers > 0 with names")
def rule_labels_declared(probe: DatasetProbe) -> str:
    labels = getattr(probe.dataset, "labels", None)
    if not isinstance(labels, dict) or not labels:
        raise Violation("no labels declared", "a non-empty dict {value: name}", repr(labels))
    bad = [k for k in labels if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0]
    if bad:
        raise Violation("label values must be integers above 0 (0 is background)",
                        "integers > 0", repr(bad))
    unnamed = [k for k, v in labels.items() if not isinstance(v, str) or not v]
    if unnamed:
        raise Violation("every label needs a name", "non-empty strings", f"labels {unnamed}")
    return f"{len(labels)} labels"


@dataset_rule("subjects-listed", "subject ids are a non-empty list of distinct strings")
def rule_subjects_listed(probe: DatasetProbe) -> str:
    ids = probe.ids()
    if not ids:
        raise Violation("no subjects", "at least one subject id", "[]")
    not_str = [i for i in ids if not isinstance(i, str)]
    if not_str:
        raise Violation("subject ids must be strings", "str", repr(not_str[:5]))
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise Violation("subject ids repeat", "distinct ids", repr(duplicated[:5]))
    return f"{len(ids)} subjects"


@dataset_rule("splits-disjoint", "train, val and test are disjoint sets of the subjects")
def rule_splits_disjoint(probe: DatasetProbe) -> str:
    from warpbench.datasets import SPLITS

    ids = set(probe.ids())
    splits = {s: probe.dataset.subjects(s) for s in SPLITS}
    for split, members in splits.items():
        unknown = sorted(set(members) - ids)
        if unknown:
            raise Violation(f"split {split!r} names unknown subjects", "ids from all_subjects()",
                            repr(unknown[:5]))
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            shared = sorted(set(splits[a]) & set(splits[b]))
            if shared:
                raise Violation(f"splits {a!r} and {b!r} share subjects", "no subject in two splits",
                                repr(shared[:5]))
    return ", ".join(f"{s} {len(m)}" for s, m in splits.items())


@dataset_rule("pairs-valid", "pairs join two different subjects of their own split")
def rule_pairs_valid(probe: DatasetProbe) -> str:
    from warpbench.datasets import SPLITS

    probe.require_available()
    counts = {}
    for split in SPLITS:
        members = set(probe.dataset.subjects(split))
        pairs = probe.dataset.pairs(split)
        outside = [p for p in pairs if p.fixed not in members or p.moving not in members]
        if outside:
            raise Violation(f"{split} pairs reach outside the {split} split",
                            f"fixed and moving from {split}", repr(outside[:3]))
        selfish = [p for p in pairs if p.fixed == p.moving]
        if selfish:
            raise Violation(f"{split} pairs register a subject to itself", "fixed != moving",
                            repr(selfish[:3]))
        keys = [(p.fixed, p.moving) for p in pairs]
        if len(set(keys)) != len(keys):
            raise Violation(f"{split} pairs repeat", "distinct pairs", f"{len(keys)} pairs, "
                            f"{len(set(keys))} distinct")
        counts[split] = len(pairs)
    if not counts["test"]:
        raise Violation("no test pairs to evaluate", "at least one test pair", "0")
    return ", ".join(f"{s} {n}" for s, n in counts.items()) + " pairs"


@dataset_rule("subjects-load", "every subject loads, under its own id")
def rule_subjects_load(probe: DatasetProbe) -> str:
    subjects = probe.subjects()
    for subject_id, subject in subjects.items():
        if isinstance(subject, Exception):
            raise Violation(f"load({subject_id!r}) raised", "a Subject",
                            f"{type(subject).__name__}: {subject}")
        if getattr(subject, "id", None) != subject_id:
            raise Violation(f"load({subject_id!r}) returned another subject", subject_id,
                            repr(getattr(subject, "id", subject)))
    limit = "" if probe.max_subjects is None else f" (first {probe.max_subjects})"
    return f"{len(subjects)} subjects loaded{limit}"


@dataset_rule("images-float32", "images are finite float32 (D, H, W) arrays")
def rule_images_float32(probe: DatasetProbe) -> str:
    for subject_id, subject in probe.loaded().items():
        image = subject.image
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise Violation(f"subject {subject_id!r}: the image is not a 3-D numpy array",
                            "numpy array (D, H, W)", _describe(image))
        if image.dtype != np.float32:
            raise Violation(f"subject {subject_id!r}: wrong image dtype", "float32", str(image.dtype))
        if not np.isfinite(image).all():
            raise Violation(f"subject {subject_id!r}: the image has NaN or infinite values",
                            "finite values", f"{int((~np.isfinite(image)).sum())} non-finite")
    return "float32, finite"


@dataset_rule("label-maps", "label maps are integer arrays of the image's shape")
def rule_label_maps(probe: DatasetProbe) -> str:
    for subject_id, subject in probe.loaded().items():
        labels = subject.labels
        if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
            raise Violation(f"subject {subject_id!r}: the label map is not an integer array",
                            "integer numpy array", _describe(labels))
        if labels.shape != subject.image.shape:
            raise Violation(f"subject {subject_id!r}: label map and image differ in shape",
                            str(subject.image.shape), str(labels.shape))
    return "integer, shaped like their images"


@dataset_rule("one-grid", "all subjects share one grid (shape and voxel spacing)")
def rule_one_grid(probe: DatasetProbe) -> str:
    subjects = list(probe.loaded().values())
    first = subjects[0]
    spacing = np.asarray(first.spacing)
    for subject in subjects[1:]:
        if subject.image.shape != first.image.shape:
            raise Violation(f"subjects {first.id!r} and {subject.id!r} differ in shape",
                            str(first.image.shape), str(subject.image.shape))
        if not np.allclose(subject.spacing, spacing, rtol=1e-3):
            raise Violation(f"subjects {first.id!r} and {subject.id!r} differ in spacing",
                            str(tuple(spacing)), str(tuple(subject.spacing)))
    return f"shape {first.image.shape}, spacing {tuple(round(float(s), 4) for s in spacing)} mm"


@dataset_rule("label-values", "label maps hold only background and declared labels")
def rule_label_values(probe: DatasetProbe) -> str:
    declared = set(getattr(probe.dataset, "labels", {}) or {})
    seen: set[int] = set()
    for subject in probe.loaded().values():
        if isinstance(subject.labels, np.ndarray):
            seen |= {int(v) for v in np.unique(subject.labels)}
    undeclared = sorted(seen - declared - {0})
    if undeclared:
        raise Warned(f"values {undeclared[:10]} appear in label maps but are not declared "
                     "(they are not evaluated)")
    missing = sorted(declared - seen)
    if missing:
        raise Warned(f"declared labels {missing[:10]} appear in no loaded label map")
    return f"{len(seen - {0})} declared labels present"


def check_dataset(dataset, *, max_subjects: int | None = None) -> ContractReport:
    """Put ``dataset`` (a :class:`warpbench.Dataset` instance) through every dataset rule,
    loading at most ``max_subjects`` subjects (all by default)."""
    report = ContractReport(f"dataset {dataset.name!r} (kind {dataset.kind!r})")
    return _run_rules(DATASET_RULES, DatasetProbe(dataset, max_subjects), report)


def assert_dataset_contract(dataset, **options) -> ContractReport:
    """:func:`check_dataset`, raising :class:`ContractError` with the report on any failure."""
    return check_dataset(dataset, **options).raise_for_failures()
