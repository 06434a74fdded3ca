"""Throw-away method and dataset plugins defined by the tests themselves, loaded the way any
plugin is (hook implementations on an object), to drive the scheduler without real data."""

import time

import numpy as np
import torch

from warpbench import Dataset, Method, Subject
from warpbench.hookspecs import hookimpl

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
        for method in (ShiftMethod(), RaisingMethod(), NaNMethod(), WrongShapeMethod(), HangingMethod()):
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
