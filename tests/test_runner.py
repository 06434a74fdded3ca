"""run_with_limit, the one way a call of a method is timed and measured (pairs, the contract kit,
benchmarks): the value comes back with its time and peak memory, the call's own error is raised
again, and a call that overruns its limit gives up with the limit named."""

import time

import numpy as np
import pytest
import torch

from warpbench.runner import Measured, PairTimeout, run_with_limit


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
