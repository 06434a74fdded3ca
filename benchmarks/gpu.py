"""GPU figures (issue 20): the CUDA tests, classical seconds per pair alone and batched, and the
networks' training and inference rates, in one JSON file rewritten after every measurement.

Parts (``--part``), each run as its own process by benchmarks/gpu.sh under its own time limit,
each adding its section to the one file ``--out``, so that a part cut short loses only the
measurement in flight (its ``status`` then stays ``running``):

- ``tests``: pytest ``-k "cuda or gpu"`` on the files holding the tests that skip without CUDA
  (CPU/GPU agreement of greedy, syn and demons, and the batch size a GPU allows; one CPU test's
  name matches too): counts and each test's outcome. No network test needs CUDA yet.
- ``classical``: ``greedy`` and ``syn`` under ``default`` and ``fast`` on the brain of
  ../shared/data/brain (160x192x224) registered back from its known smooth deformations
  (benchmarks/classical.py's ``deformed_brains``), through the methods' ``register_batch`` timed
  by ``warpbench.runner.run_with_limit`` as the platform times a pair: seconds per pair alone (one
  pair a call, two calls) and in batches of 2, 4 and 8 (one call each: its seconds over its
  pairs), peak memory of the call (``torch.cuda.max_memory_allocated`` on a GPU, growth of
  resident memory on the CPU) and mean Dice over the labels of eval_labels.txt. Only Dice is
  scored (not HD95), so scoring stays a small part of the step. Each method's first call is
  recorded apart (``first_call``: CUDA's start-up is in it).
- ``learning``: per network (voxelmorph, lkunet, transmorph; untrained, as speed does not depend
  on the weights) with and without mixed precision: training steps per second (``default``
  preset, batch 1, after two warm-up steps; benchmarks/learning.py's ``train_steps_per_second``)
  on the hippocampus dataset (48x64x48) and on the brain (two deformed copies as training
  subjects), and inference (benchmarks/learning.py's ``registration_figures``): ms per
  hippocampus pair (median of five after a warm-up) and one registration of the brain onto
  itself with its peak memory.
  Without mixed precision means ``warpbench_learning.training.autocast_for`` replaced by no
  autocast for the measurement; ``precision`` records what autocast_for gives (bfloat16 or float16
  on CUDA, float32 elsewhere).
- ``table``: prints the file as tables.

On the GPU machine (device tool), after ``bash benchmarks/gpu_wheels.sh`` here::

    run(command="bash benchmarks/gpu.sh", carry=[".gpu-carry"], timeout_s=480)

The dry run, on the CPU with the smallest sizes (the brain at a quarter, 40x48x56, batches 1 and
2, one pair alone, two training steps), took 72 to 107 s on 2 shared CPU cores::

    OUT=/tmp/gpu-dry PYTHON=.venv/bin/python bash benchmarks/gpu.sh --dry-run

Time budget (benchmarks/gpu.sh, 460 s in all): installing at most 60 s; ``tests`` at most 75 s;
``classical`` everything left but 130 s (195 to 300 s); ``learning`` everything left but 10 s (at
least 120 s); ``table`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock
from xml.etree import ElementTree

import numpy as np
import torch
import torch.nn.functional as F

# Sibling scripts: this folder is sys.path[0] when the script runs.
from classical import InMemoryDataset, deformed_brains
from learning import registration_figures, train_steps_per_second
from warpbench import metrics
from warpbench.config import build_dataset, load_config
from warpbench.datasets import Subject
from warpbench.methods import Grid, grid_keyword
from warpbench.plugins import load_registry
from warpbench.runner import run_with_limit
from warpbench.spatial import validate_displacement, warp_labels
from warpbench_learning import training
from warpbench_learning.checkpoint import save_weights
from warpbench_learning.model import build_network

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tests", "classical", "learning", "table")
CUDA_TESTS = ("tests/test_classical.py", "tests/test_syn.py", "tests/test_demons.py",
              "tests/test_batching.py")
#: In this order, so that a part cut short has the default presets first.
CLASSICAL = (("syn", "default"), ("greedy", "default"), ("syn", "fast"), ("greedy", "fast"))
NETWORKS = ("voxelmorph", "lkunet", "transmorph")
#: (batch sizes, pairs registered alone, timed training steps) at full size and with --smallest.
FULL = ((1, 2, 4, 8), 2, 20)
SMALLEST = ((1, 2), 1, 2)


class Figures:
    """The JSON file: the device, and one section per part; written whole after every change
    (to a temporary file first, so a kill never leaves half a file)."""

    def __init__(self, path: Path, device: torch.device | None):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}
        if device is not None:
            self.data["device"] = describe(device)

    def start(self, part: str) -> dict:
        section = {"command": " ".join([sys.executable, *sys.argv]),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running"}
        self.data[part] = section
        self.save()
        return section

    def finish(self, section: dict) -> None:
        section.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.save()

    def add(self, section: dict, row: dict) -> dict:
        section.setdefault("rows", []).append(row)
        self.save()
        return row

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.data, indent=1))
        os.replace(partial, self.path)


def describe(device: torch.device) -> dict:
    info = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "host": platform.node(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def failure(exc: Exception) -> str:
    torch.cuda.empty_cache()  # after running out of memory, the next measurement starts clean
    return f"{type(exc).__name__}: {exc}"


# --- data ----------------------------------------------------------------------------------------
def halved(subject: Subject) -> Subject:
    """``subject`` at twice the voxel size, as classical.deformed_brains halves the brain: block
    means for the image, every other voxel for the labels."""
    image = F.avg_pool3d(torch.from_numpy(subject.image)[None, None], 2)[0, 0].numpy()
    affine = subject.affine.copy()
    affine[:3, :3] *= 2
    labels = np.ascontiguousarray(subject.labels[::2, ::2, ::2])
    return Subject(subject.id, image, labels, affine)


def brains(count: int, smallest: bool) -> InMemoryDataset:
    """The full-size brain and ``count`` known deformations of it; with ``smallest``, the
    half-size ones halved again."""
    dataset = deformed_brains(count, half=smallest)
    if not smallest:
        return dataset
    subjects = [halved(dataset.load(s)) for s in dataset.all_subjects()]
    return InMemoryDataset("brain-quarter", {**dataset.options, "quarter": True}, subjects,
                           dataset.labels, dataset.pairs())


# --- parts ---------------------------------------------------------------------------------------
def run_tests(figures: Figures, args) -> None:
    section = figures.start("tests")
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda or gpu",
             f"--junitxml={report}", *CUDA_TESTS], cwd=REPO)
        section.update(seconds=time.perf_counter() - start, exit_code=completed.returncode)
        cases = ElementTree.parse(report).getroot().iter("testcase") if report.exists() else []
    counts = dict.fromkeys(("passed", "failed", "error", "skipped"), 0)
    section["cases"] = []
    for case in cases:
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
                message = (child.get("message") or "").splitlines()[0][:300]
        counts[outcome] += 1
        section["cases"].append({"test": f"{case.get('classname')}::{case.get('name')}",
                                 "outcome": outcome, "message": message})
    section.update(counts)
    figures.finish(section)


def register_timed(method, params, fixed: Subject, movings: list[Subject], device, labels):
    """One call of ``register_batch`` on the pairs (fixed, each of ``movings``), timed as the
    platform times a pair; the call's seconds and peak MB, and each pair's mean Dice. The pairs
    are deformed copies of one subject: pre-aligned."""
    grid = grid_keyword(method.register_batch, Grid(fixed.spacing, pre_aligned=True))
    measured = run_with_limit(
        lambda: method.register_batch([(fixed.image, m.image) for m in movings], dict(params),
                                      device, **grid), None, device)
    dice = [float(np.nanmean(metrics.dice(
                fixed.labels, warp_labels(m.labels, validate_displacement(d, fixed.image.shape)),
                labels)))
            for m, d in zip(movings, measured.value)]
    return measured.seconds, measured.peak_memory_mb, dice


def run_classical(figures: Figures, args) -> None:
    section = figures.start("classical")
    batches, alone, _ = args.sizes
    registry = load_registry()
    dataset = brains(max(*batches, alone), args.smallest)
    fixed = dataset.load("original")
    movings = [dataset.load(pair.moving) for pair in dataset.pairs()]
    labels = sorted(dataset.labels)
    section.update(
        grid=list(fixed.image.shape), deformations=len(movings), evaluated_labels=len(labels),
        memory=("torch.cuda.max_memory_allocated" if args.device.type == "cuda"
                else "growth of resident memory"),
        dice_before=float(np.mean([np.nanmean(metrics.dice(fixed.labels, m.labels, labels))
                                   for m in movings])))
    figures.save()
    started = set()
    for name, preset in CLASSICAL:
        method, params = registry.methods[name], registry.methods[name].presets[preset]
        runs = [(1, [[movings[0]]], True)] if name not in started else []
        runs += [(size, [[m] for m in movings[:alone]] if size == 1 else [movings[:size]], False)
                 for size in batches]
        started.add(name)
        for size, calls, first in runs:
            row = {"method": name, "preset": preset, "batch": size, "first_call": first}
            try:
                measured = [register_timed(method, params, fixed, group, args.device, labels)
                            for group in calls]
                row.update(pairs=size * len(calls),
                           seconds_per_pair=float(np.mean([s / size for s, _, _ in measured])),
                           peak_mb=max(peak for _, peak, _ in measured),
                           dice=float(np.mean([d for _, _, dice in measured for d in dice])))
            except Exception as exc:
                row["error"] = failure(exc)
            figures.add(section, row)
            print(f"classical: {row}", file=sys.stderr, flush=True)
    figures.finish(section)


def untrained_weights(method, folder: Path) -> Path:
    """The weights file of ``method``'s network under ``default``, as initialised."""
    settings = method.resolve(method.presets["default"])
    network = build_network(method.architecture, settings)
    return save_weights(folder, network.state_dict(), method.name, method.version,
                        method.trained_params(settings))


def precision(mixed: bool):
    """Mixed precision as warpbench_learning trains and registers (autocast on CUDA), or none."""
    if mixed:
        return contextlib.nullcontext()
    return mock.patch.object(training, "autocast_for", lambda device: contextlib.nullcontext())


def run_learning(figures: Figures, args) -> None:
    section = figures.start("learning")
    _, _, steps = args.sizes
    device = args.device
    registry = load_registry()
    hippocampus = build_dataset(load_config(REPO / "datasets.yaml"), "hippocampus",
                                registry.dataset_kinds)
    available, reason = hippocampus.availability()
    if not available:
        raise SystemExit(f"hippocampus: {reason}")
    brain = brains(2, args.smallest)  # its two deformed copies are the training subjects
    pair = hippocampus.pairs("test")[0]
    fixed, moving = hippocampus.load(pair.fixed).image, hippocampus.load(pair.moving).image
    brain_image = brain.load("original").image
    section.update(grids={"hippocampus": list(fixed.shape), "brain": list(brain_image.shape)},
                   train_steps=steps, inference_repeats={"hippocampus": 5, "brain": 1})
    figures.save()
    for name in NETWORKS:
        method = registry.methods[name]
        with tempfile.TemporaryDirectory() as folder:
            weights = untrained_weights(method, Path(folder))
            for mixed in (True, False):
                with precision(mixed):
                    dtype = getattr(training.autocast_for(device), "fast_dtype", torch.float32)
                    row = figures.add(section, {"network": name, "mixed_precision": mixed,
                                                "precision": str(dtype).removeprefix("torch.")})
                    try:
                        row["train_steps_per_s"] = {}
                        for grid, dataset in (("hippocampus", hippocampus), ("brain", brain)):
                            row["train_steps_per_s"][grid] = train_steps_per_second(
                                method, dataset, device, steps)
                            figures.save()
                        measured = registration_figures(method, fixed, moving, brain_image,
                                                        device, weights)
                        row.update(inference_ms_per_pair={"hippocampus": measured["ms/pair"],
                                                          "brain": 1000 * measured["brain s"]},
                                   inference_peak_mb_brain=measured["brain peak MB"])
                    except Exception as exc:
                        row["error"] = failure(exc)
                    figures.save()
                    print(f"learning: {row}", file=sys.stderr, flush=True)
    figures.finish(section)


# --- the table -----------------------------------------------------------------------------------
def number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(figures: Figures) -> None:
    data = figures.data
    device = data.get("device", {})
    print(f"\n{figures.path}: {device.get('name')} ({device.get('type')}), torch "
          f"{device.get('torch')}, CUDA {device.get('cuda')}")
    for part in PARTS[:-1]:
        section = data.get(part, {})
        cut = " (cut short: still running when last written)" if section.get(
            "status") == "running" else ""
        print(f"{part}: {section.get('status', 'not run')}{cut}")
    tests = data.get("tests", {})
    if "cases" in tests:
        print(f"\nCUDA tests: {tests['passed']} passed, {tests['failed']} failed, "
              f"{tests['error']} errors, {tests['skipped']} skipped, {tests['seconds']:.0f} s")
        for case in tests["cases"]:
            if case["outcome"] != "passed":
                print(f"  {case['outcome']}: {case['test']} {case['message']}")
    classical = data.get("classical", {})
    if "grid" in classical:
        print(f"\nclassical on the brain {'x'.join(map(str, classical['grid']))}, "
              f"{classical['deformations']} known deformations, Dice before "
              f"{classical['dice_before']:.3f}; peak MB: {classical['memory']} of the call; "
              "x alone: pairs per second over those of one pair a call")
        print(f"{'method':<16}{'batch':>7}{'pairs':>6}{'s/pair':>9}{'x alone':>8}"
              f"{'peak MB':>9}{'Dice':>7}")
        alone = {(r["method"], r["preset"]): r["seconds_per_pair"] for r in classical.get(
            "rows", []) if r["batch"] == 1 and not r["first_call"] and "error" not in r}
        for row in classical.get("rows", []):
            spec = f"{row['method']}:{row['preset']}"
            batch = f"{row['batch']}{' 1st' if row['first_call'] else ''}"
            if "error" in row:
                print(f"{spec:<16}{batch:>7}  {row['error'][:70]}")
                continue
            base = alone.get((row["method"], row["preset"]))
            speedup = base / row["seconds_per_pair"] if base and not row["first_call"] else None
            print(f"{spec:<16}{batch:>7}{row['pairs']:>6}{row['seconds_per_pair']:>9.2f}"
                  f"{number(speedup):>8}{row['peak_mb']:>9.0f}{row['dice']:>7.3f}")
    learning = data.get("learning", {})
    if "grids" in learning:
        grids = learning["grids"]
        print(f"\nnetworks (untrained), hippocampus {'x'.join(map(str, grids['hippocampus']))}, "
              f"brain {'x'.join(map(str, grids['brain']))}: training steps/s (batch 1, "
              f"{learning['train_steps']} steps), inference ms/pair (hippocampus: median of 5; "
              "brain: one), brain inference peak MB")
        print(f"{'network':<12}{'mixed':>6}{'dtype':>9}{'train hip':>10}{'train brain':>12}"
              f"{'ms hip':>9}{'ms brain':>10}{'peak MB':>9}")
        for row in learning.get("rows", []):
            train = row.get("train_steps_per_s", {})
            infer = row.get("inference_ms_per_pair", {})
            mixed = "yes" if row["mixed_precision"] else "no"
            print(f"{row['network']:<12}{mixed:>6}{row['precision']:>9}"
                  f"{number(train.get('hippocampus')):>10}{number(train.get('brain')):>12}"
                  f"{number(infer.get('hippocampus'), 1):>9}{number(infer.get('brain'), 1):>10}"
                  f"{number(row.get('inference_peak_mb_brain'), 0):>9}"
                  f"{'  ' + row['error'][:60] if 'error' in row else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the JSON file of figures")
    parser.add_argument("--device", type=torch.device, default=torch.device("cuda"))
    parser.add_argument("--smallest", action="store_true",
                        help="the dry run's sizes: quarter-size brain, batches 1 and 2, 1 pair "
                             "alone, 2 training steps")
    args = parser.parse_args()
    args.sizes = SMALLEST if args.smallest else FULL
    figures = Figures(args.out, None if args.part == "table" else args.device)
    if args.part == "table":
        print_table(figures)
        return
    run = {"tests": run_tests, "classical": run_classical, "learning": run_learning}[args.part]
    try:
        run(figures, args)
    except BaseException as exc:  # a kill by signal (the step's time limit) never gets here
        figures.data.setdefault(args.part, {})["status"] = f"failed: {type(exc).__name__}: {exc}"
        figures.save()
        raise


if __name__ == "__main__":
    main()
