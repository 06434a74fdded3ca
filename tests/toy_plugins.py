"""Throw-away method, dataset and command plugins defined by the tests themselves, loaded the way
any plugin is (hook implementations on an object), to drive the scheduler without real data."""

import json
import os
import signal
import time

import click
import numpy as np
import torch

from warpbench import Dataset, Method, Subject
from warpbench.hookspecs import hookimpl
from warpbench.methods import LearningMethod

TOY_SHAPE = (12, 14, 10)


class ToyDataset(Dataset):
    """Boxes of two labels, shifted by one voxel per subject along axis 0."""

    kind = "toy"
    labels = {1: "box", 2: "slab"}

    def __init__(self, name, options, base_dir):
        super().__init__(name, options, base_dir)
        self.count = int(self.options.get("subjects", 6))

    def all_subjects(self):
        return [f"s{i}" for i in range(self.count)]

    def load(self, subject_id):
        shift = int(subject_id[1:]) % 3
        labels = np.zeros(TOY_SHAPE, np.int16)
        labels[3 + shift : 8 + shift, 4:10, 3:7] = 1
        labels[2 + shift : 4 + shift, 2:12, 2:8] = 2
        image = (labels * 0.4 + 0.1).astype(np.float32)
        return Subject(subject_id, image, labels, np.eye(4))


class ShiftMethod(Method):
    """Returns a constant field; the preset says how far (a method whose presets matter)."""

    name = "toy-shift"
    family = "baseline"
    presets = {"default": {"shift": 0.0}, "one": {"shift": 1.0}}

    def register(self, fixed, moving, params, device):
        return torch.full((3, *fixed.shape), params["shift"], device=device)


class RaisingMethod(Method):
    name = "toy-raises"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        raise RuntimeError("deliberate failure")


class NaNMethod(Method):
    name = "toy-nan"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        field = np.zeros((3, *fixed.shape), np.float32)
        field[0, 0, 0, 0] = np.nan
        return field


class WrongShapeMethod(Method):
    name = "toy-wrong-shape"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        return np.zeros((*fixed.shape, 3), np.float32)  # channels-last: the Learn2Reg file layout


class HangingMethod(Method):
    name = "toy-hangs"
    family = "baseline"

    def register(self, fixed, moving, params, device):
        time.sleep(30)
        return np.zeros((3, *fixed.shape), np.float32)


class ToyPlugin:
    @hookimpl
    def register_methods(self, register):
        for method in (ShiftMethod(), RaisingMethod(), NaNMethod(), WrongShapeMethod(),
                       HangingMethod()):
            register(method)

    @hookimpl
    def register_datasets(self, register):
        register(ToyDataset)


TOY_CONFIG = """
datasets:
  toy-a: {plugin: toy, subjects: 6, split: {train: 2, val: 1, test: 3}, pairs: {test: all}}
  toy-b: {plugin: toy, subjects: 5, split: {train: 1, val: 1, test: 3}, pairs: {test: 4}}
  missing: {plugin: not-installed}
suites:
  default:
    methods: [toy-shift]
    datasets: [toy-a, toy-b]
"""


# --- learning: a method whose training is trivially fast, and datasets whose labels differ ------
class ToyRenamedDataset(ToyDataset):
    """The toy boxes under other label names: another label protocol than ``toy``'s unless a
    ``label_map`` says that its cube is the box."""

    kind = "toy-renamed"
    labels = {1: "cube", 2: "slab"}


class ToyLearner(LearningMethod):
    """Learns one number from the training labels (the mean position of the box along axis 0,
    one training subject per step) and registers with a constant field of that size.

    It checkpoints every second step, so a resumed training repeats the steps after its last
    checkpoint (and logs them again). Tests steer it through attributes: ``interrupt_at`` (a
    simulated Ctrl-C before that step), ``terminate_at`` (a SIGTERM to this process before that
    step), ``fail_on`` (dataset names whose training raises); and read what it did: ``trained``
    (one (dataset, first step) per ``train`` call) and ``registered_with`` (the weights files
    ``register`` was given).
    """

    name = "toy-learner"
    presets = {"default": {"steps": 5}, "labels": {"steps": 5, "supervision": "labels"},
               "long": {"steps": 20}}

    def __init__(self):
        self.interrupt_at = None
        self.terminate_at = None
        self.fail_on = set()
        self.trained = []
        self.registered_with = set()

    def train(self, job):
        checkpoint = job.folder / "checkpoint.json"
        state = json.loads(checkpoint.read_text()) if checkpoint.exists() else {"step": 0, "sum": 0}
        self.trained.append((job.dataset.name, state["step"] + 1))
        if job.dataset.name in self.fail_on:
            raise RuntimeError("deliberate training failure")
        subjects = job.dataset.subjects("train")
        steps = job.params["steps"]
        for step in range(state["step"] + 1, steps + 1):
            if step == self.interrupt_at:
                raise KeyboardInterrupt
            if step == self.terminate_at:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the signal's handler runs meanwhile
            labels = job.dataset.load(subjects[step % len(subjects)]).labels
            state["sum"] += float(np.argwhere(labels == 1)[:, 0].mean())
            job.log(step, "train", "loss", 1.0 / step)
            job.log(step, "val", "dice", 1.0 - 1.0 / step)
            job.progress(step, steps)
            if step % 2 == 0:
                checkpoint.write_text(json.dumps({"step": step, "sum": state["sum"]}))
        weights = job.folder / "weights.json"
        weights.write_text(json.dumps({"shift": state["sum"] / steps - 6.0}))
        return weights

    def register(self, fixed, moving, params, device, *, weights):
        self.registered_with.add(weights)
        shift = json.loads(weights.read_text())["shift"]
        return torch.full((3, *fixed.shape), shift, device=device)


class ToyLearningPlugin:
    """A fresh ``ToyLearner`` per plugin object, so tests do not share its state."""

    def __init__(self):
        self.learner = ToyLearner()

    @hookimpl
    def register_methods(self, register):
        register(self.learner)

    @hookimpl
    def register_datasets(self, register):
        register(ToyRenamedDataset)


TRAINING_CONFIG = """
datasets:
  toy-a: {plugin: toy, subjects: 6, split: {train: 2, val: 1, test: 3}, pairs: {test: 2}}
  toy-b: {plugin: toy, subjects: 5, split: {train: 2, val: 0, test: 3}, pairs: {test: 2}}
  toy-renamed: {plugin: toy-renamed, subjects: 5, split: {train: 2, val: 0, test: 3}, pairs: {test: 2}}
  toy-mapped: {plugin: toy-renamed, label_map: {1: box}, subjects: 4, split: {train: 0, val: 0, test: 4},
               pairs: {test: 2}}
  toy-a-heldout: {plugin: toy, domain: toy-a, subjects: 4, split: {train: 0, val: 0, test: 4},
                  pairs: {test: 2}}
suites:
  default:
    methods: [toy-learner, toy-learner:labels, toy-shift]
    datasets: [toy-a, toy-b, toy-renamed, toy-mapped]
  only-a:
    methods: [toy-learner]
    datasets: [toy-a, toy-b]
    train_on: [toy-a]
"""


# --- a command: what the register_commands hook adds to `warpbench` -----------------------------
class ToyCommandPlugin:
    """Adds ``warpbench toy-greet``."""

    @hookimpl
    def register_commands(self, cli):
        @cli.command("toy-greet", epilog="Example: warpbench toy-greet --name Ada")
        @click.option("--name", default="world", help="whom to greet")
        def greet(name):
            """Greet someone (a plugin's command)."""
            click.echo(f"hello {name}")


#: The object a ``toy_plugins:TOY_COMMANDS`` entry point names.
TOY_COMMANDS = ToyCommandPlugin()
