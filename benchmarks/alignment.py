"""Issue 15 items 6 and 7 measured: the classical methods on scans far from aligned, and on an
anisotropic scan at its native spacing versus resampled to 1 mm.

- ``misaligned``: the first test pairs of datasets.yaml's hippocampus data, on a 64x80x64 grid
  that holds the moved subject, as they are and with the moving subject zoomed by 1.15, rotated
  by 20 degrees about array axis 0 and shifted by 8 mm (image linearly, labels by nearest
  neighbour). Each method's ``default`` preset runs on a dataset that is not pre-aligned, so it
  starts from the affine fit; the aligned pair is also run as pre-aligned (no affine start).
- ``anisotropic``: the same test pairs on the dataset's 48x64x48 grid (pre-aligned, so that only
  the spacing differs), each acquired at 1x1x3 mm (slabs of three slices along the last axis
  averaged, labels at each slab's middle slice): registered at that native spacing, resampled
  back to 1 mm (with the 1 mm labels), and at the native grid with the spacing ignored (an
  affine of 1 mm voxels).

Every pair goes through warpbench.runner.evaluate_pair, as a run scores it; the data are built
by the helpers of tests/test_spacing_alignment.py, which tests the same on fewer pairs. Each
finished registration is appended to benchmarks/measured/alignment.jsonl (with the method's
version and parameters), and a re-run takes it from there: ``--fresh`` measures again.

    .venv/bin/python benchmarks/alignment.py [--parts misaligned,anisotropic]
        [--methods greedy,syn,demons] [--pairs 5] [--fresh]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_spacing_alignment import (  # noqa: E402
    WIDE_GRID,
    hippocampus,
    misaligned,
    resampled_back,
    spacing_ignored,
    thick_slices,
)
from classical import PairCache  # noqa: E402
from warpbench.plugins import load_registry  # noqa: E402
from warpbench.runner import evaluate_pair  # noqa: E402

ROOT = REPO.parent / "shared" / "data" / "hippocampus"
CACHE = REPO / "benchmarks" / "measured" / "alignment.jsonl"
PARTS = ("misaligned", "anisotropic")
METHODS = ("greedy", "syn", "demons")
CASES = {"misaligned": ("aligned, pre-aligned", "aligned", "misaligned"),
         "anisotropic": ("isotropic 1 mm", "native 1x1x3 mm", "spacing ignored")}


def cases_of(part: str, pair, datasets):
    """(case, dataset, fixed, moving) for each of the part's :data:`CASES`."""
    if part == "misaligned":
        aligned, loose = datasets["wide-pre-aligned"], datasets["wide"]
        fixed, moving = loose.load(pair.fixed), loose.load(pair.moving)
        return [(CASES[part][0], aligned, fixed, moving), (CASES[part][1], loose, fixed, moving),
                (CASES[part][2], loose, fixed, misaligned(moving))]
    dataset = datasets["pre-aligned"]
    fixed, moving = dataset.load(pair.fixed), dataset.load(pair.moving)
    thick_fixed, thick_moving = thick_slices(fixed), thick_slices(moving)
    return [(CASES[part][0], dataset, resampled_back(thick_fixed, fixed),
             resampled_back(thick_moving, moving)),
            (CASES[part][1], dataset, thick_fixed, thick_moving),
            (CASES[part][2], dataset, spacing_ignored(thick_fixed), spacing_ignored(thick_moving))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {', '.join(PARTS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help="method names, default preset")
    parser.add_argument("--pairs", type=int, default=5, help="hippocampus test pairs")
    parser.add_argument("--fresh", action="store_true", help="measure again, ignoring the file")
    args = parser.parse_args()
    if not (ROOT / "imagesTr").is_dir():
        print(f"no hippocampus data at {ROOT}", file=sys.stderr)
        return 1
    registry = load_registry()
    datasets = {"wide": hippocampus(ROOT, grid=WIDE_GRID),
                "wide-pre-aligned": hippocampus(ROOT, grid=WIDE_GRID, pre_aligned=True),
                "pre-aligned": hippocampus(ROOT, pre_aligned=True)}
    pairs = datasets["pre-aligned"].pairs("test")[:args.pairs]
    measured = PairCache(CACHE, args.fresh)
    device = torch.device("cpu")
    for part in [p for p in args.parts.split(",") if p]:
        names = CASES[part]
        print(f"\n{part}: mean Dice per pair ({', '.join(names)}), seconds")
        table = {}
        for name in ["identity", *args.methods.split(",")]:
            method = registry.methods[name]
            params = method.presets["default"]
            rows = []
            for pair in pairs:
                row = []
                for case, dataset, fixed, moving in cases_of(part, pair, datasets):
                    key = json.dumps([part, case, name, method.version, params, dataset.name,
                                      list(dataset.grid), dataset.pre_aligned, pair.fixed,
                                      pair.moving], sort_keys=True)
                    result = measured.get(key)
                    if result is None:
                        result = evaluate_pair(method, params, dataset, fixed, moving, device)
                        measured.add(key, result)
                    row.append(result)
                rows.append(row)
                print(f"  {name:<8} {pair.fixed} {pair.moving}  "
                      + "  ".join(f"{r.mean_dice:.4f}" for r in row)
                      + "   " + " ".join(f"{r.seconds:.1f}" for r in row), flush=True)
            table[name] = np.array([[r.mean_dice for r in row] for row in rows])
        print(f"\n{part}, mean over {len(pairs)} pairs:")
        print(f"  {'method':<8} " + " ".join(f"{n:>22}" for n in names) + f" {'2nd - 1st':>10}"
              f" {'3rd - 2nd':>10}")
        for name, dice in table.items():
            means = dice.mean(0)
            print(f"  {name:<8} " + " ".join(f"{m:>22.4f}" for m in means)
                  + f" {means[1] - means[0]:>+10.4f} {means[2] - means[1]:>+10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
