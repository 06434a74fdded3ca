"""Several pairs registered at once (what fills a GPU): every pair gets the field it would get
alone, a pair that converges first is frozen while the others go on, and the executor batches
only where the method says it can, falling back to pairs alone when a batch fails."""

import pytest
import torch

from test_classical import dice, nested_shapes, smooth_diffeomorphism
from toy_plugins import ToyDataset
from warpbench.executors import InProcessExecutor, RunWork
from warpbench.spatial import warp_image, warp_labels
from warpbench_classical import GreedyMethod, SynMethod
from warpbench_classical.demons import DemonsMethod
from warpbench_classical.schedule import ActivePairs

CPU = torch.device("cpu")
SHAPE = (32, 36, 32)


@pytest.fixture(scope="module")
def pairs():
    """A pair related by a known smooth deformation, and a pair of identical images on another
    intensity scale (each pair is normalised on its own, as it would be alone)."""
    image, labels = nested_shapes(SHAPE)
    disp = smooth_diffeomorphism(SHAPE, 2.5, seed=3)[0]
    deformed = (warp_image(image, disp), warp_labels(labels, disp))
    bright = (100 * image, labels)
    return [((image, labels), deformed), (bright, bright)]


@pytest.mark.parametrize("method", [GreedyMethod(), SynMethod(), DemonsMethod()], ids=lambda m: m.name)
def test_a_batch_gives_each_pair_its_own_field(method, pairs):
    params = method.presets["fast"]
    images = [(fixed[0], moving[0]) for fixed, moving in pairs]
    alone = [method.register(f, m, params, CPU) for f, m in images]
    batched = method.register_batch(images, params, CPU)
    swapped = method.register_batch(images[::-1], params, CPU)[::-1]
    (fixed, moving), _ = pairs
    for together in (batched, swapped):
        assert [tuple(u.shape) for u in together] == [(3, *SHAPE)] * 2
        # The deformed pair: the same registration up to float rounding (which greedy's Adam
        # steps amplify to a few hundredths of a voxel on average, as any 1e-7 change of the
        # images does), so the same Dice.
        assert (together[0] - alone[0]).abs().mean() < 0.05
        scores = [dice(fixed[1], warp_labels(moving[1], u)) for u in (alone[0], together[0])]
        assert scores[0] > 0.85 and scores[1] == pytest.approx(scores[0], abs=0.01)
        # The identical pair stays near zero, as alone (float noise: hundredths of a voxel).
        assert together[1].abs().max() < 0.1 and alone[1].abs().max() < 0.1


def test_a_converged_pair_is_frozen_while_the_others_go_on():
    pairs = ActivePairs(3, CPU)
    old, new = torch.zeros(6, 1), torch.ones(6, 1)  # two fields per pair, as syn keeps
    assert torch.equal(pairs.update(new, old), new)
    assert not pairs.stop(None) and not pairs.stop(torch.tensor([False, False, False]))
    assert not pairs.stop(torch.tensor([False, True, False]))
    assert pairs.update(new, old).flatten().tolist() == [1, 0, 1, 1, 0, 1]
    assert not pairs.stop(torch.tensor([True, False, False]))
    assert pairs.stop(torch.tensor([False, False, True]))  # the last one: all stopped


def test_dense_methods_batch_only_on_a_gpu():
    assert GreedyMethod().max_batch(SHAPE, GreedyMethod.presets["default"], CPU) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_batches_small_pairs_and_not_huge_ones():
    cuda = torch.device("cuda")
    assert GreedyMethod().max_batch((48, 64, 48), {}, cuda) > 1
    assert GreedyMethod().max_batch((4096, 4096, 4096), {}, cuda) == 1


class BatchingShift(GreedyMethod):
    """greedy with batches of two on the CPU, and a record of every batch it was given."""

    name = "batching-greedy"

    def __init__(self, fail_batches=False, nan_second=False):
        self.batches, self.fail_batches, self.nan_second = [], fail_batches, nan_second

    def max_batch(self, shape, params, device):
        return 2

    def register_batch(self, pairs, params, device):
        self.batches.append(len(pairs))
        if self.fail_batches and len(pairs) > 1:
            raise torch.OutOfMemoryError("deliberately out of memory")
        fields = super().register_batch(pairs, params, device)
        if self.nan_second and len(fields) == 2:
            fields[1] = torch.full_like(fields[1], float("nan"))
        return fields


def evaluate(method, dataset, device=CPU):
    pairs = dataset.pairs("test")
    work = RunWork(method, method.presets["fast"], dataset, pairs, time_limit=60)
    return list(InProcessExecutor(device).evaluate(work))


@pytest.fixture
def toy(tmp_path):
    return ToyDataset("toy", {"subjects": 6, "split": {"train": 2, "val": 0, "test": 4},
                              "pairs": {"test": 5}}, tmp_path)


def test_the_executor_batches_where_the_method_can(toy):
    method = BatchingShift()
    batched = evaluate(method, toy)
    assert method.batches == [2, 2, 1]  # five pairs in batches of two, in order
    alone = evaluate(GreedyMethod(), toy)
    assert [(r.fixed, r.moving) for r in batched] == [(p.fixed, p.moving) for p in toy.pairs("test")]
    assert all(r.status == "ok" for r in batched)
    assert [r.mean_dice for r in batched] == pytest.approx([r.mean_dice for r in alone], abs=0.01)
    # A batch's time is shared among its pairs.
    assert batched[0].seconds == batched[1].seconds > 0 and batched[4].seconds > 0


def test_a_failed_batch_is_registered_again_pair_by_pair(toy):
    method = BatchingShift(fail_batches=True)
    results = evaluate(method, toy)
    assert method.batches == [2, 1, 1, 2, 1, 1, 1]  # each failed batch's pairs again, alone
    assert len(results) == 5 and {r.status for r in results} == {"ok"}


def test_an_invalid_field_in_a_batch_fails_only_its_pair(toy):
    results = evaluate(BatchingShift(nan_second=True), toy)
    assert [r.status for r in results] == ["ok", "failed", "ok", "failed", "ok"]
    assert "invalid field" in results[1].error and "NaN" in results[1].error
