"""Planning and running an evaluation: every method x preset x dataset, resumable.

The plan is built from names (a suite, or ``--method``/``--dataset``). Each planned run has a
configuration key (method, preset and its parameters, method version, dataset fingerprint,
training dataset, seed); running the same plan again resumes each configuration's newest run:
finished pairs are skipped and failed ones retried. Results are written one pair at a time, so an
interruption loses at most the pair in flight. This process is the store's only writer.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from warpbench import mi
from warpbench.config import Config, build_dataset
from warpbench.datasets import Dataset, DatasetConfigError
from warpbench.executors import RunWork
from warpbench.plugins import Registry
from warpbench.provenance import environment
from warpbench.store import Store


@dataclass(frozen=True)
class PlannedRun:
    method: str
    preset: str
    dataset: str

    def __str__(self) -> str:
        return f"{self.method}:{self.preset} on {self.dataset}"


@dataclass
class Plan:
    runs: list[PlannedRun] = field(default_factory=list)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # dataset -> reason


@dataclass
class Summary:
    runs_done: int = 0
    runs_up_to_date: int = 0
    pairs_ok: int = 0
    pairs_failed: int = 0
    failures: list[str] = field(default_factory=list)


def expand_method_spec(spec: str, registry: Registry) -> list[tuple[str, str]]:
    """``NAME`` -> its default preset, ``NAME:PRESET`` -> that one, ``NAME:*`` -> all presets."""
    name, _, preset = spec.partition(":")
    if name not in registry.methods:
        known = ", ".join(sorted(registry.methods)) or "none"
        raise ValueError(f"no method {name!r} is registered (registered: {known})")
    presets = registry.methods[name].presets
    if preset == "*":
        return [(name, p) for p in presets]
    preset = preset or "default"
    if preset not in presets:
        raise ValueError(f"method {name!r} has no preset {preset!r} (presets: {', '.join(presets)})")
    return [(name, preset)]


def make_plan(registry: Registry, config: Config, methods: list[str], datasets: list[str]) -> Plan:
    """Expand names into runs; datasets that cannot be built or are missing their files are set
    aside with the reason instead of failing the plan."""
    plan = Plan()
    method_presets = [mp for spec in methods for mp in expand_method_spec(spec, registry)]
    for name in datasets:
        try:
            dataset = build_dataset(config, name, registry.dataset_kinds)
        except DatasetConfigError as exc:
            plan.unavailable[name] = str(exc)
            continue
        available, reason = dataset.availability()
        if not available:
            plan.unavailable[name] = reason
            continue
        try:
            dataset.pairs("test")  # checks the split against the subjects found
        except DatasetConfigError as exc:
            plan.unavailable[name] = str(exc)
            continue
        plan.datasets[name] = dataset
        plan.runs.extend(PlannedRun(m, p, name) for m, p in method_presets)
    return plan


def config_key(method, preset: str, dataset: Dataset, seed: int, train_dataset: str | None) -> str:
    blob = json.dumps(
        [method.name, preset, method.presets[preset], method.version, dataset.name,
         dataset.fingerprint(), train_dataset, seed],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def describe_dataset(dataset: Dataset) -> dict:
    """A dataset's store row: sizes, grid, labels and MI(i;s) over its test subjects."""
    test = dataset.subjects("test")
    subjects = [dataset.load(s) for s in test]
    estimate = mi.mutual_information([s.image for s in subjects], [s.labels for s in subjects])
    return {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint(),
        "kind": dataset.kind,
        "subjects": len(dataset.all_subjects()),
        "train_subjects": len(dataset.subjects("train")),
        "val_subjects": len(dataset.subjects("val")),
        "test_subjects": len(test),
        "test_pairs": len(dataset.pairs("test")),
        "shape": list(subjects[0].image.shape) if subjects else None,
        "spacing": list(subjects[0].spacing) if subjects else None,
        "labels": {str(k): v for k, v in dataset.labels.items()},
        "mi_bits": estimate["mi_bits"],
        "label_entropy_bits": estimate["label_entropy_bits"],
        "nmi": estimate["nmi"],
        "mi_estimator": f"plug-in joint histogram, {estimate['bins']} intensity bins "
                        "(warpbench.mi states the normalisation and mask)",
    }


class Scheduler:
    def __init__(self, registry: Registry, store: Store, executor, *, seed: int = 0,
                 time_limit: float | None = None, restart: bool = False, progress: bool = True):
        self.registry = registry
        self.store = store
        self.executor = executor
        self.seed = seed
        self.time_limit = time_limit
        self.restart = restart
        self.progress = progress

    def run(self, plan: Plan) -> Summary:
        summary = Summary()
        for dataset in plan.datasets.values():
            if not self.store.has_dataset(dataset.name, dataset.fingerprint()):
                self.store.record_dataset(describe_dataset(dataset))
        for planned in plan.runs:
            self._run_one(planned, plan.datasets[planned.dataset], summary)
        return summary

    def _provenance(self, method, preset: str, dataset: Dataset) -> dict:
        plugin = self.registry.plugin_of("method", method.name)
        return {
            "method": method.name, "preset": preset,
            "params": json.dumps(method.presets[preset], sort_keys=True),
            "method_version": method.version, "family": method.family,
            "supervision": method.supervision, "plugin": plugin.name,
            "plugin_distribution": plugin.distribution, "plugin_version": plugin.version,
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
            "train_dataset": None, "seed": self.seed,
            **environment(self.executor.device),
        }

    def _run_one(self, planned: PlannedRun, dataset: Dataset, summary: Summary) -> None:
        method = self.registry.methods[planned.method]
        key = config_key(method, planned.preset, dataset, self.seed, None)
        state = self.store.begin_run(
            key, self._provenance(method, planned.preset, dataset), restart=self.restart
        )
        pairs = dataset.pairs("test")
        todo = [p for p in pairs if (p.fixed, p.moving) not in state.done]
        if not todo:
            if state.status != "complete":  # killed after its last pair was stored
                self.store.end_run(state.run_id, "complete")
            summary.runs_up_to_date += 1
            return
        work = RunWork(method, method.presets[planned.preset], dataset, todo,
                       self.seed, self.time_limit)
        bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc=str(planned),
                   unit="pair", file=sys.stderr, disable=not self.progress, leave=True)
        try:
            for result in self.executor.evaluate(work):
                attempt = state.attempts.get((result.fixed, result.moving), 0) + 1
                self.store.record_pair(state.run_id, attempt, result)
                if result.status == "ok":
                    summary.pairs_ok += 1
                    bar.set_postfix(dice=f"{result.mean_dice:.3f}" if result.mean_dice is not None else "-")
                else:
                    summary.pairs_failed += 1
                    summary.failures.append(f"{planned}: {result.fixed} <- {result.moving}: {result.error}")
                bar.update()
        except BaseException:
            self.store.end_run(state.run_id, "interrupted")
            raise
        finally:
            bar.close()
        self.store.end_run(state.run_id, "complete")
        summary.runs_done += 1
