"""Speed and memory of the learning methods (warpbench_learning), both architectures side by side.

For each architecture under its ``default`` preset, on the CPU and on CUDA when there is one:

- ``train steps/s``: optimiser steps per second on the ``synth-distinct`` grid (48x56x48, batch of
  the preset), loss and backward included, after two warm-up steps;
- ``ms/pair``: one registration (``register`` with loaded weights: normalise, predict, integrate)
  on that grid, the median of five after a warm-up;
- ``brain s`` and ``brain peak MB``: one registration of the full-size brain of
  ``../shared/data/brain`` (160x192x224) onto itself, measured as the platform measures a pair
  (:func:`warpbench.runner.run_with_limit`: growth of resident memory on the CPU,
  ``torch.cuda.max_memory_allocated`` on a GPU), after a warm-up on the same volume.

The networks are untrained (speed does not depend on the weights). Run from the repository root
with ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/learning.py [--steps 10]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import nibabel as nib
import numpy as np
import torch

from warpbench.config import build_dataset, load_config
from warpbench.plugins import load_registry
from warpbench.runner import run_with_limit
from warpbench.training import TrainingJob
from warpbench_learning.checkpoint import save_weights
from warpbench_learning.model import build_network
from warpbench_learning.training import _Trainer

REPO = Path(__file__).resolve().parents[1]
BRAIN = REPO.parent / "shared" / "data" / "brain" / "subject_a_image.nii.gz"
ARCHITECTURES = ("voxelmorph", "lkunet")


def train_steps_per_second(method, dataset, device, steps: int) -> float:
    preset = method.presets["default"]
    with tempfile.TemporaryDirectory() as folder:
        trainer = _Trainer(TrainingJob(dataset, preset, device, 0, Path(folder)),
                           method.resolve(preset), method.architecture)
        for _ in range(2):
            trainer.train_step()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        synchronize(device)
        return steps / (time.perf_counter() - start)


def registration_figures(method, fixed, moving, brain, device, weights: Path) -> dict[str, float]:
    params = method.presets["default"]
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10,
                        help="timed training steps per architecture")
    args = parser.parse_args()
    registry = load_registry()
    dataset = build_dataset(load_config(REPO / "datasets.yaml"), "synth-distinct",
                            registry.dataset_kinds)
    fixed, moving = (dataset.load(i).image for i in dataset.subjects("test")[:2])
    brain = np.asarray(nib.load(BRAIN).dataobj, np.float32) if BRAIN.exists() else None
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"grid {fixed.shape}, brain {None if brain is None else brain.shape}")
    columns = ("train steps/s", "ms/pair", "brain s", "brain peak MB")
    print(f"{'method':<12}{'device':<8}" + "".join(f"{c:>16}" for c in columns))
    for name in ARCHITECTURES:
        method = registry.methods[name]
        settings = method.resolve(method.presets["default"])
        trained = method.trained_params(settings)
        with tempfile.TemporaryDirectory() as folder:
            network = build_network(method.architecture, settings)
            weights = save_weights(Path(folder), network.state_dict(),
                                   method.name, method.version, trained)
            for device in devices:
                steps_per_second = train_steps_per_second(method, dataset, device, args.steps)
                figures = {"train steps/s": steps_per_second}
                figures.update(registration_figures(method, fixed, moving, brain, device, weights))
                cells = "".join(f"{figures.get(c, float('nan')):>16.2f}" for c in columns)
                print(f"{name:<12}{device.type:<8}{cells}", flush=True)


if __name__ == "__main__":
    main()
