"""Pairs registered one by one against the same pairs in batches, side by side in one run.

For greedy and syn (``default`` presets) on the first test pairs of a dataset of datasets.yaml
(``hippocampus``, else ``synth-distinct``), through the executor the scheduler uses: seconds per
pair, peak memory per pair and mean Dice, one by one (``max_batch`` 1) and in batches (the
method's own ``max_batch`` on this device, or ``--batch N``), and the speed-up. On a GPU a batch
fills the card better; on 2 CPU cores batches of 2 were 1.4x (greedy) and 1.2x (syn) faster, but
dense methods batch only on CUDA, so that a CPU pair's seconds stay its own. Mean Dice should
agree to float rounding.

    .venv/bin/python benchmarks/batching.py [--dataset hippocampus] [--pairs 16] [--batch 8]
        [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from warpbench.config import build_dataset, load_config
from warpbench.executors import InProcessExecutor, RunWork, default_device
from warpbench.plugins import load_registry

REPO = Path(__file__).resolve().parents[1]
METHODS = ("greedy", "syn")


class FixedBatch:
    """A method seen through a set batch size (1: one by one), everything else its own."""

    def __init__(self, method, size: int | None):
        self._method, self._size = method, size

    def __getattr__(self, name):
        return getattr(self._method, name)

    def max_batch(self, shape, params, device) -> int:
        return self._size if self._size else self._method.max_batch(shape, params, device)


def measure(method, dataset, pairs, device, size: int | None) -> dict[str, float]:
    batched, params = FixedBatch(method, size), method.presets["default"]
    executor = InProcessExecutor(device)
    for subject_id in {id_ for pair in pairs for id_ in (pair.fixed, pair.moving)}:
        executor.subject(dataset, subject_id)  # read every subject before the clock starts
    grid = executor.subject(dataset, pairs[0].fixed).image.shape  # cached: no second read
    list(executor.evaluate(RunWork(batched, params, dataset, pairs[:1])))  # warm-up
    start = time.perf_counter()
    results = list(executor.evaluate(RunWork(batched, params, dataset, pairs)))
    wall = time.perf_counter() - start
    ok = [r for r in results if r.status == "ok"]
    return {"batch": batched.max_batch(grid, params, device),
            "ok": len(ok), "wall per pair": wall / len(pairs),
            "peak MB per pair": float(np.mean([r.peak_memory_mb for r in ok])),
            "dice": float(np.mean([r.mean_dice for r in ok]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None, help="default: hippocampus, else synth-distinct")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=None, help="default: the method's max_batch")
    parser.add_argument("--device", default=None, help="default: cuda when there is one")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    registry, config = load_registry(), load_config(REPO / "datasets.yaml")
    names = [args.dataset] if args.dataset else ["hippocampus", "synth-distinct"]
    for name in names:
        dataset = build_dataset(config, name, registry.dataset_kinds)
        if dataset.availability()[0]:
            break
    pairs = dataset.pairs("test")[: args.pairs]
    print(f"{len(pairs)} pairs of {dataset.name} on {device}")
    print(f"{'method':<8} {'batch':>5} {'ok':>3} {'s/pair':>8} {'MB/pair':>8} {'Dice':>6} "
          f"{'speed-up':>8}")
    for name in METHODS:
        method = registry.methods[name]
        alone = measure(method, dataset, pairs, device, 1)
        batched = measure(method, dataset, pairs, device, args.batch)
        for row in (alone, batched):
            speedup = alone["wall per pair"] / row["wall per pair"]
            print(f"{name:<8} {row['batch']:>5} {row['ok']:>3} {row['wall per pair']:>8.2f} "
                  f"{row['peak MB per pair']:>8.0f} {row['dice']:>6.3f} {speedup:>7.2f}x")


if __name__ == "__main__":
    main()
