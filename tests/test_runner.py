"""run_with_limit, the one way a call of a method is timed and measured (pairs, the contract kit,
benchmarks): the value comes back with its time and peak memory, the call's own error is raised
again, and a call that overruns its limit gives up with the limit named. And what a method is told
of the pair's grid."""

import time

import numpy as np
import pytest
import torch

from toy_plugins import ToyDataset
from warpbench.datasets import Subject
from warpbench.methods import Grid, Method
from warpbench.runner import Measured, PairTimeout, evaluate_batch, evaluate_pair, run_with_limit


def test_the_value_comes_back_with_its_seconds_and_peak_memory():
    def allocate():
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.2)  # long enough for the memory sampler to see it
        return float(block.sum())

    measured = run_with_limit(allocate, None, "cpu")
    assert isinstance(measured, Measured)
    assert measured.value == 200 * 2**20 // 8
    assert measured.seconds >= 0.2
    assert measured.peak_memory_mb > 150
    value, seconds, peak_memory_mb = measured  # unpacks as (value, seconds, peak memory)
    assert (value, seconds, peak_memory_mb) == tuple(measured)


def test_the_calls_own_error_is_raised_again():
    def fails():
        raise ValueError("the method's own error")

    with pytest.raises(ValueError, match="the method's own error"):
        run_with_limit(fails, 10.0, torch.device("cpu"))


def test_a_call_over_its_limit_raises_pair_timeout_naming_the_limit():
    start = time.perf_counter()
    with pytest.raises(PairTimeout, match="timed out after 0.2 s"):
        run_with_limit(lambda: time.sleep(3), 0.2, "cpu")
    assert time.perf_counter() - start < 2  # abandoned, not waited for


class GridRecorder(Method):
    """Records the grid each call is given, and registers nothing."""

    name = "grid-recorder"
    family = "baseline"
    presets = {"default": {}}

    def __init__(self):
        self.grids = []

    def register(self, fixed, moving, params, device, *, grid):
        self.grids.append(grid)
        return torch.zeros(3, *fixed.shape)


def toy_subject(subject_id: str, affine) -> Subject:
    """A toy subject on a grid with ``affine``."""
    loaded = ToyDataset("t", {}, ".").load(subject_id)
    return Subject(subject_id, loaded.image, loaded.labels, np.asarray(affine))


def test_a_method_is_given_the_grid_s_spacing_and_the_dataset_s_alignment(tmp_path):
    rotated = np.array([[0, 0, 3.0, 5], [0.8, 0, 0, -2], [0, 1.5, 0, 7], [0, 0, 0, 1]])
    fixed, moving = toy_subject("s0", rotated), toy_subject("s1", rotated)
    method = GridRecorder()
    for pre_aligned in (False, True):
        dataset = ToyDataset("t", {"pre_aligned": pre_aligned}, tmp_path)
        assert evaluate_pair(method, {}, dataset, fixed, moving, torch.device("cpu")).status == "ok"
        evaluate_batch(method, {}, dataset, [(fixed, moving)], torch.device("cpu"))
    # spacing per array axis (the affine's column norms), through register and register_batch
    assert method.grids == [Grid((0.8, 1.5, 3.0), False)] * 2 + [Grid((0.8, 1.5, 3.0), True)] * 2


def test_a_method_without_the_grid_keyword_is_called_as_before(tmp_path):
    class Older(GridRecorder):
        def register(self, fixed, moving, params, device):
            return torch.zeros(3, *fixed.shape)

    fixed, moving = toy_subject("s0", np.eye(4)), toy_subject("s1", np.eye(4))
    result = evaluate_pair(Older(), {}, ToyDataset("t", {}, tmp_path), fixed, moving,
                           torch.device("cpu"))
    assert result.status == "ok", result.error
