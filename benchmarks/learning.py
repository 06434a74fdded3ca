"""Speed and memory of the learning methods (warpbench_learning) side by side, and what their
training recipes reach on real data.

Speed (the default): for each network under a preset (``--networks``, by default VoxelMorph,
LKU-Net and TransMorph under ``default`` and TransMorph's ``published`` configuration), on the
CPU and on CUDA when there is one:

- ``train steps/s``: optimiser steps per second on the ``synth-distinct`` grid (48x56x48, the
  preset's batch for the device: ``batch_size`` on the CPU, ``cuda_batch_size`` on CUDA), loss,
  augmentation and backward included, after two warm-up steps;
- ``ms/pair``: one registration (``register`` with loaded weights: normalise, predict, integrate)
  on that grid, the median of five after a warm-up;
- ``brain s`` and ``brain peak MB``: one registration of the full-size brain of
  ``../shared/data/brain`` (160x192x224) onto itself, measured as the platform measures a pair
  (:func:`warpbench.runner.run_with_limit`: growth of resident memory on the CPU,
  ``torch.cuda.max_memory_allocated`` on a GPU), after a warm-up on the same volume.

The networks are untrained (speed does not depend on the weights)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/learning.py [--steps 10] \\
        [--networks voxelmorph,transmorph:published]

Recipes (``--measure METHOD:PRESET``, repeatable): each trained on the train split of
``--dataset`` (default ``hippocampus``) and evaluated on its test pairs through the platform
itself (the scheduler, into ``--db``, weights under ``checkpoints/`` beside it), under the preset
with ``--set KEY=JSON`` overrides (``--set minutes=20`` bounds it by the clock; the schedule then
decays with the time spent). Each finished measurement is one line of ``--out`` (JSON lines:
steps trained, seconds, the best validation and its step, test mean Dice, HD95, folding, SDlogJ,
seconds per pair, the mean 1-minute load average while it trained, the command); a measurement
already in the file is skipped, and an interrupted one resumes from its checkpoint, so the same
command finishes the rest::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/learning.py --measure voxelmorph:labels \\
        --set minutes=20 --db /tmp/h2.duckdb --out benchmarks/measured/learning/hippocampus.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import nibabel as nib
import numpy as np
import torch

from warpbench.config import build_dataset, load_config
from warpbench.executors import InProcessExecutor
from warpbench.plugins import load_registry
from warpbench.runner import run_with_limit
from warpbench.scheduler import Scheduler, make_plan
from warpbench.store import Store
from warpbench.training import TrainingJob, training_key
from warpbench_learning.checkpoint import save_weights
from warpbench_learning.model import build_network
from warpbench_learning.training import _Trainer, budget_spent

REPO = Path(__file__).resolve().parents[1]
BRAIN = REPO.parent / "shared" / "data" / "brain" / "subject_a_image.nii.gz"
NETWORKS = ("voxelmorph", "lkunet", "transmorph", "transmorph:published")


# --- speed ---------------------------------------------------------------------------------------
def train_steps_per_second(method, dataset, device, steps: int, preset: str = "default") -> float:
    params = method.presets[preset]
    settings = method.resolve(params)
    with tempfile.TemporaryDirectory() as folder:
        trainer = _Trainer(TrainingJob(dataset, params, device, 0, Path(folder)), settings,
                           method.architecture)
        for _ in range(2):
            trainer.train_step(0.0)
        synchronize(device)
        start = time.perf_counter()
        for step in range(steps):
            trainer.train_step(budget_spent(step, 0.0, settings))
        synchronize(device)
        return steps / (time.perf_counter() - start)


def registration_figures(method, fixed, moving, brain, device, weights: Path,
                         preset: str = "default") -> dict[str, float]:
    params = method.presets[preset]
    register = lambda a, b: method.register(a, b, params, device, weights=weights)  # noqa: E731
    register(fixed, moving)
    times = [run_with_limit(lambda: register(fixed, moving), None, device).seconds
             for _ in range(5)]
    figures = {"ms/pair": 1000 * statistics.median(times)}
    if brain is not None:
        register(brain, brain)
        measured = run_with_limit(lambda: register(brain, brain), None, device)
        figures.update({"brain s": measured.seconds, "brain peak MB": measured.peak_memory_mb})
    return figures


def untrained_weights(method, preset: str, folder: Path) -> Path:
    settings = method.resolve(method.presets[preset])
    network = build_network(method.architecture, settings)
    return save_weights(folder, network.state_dict(), method.name, method.version,
                        method.trained_params(settings))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(args, registry) -> None:
    dataset = build_dataset(load_config(REPO / "datasets.yaml"), "synth-distinct",
                            registry.dataset_kinds)
    fixed, moving = (dataset.load(i).image for i in dataset.subjects("test")[:2])
    brain = np.asarray(nib.load(BRAIN).dataobj, np.float32) if BRAIN.exists() else None
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"grid {fixed.shape}, brain {None if brain is None else brain.shape}")
    columns = ("train steps/s", "ms/pair", "brain s", "brain peak MB")
    print(f"{'network':<22}{'device':<8}{'batch':>6}" + "".join(f"{c:>16}" for c in columns))
    for spec in args.networks.split(","):
        name, _, preset = spec.partition(":")
        preset = preset or "default"
        method = registry.methods[name]
        settings = method.resolve(method.presets[preset])
        with tempfile.TemporaryDirectory() as folder:
            weights = untrained_weights(method, preset, Path(folder))
            for device in devices:
                batch = settings.cuda_batch_size if device.type == "cuda" else settings.batch_size
                figures = {"train steps/s": train_steps_per_second(method, dataset, device,
                                                                   args.steps, preset)}
                figures.update(registration_figures(method, fixed, moving, brain, device, weights,
                                                    preset))
                cells = "".join(f"{figures.get(c, float('nan')):>16.2f}" for c in columns)
                print(f"{name + ':' + preset:<22}{device.type:<8}{batch:>6}{cells}", flush=True)


# --- recipes on real data ------------------------------------------------------------------------
class LoadAverage:
    """The 1-minute load average, sampled every ``every`` seconds in the background: how much
    else the machine was running while a measurement took its time."""

    def __init__(self, every: float = 15.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every,), daemon=True)

    def _sample(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 2) if self.samples else None


def derived_preset(base: str, overrides: dict) -> str:
    """The name a preset with ``overrides`` is stored under: ``labels+minutes=20``."""
    return "+".join([base, *(f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items()))])


def measure(args, registry) -> None:
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(row["method"], row["preset"], row["dataset"], row["seed"])
                for row in map(json.loads, out.read_text().splitlines()) if row}
    overrides = {key: json.loads(value) for key, value in
                 (item.split("=", 1) for item in args.set)}
    config = load_config(REPO / "datasets.yaml")
    store = Store(args.db)
    for spec in args.measure:
        name, _, base = spec.partition(":")
        base = base or "default"
        method = registry.methods[name]
        preset = derived_preset(base, overrides) if overrides else base
        if (name, preset, args.dataset, args.seed) in done:
            print(f"{name}:{preset} on {args.dataset}: already in {out}", flush=True)
            continue
        # The measured preset joins the method's own for this process only.
        method.presets = {**method.presets, preset: {**method.presets[base], **overrides}}
        plan = make_plan(registry, config, [f"{name}:{preset}"], [args.dataset])
        scheduler = Scheduler(registry, store, InProcessExecutor(args.device), seed=args.seed)
        with LoadAverage() as load:
            summary = scheduler.run(plan)
        if summary.failures:
            raise SystemExit(f"{name}:{preset}: " + "; ".join(summary.failures))
        row = result_row(store, method, preset, plan.datasets[args.dataset], args, load.mean)
        row["overrides"] = overrides
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def result_row(store: Store, method, preset: str, dataset, args, load: float | None) -> dict:
    key = training_key(method, preset, dataset, args.seed)
    training = store.training(key)
    curves = store.training_curves(key)
    val = curves[(curves["split"] == "val") & (curves["name"] == "dice")].sort_values("step")
    best = val.loc[val["value"].idxmax()] if len(val) else None
    board = store.leaderboard()
    run = board[(board["method"] == method.name) & (board["preset"] == preset)
                & (board["dataset"] == args.dataset)].iloc[0]
    return {
        "method": method.name, "preset": preset, "version": method.version,
        "dataset": args.dataset, "seed": args.seed, "device": args.device,
        "train_steps": int(training["steps"]), "train_seconds": round(training["seconds"], 1),
        "best_val_dice": None if best is None else round(float(best["value"]), 4),
        "best_val_step": None if best is None else int(best["step"]),
        "last_val_dice": None if best is None else round(float(val.iloc[-1]["value"]), 4),
        "test_pairs": int(run["pairs"]), "mean_dice": round(float(run["dice"]), 4),
        "dice_std": round(float(run["dice_std"]), 4), "hd95_mm": round(float(run["hd95"]), 3),
        "folding_percent": round(float(run["folding_percent"]), 5),
        "sdlogj": round(float(run["sdlogj"]), 4),
        "seconds_per_pair": round(float(run["seconds"]), 3),
        "load_average": load, "threads": torch.get_num_threads(), "host": socket.gethostname(),
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10,
                        help="timed training steps per network (speed)")
    parser.add_argument("--networks", default=",".join(NETWORKS),
                        help="comma-separated METHOD[:PRESET] (speed)")
    parser.add_argument("--measure", action="append", default=[], metavar="METHOD:PRESET",
                        help="train and evaluate this configuration (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a preset key for --measure (repeatable)")
    parser.add_argument("--dataset", default="hippocampus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--db", default="results/learning.duckdb")
    parser.add_argument("--out",
                        default=str(REPO / "benchmarks/measured/learning/hippocampus.jsonl"))
    args = parser.parse_args()
    registry = load_registry()
    if args.measure:
        measure(args, registry)
    else:
        speed(args, registry)


if __name__ == "__main__":
    main()
