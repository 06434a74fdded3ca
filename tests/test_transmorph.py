"""TransMorph (warpbench_learning.transmorph): its Swin attention, its published size, and that it
trains and registers through the same path as the other networks."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from test_learning import TINY, blobs, mean_dice
from warpbench import TrainingJob
from warpbench.options import OptionsError
from warpbench.plugins import load_registry
from warpbench_learning.checkpoint import WeightsMismatch
from warpbench_learning.methods import TransMorph, VoxelMorph
from warpbench_learning.model import build_network
from warpbench_learning.transmorph import (
    SwinBlock,
    WindowAttention,
    from_windows,
    key_mask,
    to_windows,
)

CPU = torch.device("cpu")
#: The training settings of test_learning's tiny networks with a tiny TransMorph instead.
TINY_TRANSMORPH = {
    **{k: v for k, v in TINY.items() if k not in ("encoder", "decoder")},
    "patch_size": 2, "embed_dim": 8, "depths": [1, 1], "heads": [2, 2], "window": [2, 2, 2],
    "drop_path": 0.0,
}


def job(folder, dataset, **params):
    logged = []
    made = TrainingJob(dataset, {**TINY_TRANSMORPH, **params}, CPU, 0, Path(folder),
                       log=lambda step, split, name, value: logged.append((split, name, value)))
    return made, logged


def test_the_plugin_registers_transmorph_with_the_published_configuration_as_a_preset():
    method = load_registry().methods["transmorph"]
    assert method.family == "learning" and method.check() == []
    assert {"default", "labels", "default-long", "labels-long", "io", "published",
            "published-labels"} <= set(method.presets)
    assert method.supervision_of("labels") == method.supervision_of("published-labels") == "labels"
    published = method.resolve(method.presets["published"])
    assert (published.embed_dim, published.depths, published.heads, published.window,
            published.patch_size) == (96, [2, 2, 4, 2], [4, 4, 8, 8], [5, 6, 7], 4)


def test_the_published_configuration_is_the_papers_network():
    """Chen et al. report 46.77 M parameters for TransMorph; 160x192x224 needs no padding."""
    method = TransMorph()
    net = build_network("transmorph", method.resolve(method.presets["published"]))
    parameters = sum(p.numel() for p in net.parameters())
    assert parameters == pytest.approx(46.77e6, rel=0.002)
    assert all(side % net.core.multiple == 0 for side in (160, 192, 224))


def test_an_inconsistent_architecture_is_refused_naming_the_method_and_the_problem():
    with pytest.raises(OptionsError, match=r"method 'transmorph'.*do not divide among 3 heads"):
        TransMorph().resolve({"heads": [3, 4, 8]})
    with pytest.raises(OptionsError, match="must be as long"):
        TransMorph().resolve({"depths": [2, 2]})


def test_windows_are_cut_and_put_back_exactly():
    x = torch.randn(2, 4, 6, 8, 5)
    windows = to_windows(x, (2, 3, 4))
    assert windows.shape == (2, 2 * 2 * 2, 24, 5)
    assert torch.equal(from_windows(windows, (2, 3, 4), (4, 6, 8)), x)


def naive_attention(attention: WindowAttention, tokens: torch.Tensor, window) -> torch.Tensor:
    """The heads' outputs for ``tokens`` (N, T, C), the first T positions of one window (the
    rest padding), written out: softmax(q k^T / sqrt(c) + the bias of their relative
    positions) v, before the output projection."""
    n, count, dim = tokens.shape
    heads = attention.heads
    coords = torch.stack(torch.meshgrid(*(torch.arange(s) for s in window), indexing="ij"))
    coords = coords.flatten(1)[:, :count]
    q, k, v = attention.qkv(tokens).view(n, count, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-1, -2) / math.sqrt(dim // heads)
    a, b, e = window
    for i in range(count):
        for j in range(count):
            d = coords[:, i] - coords[:, j] + torch.tensor([a - 1, b - 1, e - 1])
            logits[:, :, i, j] += attention.bias_table[(d[0] * (2 * b - 1) + d[1]) * (2 * e - 1) + d[2]]
    out = logits.softmax(-1) @ v
    return out.transpose(1, 2).reshape(n, count, dim)


def test_window_attention_is_softmax_attention_among_the_real_tokens_of_each_window():
    torch.manual_seed(0)
    window, grid = (2, 2, 2), (3, 2, 2)  # depth 3: the second window is half padding
    attention = WindowAttention(8, 2, window)
    with torch.no_grad():  # a bias large enough to matter
        attention.bias_table.normal_(0, 1)
    tokens = torch.randn(1, *grid, 8)
    mask = key_mask(grid, window, (0, 0, 0), CPU)
    with torch.no_grad():
        qkv = torch.nn.functional.pad(attention.qkv(tokens), [0, 0, 0, 0, 0, 0, 0, 1])
        out = from_windows(attention(to_windows(qkv, window), mask), window, (4, 2, 2))
        first = naive_attention(attention, tokens[:, :2].reshape(1, 8, 8), window)
        second = naive_attention(attention, tokens[:, 2:].reshape(1, 4, 8), window)
    torch.testing.assert_close(out[:, :2].reshape(1, 8, 8), first)
    torch.testing.assert_close(out[:, 2:3].reshape(1, 4, 8), second)


def reach(block: SwinBlock, grid, source) -> torch.Tensor:
    """Which tokens' outputs change when the token at ``source`` changes."""
    torch.manual_seed(0)
    tokens = torch.randn(1, *grid, 8)
    changed = tokens.clone()
    changed[(0, *source)] += torch.randn(8)  # not a constant: the block's LayerNorm removes it
    with torch.no_grad():
        return (block(changed, {}) - block(tokens, {})).abs().amax(-1)[0] > 1e-6


def test_shifted_windows_cross_window_borders_but_never_join_the_grids_two_ends():
    grid = (8, 1, 1)  # windows of 4 along depth; a shift of 2
    plain = SwinBlock(8, 2, (4, 1, 1), shifted=False, mlp_ratio=2.0, drop_path=0.0)
    shifted = SwinBlock(8, 2, (4, 1, 1), shifted=True, mlp_ratio=2.0, drop_path=0.0)
    shifted.load_state_dict(plain.state_dict())
    # Unshifted: token 3 reaches its window, 0-3, and nothing beyond.
    assert reach(plain, grid, (3, 0, 0))[:, 0, 0].tolist() == [True] * 4 + [False] * 4
    # Shifted by two: the windows are 0-1, 2-5 and 6-7 (a cyclic shift would join 6-7 with 0-1).
    assert reach(shifted, grid, (3, 0, 0))[:, 0, 0].tolist() == [False] * 2 + [True] * 4 + [False] * 2
    assert reach(shifted, grid, (0, 0, 0))[:, 0, 0].tolist() == [True] * 2 + [False] * 6
    assert reach(shifted, grid, (7, 0, 0))[:, 0, 0].tolist() == [False] * 6 + [True] * 2


def test_a_tiny_transmorph_learns_one_pair(tmp_path):
    dataset = blobs(val=0)
    training, logged = job(tmp_path, dataset, steps=100, learning_rate=3e-3, augment=None,
                           lr_schedule="constant", warmup_steps=0)
    weights = TransMorph().train(training)
    losses = [value for split, name, value in logged if (split, name) == ("train", "loss")]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.1
    fixed, moving = dataset.subjects("train")
    disp = TransMorph().register(dataset.load(fixed).image, dataset.load(moving).image,
                                 training.params, CPU, weights=weights)
    identity = mean_dice(dataset, fixed, moving, np.zeros((3, *dataset.shape), np.float32))
    assert mean_dice(dataset, fixed, moving, disp) > identity + 0.15


@pytest.mark.parametrize("integration_steps", [4, 0], ids=["velocity", "displacement"])
def test_transmorph_registers_on_a_grid_that_is_no_multiple_of_its_patches_or_windows(
        tmp_path, integration_steps):
    dataset = blobs(shape=(13, 18, 11))
    training, _ = job(tmp_path, dataset, steps=2, integration_steps=integration_steps,
                      window=[3, 2, 5])
    weights = TransMorph().train(training)
    disp = TransMorph().register(dataset.load("s0").image, dataset.load("s1").image,
                                 training.params, CPU, weights=weights)
    assert disp.shape == (3, 13, 18, 11) and torch.isfinite(disp).all()


def test_transmorph_weights_are_refused_by_another_method_or_architecture(tmp_path):
    dataset = blobs()
    training, _ = job(tmp_path, dataset, steps=1)
    weights = TransMorph().train(training)
    image = dataset.load("s0").image
    with pytest.raises(WeightsMismatch, match="transmorph"):
        VoxelMorph().register(image, image, {**TINY}, CPU, weights=weights)
    with pytest.raises(WeightsMismatch, match="embed_dim"):
        TransMorph().register(image, image, {**training.params, "embed_dim": 16}, CPU,
                              weights=weights)
