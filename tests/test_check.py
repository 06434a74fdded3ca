"""The contract kit: every rule catches the mistake it exists for and names itself; sound methods
and datasets pass; `warpbench check` on a broken installed plugin fails with the rule named."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from fake_dist import forget_modules, install_module
from toy_plugins import ToyDataset, ToyLearner
from warpbench import Method
from warpbench.cli import main
from warpbench.testing import (
    CHECK_SHAPE,
    CHECK_SHIFT,
    FAIL,
    PASS,
    SKIP,
    TRAIN_STEPS,
    WARN,
    ContractError,
    assert_method_contract,
    check_dataset,
    check_method,
    smooth_image,
)
from warpbench_classical import AffineMethod, IdentityMethod

BUILTINS = "executors,synthetic,decathlon,classical,precomputed"


class ConstantShift(Method):
    """Returns the known shift times ``scale``, optionally with its channels reversed: the
    simplest method with a controllable error."""

    name = "constant"
    family = "classical"
    presets = {"default": {"scale": 1.0, "reverse": False}}

    def register(self, fixed, moving, params, device, *, grid=None):
        values = [s * params["scale"] for s in CHECK_SHIFT]
        if params["reverse"]:
            values = values[::-1]
        if np.array_equal(fixed, moving):
            values = [0.0, 0.0, 0.0]
        return torch.tensor(values, dtype=torch.float32).view(3, 1, 1, 1).expand(3, *fixed.shape).clone()


def with_preset(method, **params):
    method.presets = {"default": {**method.presets["default"], **params}}
    return method


def statuses(report):
    return {r.rule: r.status for r in report.results}


def test_loading_the_kit_as_a_pytest_plugin_does_not_import_torch():
    code = ("import sys, warpbench.testing.pytest_plugin; "
            "print(sorted(m for m in ('torch', 'warpbench.methods', 'warpbench.runner') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_smooth_image_is_exactly_shifted():
    fixed, moving = smooth_image(), smooth_image(offset=(2, 0, 0))
    assert fixed.dtype == np.float32 and fixed.shape == CHECK_SHAPE
    np.testing.assert_allclose(moving[2:], fixed[:-2], atol=1e-6)


def test_a_sound_method_passes_every_rule_and_reports_time_and_memory():
    report = assert_method_contract(with_preset(ConstantShift()))
    assert {s for rule, s in statuses(report).items() if rule not in ("trains", "batch")} == {PASS}
    assert report.result("trains").status == SKIP  # not a learning method
    assert report.result("batch").status == SKIP  # registers one pair at a time
    timing = report.result("time-and-memory").message
    assert " s and " in timing and "MB peak on cpu" in timing
    assert "+2.00, -1.50, +1.00" in report.result("pull-back-sign").message


def test_a_method_written_before_the_grid_keeps_working_and_is_told_what_to_change():
    class Older(ConstantShift):
        def register(self, fixed, moving, params, device):  # no grid keyword
            return super().register(fixed, moving, params, device)

    report = check_method(with_preset(Older()))
    assert report.ok and report.result("pull-back-sign").status == PASS
    warning = report.result("takes-grid")
    assert warning.status == WARN
    assert "add `*, grid: warpbench.Grid = warpbench.Grid()`" in warning.message
    assert check_method(with_preset(ConstantShift())).result("takes-grid").status == PASS


def test_builtin_affine_and_identity_keep_the_contract():
    assert check_method(AffineMethod()).ok
    identity = check_method(IdentityMethod())
    assert identity.ok and identity.result("pull-back-sign").status == SKIP  # a baseline


@pytest.mark.parametrize(
    ("params", "message"),
    [({"scale": -1.0}, "wrong sign along axis 0, 1, 2 (a push-forward field"),
     ({"reverse": True}, "size off along axis 2 (channels in another axis order?)"),
     ({"scale": 3.0}, "size off along axis 0, 1, 2")],
)
def test_pull_back_sign_catches_a_push_forward_or_a_swapped_axis(params, message):
    report = check_method(with_preset(ConstantShift(), **params))
    result = report.result("pull-back-sign")
    assert result.status == FAIL and message in result.message
    assert result.expected.startswith("(+2, -1.5, +1) voxels")
    assert "FAIL pull-back-sign" in report.format()
    with pytest.raises(ContractError, match="pull-back-sign"):
        report.raise_for_failures()


class Broken(Method):
    name = "broken"
    family = "classical"
    presets = {"default": {"how": "nan"}}

    def register(self, fixed, moving, params, device):
        how = params["how"]
        shift = CHECK_SHIFT
        if np.array_equal(fixed, moving) and how != "moves-identical":
            shift = (0.0, 0.0, 0.0)  # only the broken rule under test should fail
        good = np.broadcast_to(np.reshape(shift, (3, 1, 1, 1)), (3, *fixed.shape))
        good = good.astype(np.float32).copy()
        if how == "nan":
            good[1, 2, 3, 4] = np.nan
            return good
        if how == "channels-last":
            return np.moveaxis(good, 0, -1).copy()
        if how == "float64":
            return good.astype(np.float64)
        if how == "list":
            return good.tolist()
        if how == "raises":
            raise RuntimeError("CUDA is required")
        if how == "zero":
            return np.zeros_like(good)
        if how == "moves-identical":
            return good  # the same shift whatever the images
        if how == "random":
            return good + 0.01 * torch.rand(good.shape).numpy()  # seeded by the kit
        if how == "unseeded":
            return good + 0.01 * np.random.default_rng().random(good.shape).astype(np.float32)
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "rule", "expected", "got"),
    [
        ("nan", "field-finite", "0 non-finite values", "1 of 40320"),
        ("channels-last", "field-shape", "(3, 20, 24, 28) = (3, D, H, W)", "(20, 24, 28, 3)"),
        ("float64", "field-dtype", "float32", "float64"),
        ("list", "field-shape", "array of shape (3, 20, 24, 28)", "list"),
        ("raises", "runs-on-cpu", "a field computed on cpu", "RuntimeError: CUDA is required"),
        ("zero", "pull-back-sign", "mean displacement about (+2, -1.5, +1) voxels", "(+0.00"),
        ("moves-identical", "identical-images", "max |u| < 0.5 voxels", "max |u| = 2.000"),
        ("unseeded", "deterministic", "max difference <= 0.0001 voxels", "max difference"),
    ],
)
def test_each_broken_rule_is_named_with_expected_and_got(how, rule, expected, got):
    report = check_method(with_preset(Broken(), how=how))
    result = report.result(rule)
    assert result.status == FAIL, report.format()
    assert result.expected == expected
    assert got in result.got
    assert [r.rule for r in report.failures] == [rule], report.format()


class Batching(ConstantShift):
    """Batches its pairs, and the preset says how it gets that wrong."""

    presets = {"default": {**ConstantShift.presets["default"], "batch": "sound"}}

    def register(self, fixed, moving, params, device):
        return super().register(fixed, moving, {k: v for k, v in params.items() if k != "batch"}, device)

    def register_batch(self, pairs, params, device):
        fields = [self.register(f, m, params, device) for f, m in pairs]
        if params["batch"] == "reversed":
            return fields[::-1]
        if params["batch"] == "drops":
            return fields[:1]
        return fields


@pytest.mark.parametrize(("how", "status", "got"), [
    ("sound", PASS, None),
    ("reversed", FAIL, "(shifted pair)"),
    ("drops", FAIL, "1: torch.Tensor"),
])
def test_batch_catches_fields_out_of_order_or_missing(how, status, got):
    result = check_method(with_preset(Batching(), batch=how)).result("batch")
    assert result.status == status, result
    if got:
        assert got in result.got


def test_builtin_dense_methods_keep_the_batch_contract():
    from warpbench_classical import GreedyMethod

    report = check_method(GreedyMethod(), "fast")
    assert report.ok and report.result("batch").status == PASS, report.format()


def test_a_seeded_random_method_is_deterministic():
    report = check_method(with_preset(Broken(), how="random"))
    assert report.result("deterministic").status == PASS


def test_a_hanging_method_fails_instead_of_hanging():
    class Slow(ConstantShift):
        def register(self, fixed, moving, params, device):
            import time

            time.sleep(5)

    result = check_method(Slow(), time_limit=0.2).result("runs-on-cpu")
    assert result.status == FAIL and "timed out after 0.2 s" in result.got


def test_a_bad_declaration_is_named():
    class NoDefault(ConstantShift):
        presets = {"fast": {"scale": 1.0, "reverse": False}}

    result = check_method(NoDefault(), "fast").result("declaration")
    assert result.status == FAIL and "no 'default' preset" in result.got


def test_a_learning_method_is_trained_briefly_then_registers_with_its_weights():
    learner = ToyLearner()
    learner.presets = {"default": {"steps": 500}}
    report = assert_method_contract(learner)
    assert report.result("trains").status == PASS
    assert learner.trained == [("warpbench-check", 1)]  # trained once, for every registration
    (weights,) = learner.registered_with
    assert not weights.exists()  # the temporary folder is gone
    assert f"{TRAIN_STEPS} steps" in report.result("trains").message  # the budget was cut


def test_a_learning_method_whose_training_breaks_fails_trains():
    class NoWeights(ToyLearner):
        def train(self, job):
            return job.folder / "never-written.pt"

    report = check_method(NoWeights())
    result = report.result("trains")
    assert result.status == FAIL and "never-written.pt" in result.got
    assert "no weights to register with" in report.result("runs-on-cpu").got
    learner = ToyLearner()
    learner.fail_on = {"warpbench-check"}
    result = check_method(learner).result("trains")
    assert result.status == FAIL and "deliberate training failure" in result.got


def test_the_pytest_fixture_fails_a_test_with_the_report(warpbench_contract):
    assert warpbench_contract.method(with_preset(ConstantShift())).ok
    with pytest.raises(pytest.fail.Exception, match="FAIL field-finite"):
        warpbench_contract.method(with_preset(Broken(), how="nan"))


# --- datasets ----------------------------------------------------------------------------------

def toy(**options):
    return ToyDataset("toy", {"subjects": 6, "split": {"train": 2, "val": 1, "test": 3},
                              "pairs": {"test": "all"}, **options}, ".")


def test_a_sound_dataset_passes(warpbench_contract):
    report = warpbench_contract.dataset(toy())
    assert statuses(report) == dict.fromkeys(statuses(report), PASS)
    assert report.result("pairs-valid").message == "train 0, val 0, test 6 pairs"


class Overlapping(ToyDataset):
    kind = "toy-overlap"

    def subjects(self, split):
        return ["s0", "s1", "s2"] if split != "val" else ["s2"]


class BadPairs(ToyDataset):
    kind = "toy-badpairs"

    def pairs(self, split="test"):
        from warpbench import Pair

        return [Pair("s0", "s5")] if split == "test" else []


class MixedGrid(ToyDataset):
    kind = "toy-grid"

    def load(self, subject_id):
        subject = super().load(subject_id)
        if subject_id == "s3":
            subject.image, subject.labels = subject.image[1:], subject.labels[1:]
        return subject


class Float64(ToyDataset):
    kind = "toy-f64"

    def load(self, subject_id):
        subject = super().load(subject_id)
        subject.image = subject.image.astype(np.float64)
        return subject


class ShapeMismatch(ToyDataset):
    kind = "toy-shape"

    def load(self, subject_id):
        subject = super().load(subject_id)
        subject.labels = subject.labels[:, :-1]
        return subject


class Undeclared(ToyDataset):
    kind = "toy-undeclared"
    labels = {1: "box"}


class NoLabels(ToyDataset):
    kind = "toy-nolabels"
    labels = {0: "background", 2: "slab"}


class Missing(ToyDataset):
    kind = "toy-missing"

    def availability(self):
        return False, "files not found under /nowhere"


@pytest.mark.parametrize(
    ("cls", "rule", "status", "text"),
    [
        (Overlapping, "splits-disjoint", FAIL, "splits 'train' and 'val' share subjects"),
        (BadPairs, "pairs-valid", FAIL, "test pairs reach outside the test split"),
        (MixedGrid, "one-grid", FAIL, "differ in shape"),
        (Float64, "images-float32", FAIL, "wrong image dtype"),
        (ShapeMismatch, "label-maps", FAIL, "label map and image differ in shape"),
        (NoLabels, "labels-declared", FAIL, "integers above 0"),
        (Undeclared, "label-values", WARN, "values [2] appear in label maps but are not declared"),
        (Missing, "available", FAIL, "missing"),
    ],
)
def test_each_broken_dataset_rule_is_named(cls, rule, status, text):
    dataset = cls("bad", {"subjects": 6, "split": {"train": 2, "val": 1, "test": 3}}, ".")
    report = check_dataset(dataset)
    result = report.result(rule)
    assert result.status == status and text in result.message, report.format()
    assert report.ok == (status == WARN)


def test_an_unavailable_dataset_skips_the_rules_that_need_its_files():
    report = check_dataset(Missing("gone", {}, "."))
    assert report.result("available").got == "files not found under /nowhere"
    assert report.result("one-grid").status == SKIP


# --- the command ---------------------------------------------------------------------------

BROKEN_PLUGIN = """
    import numpy as np
    from warpbench import Method
    from warpbench.hookspecs import hookimpl

    class PushForward(Method):
        name = "push-forward"
        family = "classical"

        def register(self, fixed, moving, params, device):
            # the classic mistake: the forward shift, i.e. the wrong sign
            shift = [0.0, 0.0, 0.0] if (fixed == moving).all() else [-2.0, 1.5, -1.0]
            return np.broadcast_to(np.reshape(shift, (3, 1, 1, 1)),
                                   (3, *fixed.shape)).astype(np.float32)

    class Diverges(PushForward):
        name = "diverges"

        def register(self, fixed, moving, params, device):
            field = -super().register(fixed, moving, params, device)
            field[0, 0, 0, 0] = np.nan
            return field

    class ChannelsLast(PushForward):
        name = "channels-last"

        def register(self, fixed, moving, params, device):
            return np.moveaxis(-super().register(fixed, moving, params, device), 0, -1)

    @hookimpl
    def register_methods(register):
        register(PushForward())
        register(Diverges())
        register(ChannelsLast())
"""


def test_check_command_fails_a_broken_installed_plugin_naming_the_rule(tmp_path, monkeypatch, capsys):
    install_module(tmp_path / "site", "pushy", BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", f"{BUILTINS},pushy")
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["check", "push-forward"]) == 1
        out = capsys.readouterr().out
        assert "FAIL pull-back-sign: wrong sign along axis 0, 1, 2" in out
        assert "got:      (-2.00, +1.50, -1.00)" in out
        assert out.count("FAIL") == 1

        assert main(["check", "pushy"]) == 1  # by entry-point name: everything it registered
        out = capsys.readouterr().out
        reports = out.split("method '")[1:]
        assert [r.split("'")[0] for r in reports] == ["push-forward", "diverges", "channels-last"]
        failed = [[line.split()[1].rstrip(":") for line in r.splitlines() if "FAIL" in line]
                  for r in reports]
        assert failed == [["pull-back-sign"], ["field-finite"], ["field-shape"]]
        assert "expected: (3, 20, 24, 28) = (3, D, H, W)" in reports[2]
        assert "channels-last is the Learn2Reg file layout" in reports[2]
    finally:
        forget_modules("pushy")


def test_check_command_passes_builtins_and_reports_unknown_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  tiny: {plugin: synthetic, shape: [24, 24, 24], subjects: 4,"
        " split: {train: 1, val: 0, test: 3}}\n")
    assert main(["check", "identity"]) == 0
    assert "method 'identity' (preset 'default') passes" in capsys.readouterr().out
    assert main(["check", "identity", "--shape", "33,34,35"]) == 0  # for methods that need more
    assert "PASS field-shape: shape (3, 33, 34, 35)" in capsys.readouterr().out
    assert main(["check", "identity", "--shape", "33,34"]) == 2  # a usage error
    assert "expected three sizes of at least 8" in capsys.readouterr().err
    assert main(["check", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "dataset 'tiny' (kind 'synthetic') passes" in out and "PASS one-grid" in out
    assert main(["check", "identity:nope"]) == 2
    assert "no preset 'nope'" in capsys.readouterr().err
    assert main(["check", "no-such-method"]) == 2
    err = capsys.readouterr().err
    assert "no method, dataset kind, dataset or plugin named 'no-such-method'" in err
    assert "Traceback" not in err


def test_check_command_reports_a_plugin_that_fails_to_import(tmp_path, monkeypatch, capsys):
    install_module(tmp_path / "site", "unimportable", "raise ImportError('needs cupy')")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", f"{BUILTINS},unimportable")
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["check", "unimportable"]) == 1
        assert "FAIL plugin-loads: plugin 'unimportable': failed to import: ImportError: needs cupy" \
            in capsys.readouterr().out
    finally:
        forget_modules("unimportable")
