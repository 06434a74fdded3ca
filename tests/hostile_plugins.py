"""Methods that do what a hostile (or just broken) plugin does to the process running it:
segfault, exit, eat memory, hang with or without the interpreter, run slowly while a test kills
its worker; and a learner whose trainings take long enough to be seen overlapping.

Worker processes load plugins from entry points only, so the tests install this module as the
entry point ``hostile`` (:func:`install`), beside the toy dataset and the well-behaved
``toy-shift`` that it registers too.
"""

import ctypes
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from fake_dist import add_distribution
from toy_plugins import ShiftMethod, ToyDataset
from warpbench.hookspecs import hookimpl
from warpbench.methods import LearningMethod, Method

#: A folder where ``hostile-slow`` writes one file per call (named by its pid) and
#: ``hostile-learner`` its trainings' start and end times.
NOTES = "HOSTILE_NOTES"
BUILTIN = "executors,synthetic,decathlon,files,classical,literature,precomputed,learning"
#: ``toy-b``: test subjects s0, s1, s3 (boxes shifted by 0, 1 and 0 voxels) in 4 pairs, s0 <- s3,
#: s1 <- s0, s1 <- s3, s3 <- s0; ``toy-a``: the 6 ordered pairs of s0, s1, s4; ``train-*``: one
#: test pair each, for the learner.
CONFIG = """
datasets:
  toy-a: {plugin: toy, subjects: 6, split: {train: 2, val: 1, test: 3}, pairs: {test: all}}
  toy-b: {plugin: toy, subjects: 5, split: {train: 1, val: 1, test: 3}, pairs: {test: 4}}
  train-a: {plugin: toy, subjects: 4, split: {train: 2, val: 0, test: 2}, pairs: {test: 1}}
  train-b: {plugin: toy, subjects: 5, split: {train: 2, val: 0, test: 2}, pairs: {test: 1}}
"""


def install(site: Path, monkeypatch) -> None:
    """Make this module the installed plugin ``hostile`` for this process and the workers it
    starts (they read the same sys.path and environment)."""
    add_distribution(site, "hostile-plugins", {"hostile": "hostile_plugins:PLUGIN"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("WARPBENCH_LOAD_PLUGINS", f"{BUILTIN},hostile")


def box_shift(image: np.ndarray) -> int:
    """How far the toy subject's boxes are shifted along axis 0 (its id modulo 3)."""
    return int(np.argmax(image.max(axis=(1, 2)) > 0.2)) - 2


def _zeros(fixed, device):
    return torch.zeros((3, *fixed.shape), device=device)


class SegfaultsSome(Method):
    """Dereferences NULL when the fixed subject's boxes are not shifted; registers the others."""

    name = "hostile-segfault"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        if box_shift(fixed) == 0:
            ctypes.string_at(0)
        return _zeros(fixed, device)


class Exits(Method):
    name = "hostile-exit"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        os._exit(3)


class Allocates(Method):
    """Allocates 50 MB after 50 MB (touching every page), up to 4 GB, then gives up."""

    name = "hostile-allocates"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        hoard = []
        for _ in range(80):
            hoard.append(np.ones(50 * 2**20, np.uint8))
            time.sleep(0.02)
        return _zeros(fixed, device)


class Spins(Method):
    """A Python loop that never ends (the in-process time limit notices it)."""

    name = "hostile-spins"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        while True:
            pass


class HoldsTheInterpreter(Method):
    """A regular expression that backtracks for ages without letting go of the GIL, so nothing
    in its process runs: only killing the process stops it."""

    name = "hostile-holds-gil"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        re.match(r"(a+)+$", "a" * 64 + "b")
        return _zeros(fixed, device)


class Slow(Method):
    """Notes its pid and takes 1 s per pair, so a test can kill its worker mid-pair."""

    name = "hostile-slow"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        (Path(os.environ[NOTES]) / f"{os.getpid()}-{time.monotonic_ns()}").write_text("")
        time.sleep(1)
        return _zeros(fixed, device)


class SlowLearner(LearningMethod):
    """Trains for 1.5 s, noting when it started and ended, and registers with a zero field."""

    name = "hostile-learner"
    presets = {"default": {"seconds": 1.5}}

    def train(self, job):
        started = time.time()
        time.sleep(job.params["seconds"])
        job.log(1, "train", "loss", 0.5)
        job.progress(1, 1)
        weights = job.folder / "weights.json"
        weights.write_text(json.dumps({"pid": os.getpid()}))
        note = {"dataset": job.dataset.name, "started": started, "ended": time.time()}
        (Path(os.environ[NOTES]) / f"training-{job.dataset.name}.json").write_text(
            json.dumps(note))
        return weights

    def register(self, fixed, moving, params, device, *, weights):
        return _zeros(fixed, device)


class HostilePlugin:
    @hookimpl
    def register_methods(self, register):
        for method in (SegfaultsSome(), Exits(), Allocates(), Spins(), HoldsTheInterpreter(),
                       Slow(), SlowLearner(), ShiftMethod()):
            register(method)

    @hookimpl
    def register_datasets(self, register):
        register(ToyDataset)


PLUGIN = HostilePlugin()
