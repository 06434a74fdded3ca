"""Classical methods side by side, in one process, on the same pairs, scored the same way.

warpbench's own greedy and syn (their default and literature presets) against ANTs SyN (CC, as
ANTs recommends, and SyNOnly with mean squares, as the TransMorph paper ran it) and FireANTs'
greedy and SyN, each through its plugin and scored by warpbench.runner.evaluate_pair, on:

- ``hippocampus``: the first test pairs of datasets.yaml's hippocampus dataset;
- ``brain-half`` / ``brain-full``: the brain of ../shared/data/brain moved by known random smooth
  diffeomorphisms (a random velocity on a coarse grid, smoothed, integrated by scaling and
  squaring; image warped linearly, labels by nearest neighbour), at 80x96x112 (2 mm) and at the
  full 160x192x224 (1 mm); one velocity per pair, the same physical deformation at both sizes;
- ``synthetic``: a few test pairs of each synth-* dataset.

Per method and data set it prints mean Dice, HD95, folding %, SDlogJ, seconds and peak memory per
pair, and Dice and time relative to ANTs SyN (CC) on the same pairs: timings are noisy on a
shared machine, ratios within one sitting much less so. A method whose plugin is not installed, or
whose package cannot be imported here, is reported and skipped; the peers need ``make peers`` and
this script run with ``.venv-peers/bin/python``.

The full run takes about 5 hours on 2 CPU cores (ANTs SyN alone took 51 s per hippocampus
pair, 5 min per half-size brain and 43 per full-size one), so every finished pair is
appended to benchmarks/measured/classical.jsonl with the machine's load when it ran, and a re-run
takes it from there instead of registering again: a run interrupted, or spread over sittings on
machines that keep no files (the file is tracked by git), loses nothing. The table says how many
pairs came from that file; ``--fresh`` measures everything again. Pairs run method by method, so a
sitting too short for the full-size brain (about 70 min per deformation here) takes it one
deformation at a time, ``--brain-pairs 1``, then 2, then 3: deformation k is the same whatever the
count, and each run finds the ones before it in the file.

    .venv-peers/bin/python benchmarks/classical.py [--quick] [--parts hippocampus,brain-half]
        [--pairs 20] [--brain-pairs 3] [--synthetic-pairs 3] [--methods ants-syn:default,...]
        [--fresh]
"""

from __future__ import annotations

import os

# Before torch and ITK load: idle OpenMP threads must not spin on a shared machine (they slowed
# FireANTs 13-fold here), and ITK (ANTs) gets as many threads as there are cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(os.cpu_count() or 1))
# FireANTs' SyN inverts its reverse warp with a progress bar that no argument switches off.
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy import ndimage  # noqa: E402

from warpbench.config import build_dataset, load_config  # noqa: E402
from warpbench.datasets import Dataset, Pair, Subject  # noqa: E402
from warpbench.executors import default_device  # noqa: E402
from warpbench.plugins import load_registry  # noqa: E402
from warpbench.runner import PairResult, evaluate_pair  # noqa: E402
from warpbench.spatial import compose, warp_image, warp_labels  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BRAIN = REPO / ".." / "shared" / "data" / "brain"
CACHE = REPO / "benchmarks" / "measured" / "classical.jsonl"
METHODS = ("greedy:default", "greedy:literature", "syn:default", "syn:literature",
           "ants-syn:default", "ants-syn:literature", "fireants-greedy:default",
           "fireants-syn:default")
REFERENCE = "ants-syn:default"
PARTS = ("hippocampus", "brain-half", "brain-full", "synthetic")
SYNTHETIC = ("synth-distinct", "synth-grouped", "synth-inverted", "synth-degraded")
# The known deformations: a velocity drawn on a coarse grid of CONTROL_GRID points, smoothed over
# CONTROL_SIGMA of its points, scaled to at most MAX_VELOCITY_MM, integrated in SQUARINGS steps.
CONTROL_GRID = (10, 12, 14)
CONTROL_SIGMA = 1.0
MAX_VELOCITY_MM = 8.0
SQUARINGS = 7
SEED = 0


class InMemoryDataset(Dataset):
    """Subjects held in memory: the deformed brains, so the runner scores them like any dataset."""

    kind = "in-memory"
    aligned_by_default = True  # deformed copies of one subject: nothing to align affinely

    def __init__(self, name: str, options: dict, subjects: list[Subject],
                 labels: dict[int, str], test_pairs: list[Pair]):
        super().__init__(name, options, REPO)  # the options feed the fingerprint
        self.labels = labels
        self._subjects = {s.id: s for s in subjects}
        self._test_pairs = test_pairs

    def all_subjects(self) -> list[str]:
        return list(self._subjects)

    def load(self, subject_id: str) -> Subject:
        return self._subjects[subject_id]

    def pairs(self, split: str = "test") -> list[Pair]:
        return self._test_pairs if split == "test" else []


def random_velocity(rng: np.random.Generator) -> np.ndarray:
    """A smooth (3, *CONTROL_GRID) velocity in mm, at most MAX_VELOCITY_MM per component."""
    velocity = np.stack([ndimage.gaussian_filter(rng.standard_normal(CONTROL_GRID), CONTROL_SIGMA)
                         for _ in range(3)])
    return velocity * (MAX_VELOCITY_MM / np.abs(velocity).max())


def integrate(velocity_mm: np.ndarray, shape, spacing: float) -> torch.Tensor:
    """The voxel displacement (3, *shape) of exp(velocity): the velocity upsampled to the grid
    (corner-aligned, so it is one physical field at every resolution), then scaling and
    squaring, which keeps the map diffeomorphic."""
    velocity = torch.as_tensor(velocity_mm / spacing, dtype=torch.float32)[None]
    disp = F.interpolate(velocity, size=tuple(shape), mode="trilinear", align_corners=True)
    disp = disp / 2**SQUARINGS
    for _ in range(SQUARINGS):
        disp = compose(disp, disp)
    return disp[0]


def deformed_brains(pairs: int, half: bool) -> InMemoryDataset:
    """The brain subject and ``pairs`` known smooth deformations of it, as a dataset whose test
    pairs register each deformed copy back onto the original."""
    image = nib.load(BRAIN / "subject_a_image.nii.gz")
    volume = np.asarray(image.dataobj, dtype=np.float32)
    labels = np.asarray(nib.load(BRAIN / "subject_a_labels.nii.gz").dataobj).astype(np.int32)
    affine = np.array(image.affine, dtype=np.float64)
    if half:  # 2 mm: block means for the image, every other voxel for the labels
        volume = F.avg_pool3d(torch.from_numpy(volume)[None, None], 2)[0, 0].numpy()
        labels = np.ascontiguousarray(labels[::2, ::2, ::2])
        affine[:3, :3] *= 2
    spacing = 2.0 if half else 1.0
    evaluated = [int(v) for v in (BRAIN / "eval_labels.txt").read_text().split()]
    original = Subject("original", volume, labels, affine)
    subjects, test_pairs = [original], []
    rng = np.random.default_rng(SEED)
    for k in range(pairs):
        disp = integrate(random_velocity(rng), volume.shape, spacing)
        subjects.append(Subject(f"deformed-{k}", warp_image(volume, disp),
                                warp_labels(labels, disp), affine))
        test_pairs.append(Pair("original", f"deformed-{k}"))
    name = f"brain-{'half' if half else 'full'}"
    recipe = {"half": half, "seed": SEED, "control_grid": CONTROL_GRID,
              "control_sigma": CONTROL_SIGMA, "max_velocity_mm": MAX_VELOCITY_MM,
              "squarings": SQUARINGS}
    return InMemoryDataset(name, recipe, subjects, {v: str(v) for v in evaluated}, test_pairs)


def datasets_for(part: str, args, registry, config) -> list[tuple[Dataset, list[Pair]]]:
    if part in ("brain-half", "brain-full"):
        dataset = deformed_brains(args.brain_pairs, half=part == "brain-half")
        return [(dataset, dataset.pairs())]
    names = ["hippocampus"] if part == "hippocampus" else list(SYNTHETIC)
    count = args.pairs if part == "hippocampus" else args.synthetic_pairs
    found = []
    for name in names:
        dataset = build_dataset(config, name, registry.dataset_kinds)
        available, reason = dataset.availability()
        if not available:
            print(f"skipping dataset {name}: {reason}", file=sys.stderr)
            continue
        found.append((dataset, dataset.pairs("test")[:count]))
    return found


def usable_methods(specs, registry) -> list[tuple[str, object, dict]]:
    """(spec, method, params) for every spec that can run here; the others are reported."""
    usable = []
    for spec in specs:
        name, _, preset = spec.partition(":")
        method = registry.methods.get(name)
        if method is None:
            print(f"skipping {spec}: no method {name!r} is registered here", file=sys.stderr)
            continue
        if preset not in method.presets:
            print(f"skipping {spec}: {name!r} has no preset {preset!r}", file=sys.stderr)
            continue
        available, reason = method.availability()
        if not available:
            print(f"skipping {spec}: {reason}", file=sys.stderr)
            continue
        usable.append((spec, method, method.presets[preset]))
    return usable


class PairCache:
    """The pairs measured so far, one JSON line each, keyed by everything that decides the
    result: data set fingerprint, pair, method, version, parameters and device."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.exists() and not fresh:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError):  # a line cut short by a kill
                    print(f"{path}:{number}: unreadable line ignored", file=sys.stderr)

    @staticmethod
    def key(dataset: Dataset, pair: Pair, spec: str, method, params: dict, device) -> str:
        return json.dumps([dataset.name, dataset.fingerprint(), pair.fixed, pair.moving, spec,
                           method.version, params, device.type], sort_keys=True, default=str)

    def get(self, key: str) -> PairResult | None:
        entry = self.entries.get(key)
        return PairResult(**entry["result"]) if entry else None

    def load_average(self, key: str) -> float:
        """The 1-minute load average when the pair finished (what else ran beside it)."""
        return self.entries[key]["load_average"]

    def add(self, key: str, result: PairResult) -> None:
        fields = {k: v for k, v in dataclasses.asdict(result).items() if k != "displacement"}
        entry = {"key": key, "result": fields, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "load_average": os.getloadavg()[0], "torch_threads": torch.get_num_threads()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(entry, default=float) + "\n")
        self.entries[key] = entry


def summarise(results, loads: list[float], cached: int = 0) -> dict[str, float]:
    ok = [r for r in results if r.status == "ok"]

    def mean(field):
        values = [getattr(r, field) for r in ok if getattr(r, field) is not None]
        return float(np.mean(values)) if values else float("nan")

    return {"ok": len(ok), "n": len(results), "cached": cached,
            "load": float(np.mean(loads)) if loads else float("nan"),
            "dice": mean("mean_dice"), "hd95": mean("mean_hd95"),
            "folding": mean("folding_percent"), "sdlogj": mean("sdlogj"),
            "seconds": mean("seconds"), "memory": mean("peak_memory_mb")}


def print_table(rows) -> None:
    """One line per (data set, method), with Dice and time relative to the reference method on
    the same data set."""
    header = (f"{'data set':<15} {'method':<26} {'pairs':>5} {'Dice':>6} {'HD95':>6} "
              f"{'fold%':>7} {'SDlogJ':>7} {'s/pair':>8} {'MB/pair':>8} {'Dice/ANTs':>9} "
              f"{'time/ANTs':>9} {'cached':>6} {'load':>5}")
    print(header)
    print("-" * len(header))
    for dataset, by_method in rows.items():
        reference = by_method.get(REFERENCE)
        for spec, s in by_method.items():
            dice_ratio = time_ratio = "-"
            if reference and reference["ok"] and s["ok"]:
                dice_ratio = f"{s['dice'] / reference['dice']:.3f}"
                time_ratio = f"{s['seconds'] / reference['seconds']:.2f}x"
            print(f"{dataset:<15} {spec:<26} {s['ok']:>2}/{s['n']:<2} {s['dice']:>6.3f} "
                  f"{s['hd95']:>6.2f} {s['folding']:>7.3f} {s['sdlogj']:>7.3f} "
                  f"{s['seconds']:>8.1f} {s['memory']:>8.0f} {dice_ratio:>9} {time_ratio:>9} "
                  f"{s['cached']:>6} {s['load']:>5.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help="NAME:PRESET, comma-separated")
    parser.add_argument("--pairs", type=int, default=20, help="hippocampus test pairs")
    parser.add_argument("--brain-pairs", type=int, default=3, help="known deformations per size")
    parser.add_argument("--synthetic-pairs", type=int, default=3, help="pairs per synthetic set")
    parser.add_argument("--quick", action="store_true",
                        help="2 hippocampus pairs, 1 deformation, 1 pair per synthetic set")
    parser.add_argument("--device", default=None, help="default: cuda when there is one")
    parser.add_argument("--fresh", action="store_true",
                        help=f"measure every pair again instead of reading {CACHE.relative_to(REPO)}")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.brain_pairs, args.synthetic_pairs = 2, 1, 1
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")

    registry = load_registry()
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    config = load_config(REPO / "datasets.yaml")
    device = torch.device(args.device) if args.device else default_device()
    methods = usable_methods([m for m in args.methods.split(",") if m], registry)
    cache = PairCache(CACHE, args.fresh)
    print(f"device {device}, torch threads {torch.get_num_threads()}, ITK threads "
          f"{os.environ['ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS']}; methods: "
          f"{', '.join(spec for spec, _, _ in methods)}", file=sys.stderr)

    rows: dict[str, dict[str, dict]] = {}
    failures = []
    try:
        for part in parts:
            for dataset, pairs in datasets_for(part, args, registry, config):
                rows[dataset.name] = {}
                for spec, method, params in methods:
                    results, loads, cached = [], [], 0
                    for i, pair in enumerate(pairs, 1):
                        key = cache.key(dataset, pair, spec, method, params, device)
                        result = cache.get(key)
                        if result is None:
                            result = evaluate_pair(method, params, dataset,
                                                   dataset.load(pair.fixed),
                                                   dataset.load(pair.moving), device, seed=SEED)
                            if result.status == "ok":  # a failure is tried again next time
                                cache.add(key, result)
                            outcome = (f"Dice {result.mean_dice:.3f}" if result.status == "ok"
                                       else f"FAILED: {result.error}")
                            print(f"[{dataset.name}] {spec} pair {i}/{len(pairs)}: {outcome}, "
                                  f"{result.seconds or 0:.1f} s", file=sys.stderr, flush=True)
                        else:
                            cached += 1
                        results.append(result)
                        if result.status == "ok":
                            loads.append(cache.load_average(key))
                        rows[dataset.name][spec] = summarise(results, loads, cached)
                        if result.status != "ok":
                            failures.append(f"{dataset.name} {spec} {pair}: {result.error}")
    except KeyboardInterrupt:  # a run in pieces: Ctrl-C still prints what was measured
        print("interrupted: the table holds the pairs finished so far", file=sys.stderr)
    print(f"\n{len(methods)} methods on {device}; Dice and HD95 (mm) are means over the pairs of "
          f"each pair's mean over the data set's labels; fold% = % of voxels with det J <= 0; "
          f"MB/pair = peak memory growth ({'CUDA allocation' if device.type == 'cuda' else 'RSS'})"
          f"; ratios are to {REFERENCE} on the same data set; cached = pairs read from "
          f"{CACHE.relative_to(REPO)} (measured in an earlier sitting); load = mean 1-minute "
          f"load average when its pairs finished ({os.cpu_count()} cores here)\n")
    print_table(rows)
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
