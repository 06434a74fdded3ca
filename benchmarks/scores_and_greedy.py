"""The walking skeleton's figures, side by side in one run.

1. Dice and HD95 on a real FreeSurfer aseg: warpbench's one-pass scores against naive loops (Dice
   with one full-volume comparison per label, HD95 with full-volume surfaces and distance
   transforms per label). The "moved" map is the aseg pulled back through a known smooth random
   field, so both sides of every label are present.
2. greedy against identity, seconds per pair and mean Dice, on a synthetic dataset and on the
   hippocampus data, as datasets.yaml declares them.

Run from the repository root: ``.venv/bin/python benchmarks/scores_and_greedy.py`` (needs
../shared/data; ``--pairs N`` sets the pairs per dataset, default 10).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from warpbench.config import build_dataset, load_config
from warpbench.executors import default_device
from warpbench.metrics import dice, hd95
from warpbench.plugins import load_registry
from warpbench.runner import evaluate_pair
from warpbench.spatial import spacing_from_affine, warp_labels

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "brain"
GREEDY_DATASETS = ("synth-distinct", "hippocampus")
LABEL_MAP = DATA / "subject_a_labels.nii.gz"
EVAL_LABELS = DATA / "eval_labels.txt"
PEAK_DISPLACEMENT = 2.0  # voxels, per component
SMOOTHING = 8.0  # voxels, Gaussian sigma of the random field
SEED = 0


def smooth_random_field(shape, rng: np.random.Generator) -> np.ndarray:
    """A (3, D, H, W) float32 field of Gaussian-filtered noise scaled to PEAK_DISPLACEMENT."""
    field = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(shape), SMOOTHING) for _ in range(3)]
    )
    return (field * (PEAK_DISPLACEMENT / np.abs(field).max())).astype(np.float32)


def naive_dice(fixed: np.ndarray, moved: np.ndarray, labels: list[int]) -> np.ndarray:
    scores = []
    for label in labels:
        a, b = fixed == label, moved == label
        scores.append(2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b)))
    return np.array(scores)


def naive_hd95(fixed: np.ndarray, moved: np.ndarray, labels: list[int], spacing) -> np.ndarray:
    scores = []
    for label in labels:
        a, b = fixed == label, moved == label
        surface_a = a & ~ndimage.binary_erosion(a, border_value=0)
        surface_b = b & ~ndimage.binary_erosion(b, border_value=0)
        a_to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
        b_to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
        scores.append(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))
    return np.array(scores)


def best_time(function, repeats: int) -> tuple[float, np.ndarray]:
    """The fastest of ``repeats`` wall-clock runs, and the result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def benchmark_scores() -> None:
    if not (LABEL_MAP.is_file() and EVAL_LABELS.is_file()):
        sys.exit(f"benchmark data not found: expected {LABEL_MAP.resolve()} and {EVAL_LABELS.resolve()}")
    image = nib.load(LABEL_MAP)
    fixed = np.asarray(image.dataobj)
    spacing = spacing_from_affine(image.affine)
    labels = [int(line) for line in EVAL_LABELS.read_text().split()]
    disp = smooth_random_field(fixed.shape, np.random.default_rng(SEED))
    moved = warp_labels(fixed, disp)

    # The naive HD95 runs a full-volume distance transform twice per label: minutes per run.
    runs = [
        ("Dice", 3, 3, lambda: dice(fixed, moved, labels), lambda: naive_dice(fixed, moved, labels)),
        (
            "HD95 (mm)",
            3,
            1,
            lambda: hd95(fixed, moved, labels, spacing),
            lambda: naive_hd95(fixed, moved, labels, spacing),
        ),
    ]
    print(f"label map {fixed.shape} {fixed.dtype}, spacing {spacing} mm, {len(labels)} labels")
    print(f"moved by a smooth random field: peak {PEAK_DISPLACEMENT} voxels, sigma {SMOOTHING}, seed {SEED}")
    print()
    header = f"{'score':<10} {'mean':>7} {'warpbench s':>12} {'naive s':>9} {'speed-up':>9} {'max |diff|':>11} {'agree':>6}"
    print(header)
    print("-" * len(header))
    for name, fast_repeats, naive_repeats, fast, naive in runs:
        fast_time, fast_scores = best_time(fast, fast_repeats)
        naive_time, naive_scores = best_time(naive, naive_repeats)
        difference = np.max(np.abs(fast_scores - naive_scores))
        agree = "yes" if np.allclose(fast_scores, naive_scores, rtol=1e-12, atol=0) else "NO"
        print(
            f"{name:<10} {np.mean(fast_scores):7.4f} {fast_time:12.3f} {naive_time:9.3f} "
            f"{naive_time / fast_time:8.1f}x {difference:11.1e} {agree:>6}"
        )
    print()
    print("times: best of 3 runs, except the naive HD95 (1 run); agreement: max over the labels")


def benchmark_greedy(pairs: int) -> None:
    registry = load_registry(strict=True)
    config = load_config(REPO / "datasets.yaml")
    device = default_device()
    print(f"\nregistration on {device}, first {pairs} test pairs per dataset")
    header = f"{'dataset':<16} {'method':<9} {'mean Dice':>9} {'folding %':>9} {'s/pair':>8}"
    print(header)
    print("-" * len(header))
    for name in GREEDY_DATASETS:
        dataset = build_dataset(config, name, registry.dataset_kinds)
        available, reason = dataset.availability()
        if not available:
            print(f"{name:<16} skipped: {reason}")
            continue
        rows = {}
        for method_name in ("identity", "greedy"):
            method = registry.methods[method_name]
            results = []
            for pair in dataset.pairs("test")[:pairs]:
                fixed, moving = dataset.load(pair.fixed), dataset.load(pair.moving)
                results.append(evaluate_pair(method, method.presets["default"], dataset, fixed, moving, device))
            failed = [r.error for r in results if r.status != "ok"]
            if failed:
                sys.exit(f"{method_name} failed on {name}: {failed[0]}")
            rows[method_name] = (
                np.mean([r.mean_dice for r in results]),
                np.mean([r.folding_percent for r in results]),
                np.mean([r.seconds for r in results]),
            )
        for method_name, (mean_dice, folding, seconds) in rows.items():
            print(f"{name:<16} {method_name:<9} {mean_dice:9.3f} {folding:9.4f} {seconds:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    benchmark_scores()
    benchmark_greedy(args.pairs)


if __name__ == "__main__":
    main()
