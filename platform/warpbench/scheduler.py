"""Planning and running an evaluation, resumable: every method x preset x dataset, and for
learning methods every training dataset x evaluated dataset (the domain-shift matrix).

The plan is built from names (a suite, or ``--method``/``--dataset``). A learning method is
trained once per cache key (:func:`warpbench.training.training_key`: presets that differ only in
test-time keys share it) on each training dataset (a suite's ``train_on``, by default every
dataset of the plan with train subjects), into ``<checkpoints>/<method>/<key>/`` next to the
store; a training whose row is complete and whose weights exist is not run again, and an
interrupted or failed one is resumed by calling ``train`` again with the same folder. Each
trained network is evaluated on every compatible dataset (:mod:`warpbench.compatibility`); the
others are set aside with the reason.

Each planned run has a configuration key (method, preset and its parameters, method version,
dataset fingerprint, training key, seed); running the same plan again resumes each configuration's
newest run: finished pairs are skipped and failed ones retried. Results are written one pair at a
time, so an interruption loses at most the pair in flight. This process is the store's only writer.

A subject that cannot be loaded (:func:`warpbench.datasets.load_subject`) costs only its pairs:
each subject of a pair still to do is checked once per command (when MI(i;s) is computed, or
before its first pair), named once in the summary, and its pairs are stored as failed with the
reason without reaching the executor.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from tqdm import tqdm

from warpbench import mi
from warpbench.compatibility import in_domain, incompatibility
from warpbench.config import Config, build_dataset
from warpbench.datasets import (Dataset, DatasetConfigError, Pair, Subject, SubjectError,
                                load_subject)
from warpbench.executors import RunWork, loading_failed
from warpbench.methods import LearningMethod, availability_of
from warpbench.plugins import Registry
from warpbench.provenance import environment
from warpbench.store import Store
from warpbench.training import CurveRecorder, TrainingJob, training_key


@dataclass(frozen=True)
class PlannedTraining:
    method: str
    preset: str
    dataset: str

    def __str__(self) -> str:
        return f"{self.method}:{self.preset} trained on {self.dataset}"


@dataclass(frozen=True)
class PlannedRun:
    method: str
    preset: str
    dataset: str
    train_dataset: str | None = None  # a learning method's training dataset

    @property
    def training(self) -> PlannedTraining | None:
        if self.train_dataset is None:
            return None
        return PlannedTraining(self.method, self.preset, self.train_dataset)

    def __str__(self) -> str:
        trained = f" trained on {self.train_dataset}," if self.train_dataset else ""
        return f"{self.method}:{self.preset}{trained} on {self.dataset}"


@dataclass
class Plan:
    runs: list[PlannedRun] = field(default_factory=list)
    trainings: list[PlannedTraining] = field(default_factory=list)
    datasets: dict[str, Dataset] = field(default_factory=dict)  # evaluated or trained on
    unavailable: dict[str, str] = field(default_factory=dict)  # dataset -> reason
    unavailable_methods: dict[str, str] = field(default_factory=dict)  # method -> reason
    #: (training dataset, evaluated dataset) -> why networks trained on one are not evaluated on
    #: the other (or, with the same name twice, why nothing trains on it).
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Summary:
    runs_done: int = 0
    runs_up_to_date: int = 0
    pairs_ok: int = 0
    pairs_failed: int = 0
    trainings_done: int = 0
    trainings_cached: int = 0
    trainings_failed: int = 0
    failures: list[str] = field(default_factory=list)
    #: Runs not evaluated because their training failed, with the reason.
    skipped: list[str] = field(default_factory=list)
    #: What the user should know that is not a failure (a dataset whose files changed, say).
    notes: list[str] = field(default_factory=list)
    #: The run of every planned configuration that was evaluated (computed or already complete).
    run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Trained:
    """The outcome of a planned training: its key, and its weights or why there are none."""

    key: str
    weights: Path | None = None
    error: str | None = None


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


def make_plan(registry: Registry, config: Config, methods: list[str], datasets: list[str],
              train_on: list[str] | None = None) -> Plan:
    """Expand names into trainings and runs; datasets that cannot be built or are missing their
    files, and methods that cannot run here, are set aside with the reason instead of failing
    the plan. Learning methods train on ``train_on`` (default: every dataset of ``datasets``
    with train subjects) and are evaluated on every compatible dataset of ``datasets``."""
    plan = Plan()
    method_presets = [mp for spec in methods for mp in expand_method_spec(spec, registry)]
    for name in dict.fromkeys(m for m, _ in method_presets):
        available, reason = availability_of(registry.methods[name])
        if not available:
            plan.unavailable_methods[name] = reason
    method_presets = [(m, p) for m, p in method_presets if m not in plan.unavailable_methods]
    learning = [(m, p) for m, p in method_presets if isinstance(registry.methods[m], LearningMethod)]
    others = [mp for mp in method_presets if mp not in learning]
    evaluated = [d for d in (_usable(config, registry, plan, name) for name in datasets) if d]
    for dataset in evaluated:
        plan.runs.extend(PlannedRun(m, p, dataset.name) for m, p in others)
    if not learning:
        return plan
    if train_on is None:
        sources = [d for d in evaluated if d.subjects("train")]
    else:
        sources = [d for d in (_usable(config, registry, plan, name) for name in train_on) if d]
        for dataset in [d for d in sources if not d.subjects("train")]:
            plan.skipped[(dataset.name, dataset.name)] = (
                f"dataset {dataset.name!r} has no train subjects, so nothing trains on it")
            sources.remove(dataset)
    for source in sources:
        for target in evaluated:
            reason = incompatibility(source, target)
            if reason:
                plan.skipped[(source.name, target.name)] = reason
    for method, preset in learning:
        for source in sources:
            plan.trainings.append(PlannedTraining(method, preset, source.name))
            plan.runs.extend(PlannedRun(method, preset, target.name, source.name)
                             for target in evaluated if (source.name, target.name) not in plan.skipped)
    return plan


def _usable(config: Config, registry: Registry, plan: Plan, name: str) -> Dataset | None:
    """The dataset ``name``, added to ``plan.datasets``; None (with the reason in
    ``plan.unavailable``) when it cannot be built, its files are missing or its split is wrong."""
    if name in plan.datasets or name in plan.unavailable:
        return plan.datasets.get(name)
    try:
        dataset = build_dataset(config, name, registry.dataset_kinds)
        available, reason = dataset.availability()
        if available:
            dataset.pairs("test")  # checks the split against the subjects found
    except DatasetConfigError as exc:
        available, reason = False, str(exc)
    if not available:
        plan.unavailable[name] = reason
        return None
    plan.datasets[name] = dataset
    return dataset


def config_key(method, preset: str, dataset: Dataset, seed: int, training: str | None) -> str:
    """A run's configuration; ``training`` is its training key (None for untrained methods)."""
    blob = json.dumps(
        [method.name, preset, method.presets[preset], method.version, dataset.name,
         dataset.fingerprint(), training, seed],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class LoadedSubjects:
    """A dataset's test subjects: those that load, and why each of the others does not."""

    loaded: list[Subject]
    unloadable: dict[str, str]  # subject id -> the error naming it


def load_test_subjects(dataset: Dataset) -> LoadedSubjects:
    loaded, unloadable = [], {}
    for subject_id in dataset.subjects("test"):
        try:
            loaded.append(load_subject(dataset, subject_id))
        except SubjectError as exc:
            unloadable[subject_id] = str(exc)
    return LoadedSubjects(loaded, unloadable)


def describe_dataset(dataset: Dataset, test: LoadedSubjects | None = None) -> dict:
    """A dataset's store row: sizes, grid, labels and MI(i;s) over the test subjects that load
    (``test``, loaded here when not given); the estimator's text says how many those were."""
    test = load_test_subjects(dataset) if test is None else test
    subjects = test.loaded
    tested = len(subjects) + len(test.unloadable)
    used = f"{len(subjects)} of {tested} test subjects"
    if subjects:
        estimate = mi.mutual_information([s.image for s in subjects], [s.labels for s in subjects])
        estimator = (f"plug-in joint histogram, {estimate['bins']} intensity bins, over {used} "
                     "(warpbench.mi states the normalisation and mask)")
    else:
        estimate = dict.fromkeys(("mi_bits", "label_entropy_bits", "nmi"), float("nan"))
        estimator = f"not computed: {used} could be loaded"
    return {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint(),
        "kind": dataset.kind,
        "subjects": len(dataset.all_subjects()),
        "train_subjects": len(dataset.subjects("train")),
        "val_subjects": len(dataset.subjects("val")),
        "test_subjects": tested,
        "test_pairs": len(dataset.pairs("test")),
        "shape": list(subjects[0].image.shape) if subjects else None,
        "spacing": list(subjects[0].spacing) if subjects else None,
        "labels": {str(k): v for k, v in dataset.labels.items()},
        "mi_bits": estimate["mi_bits"],
        "label_entropy_bits": estimate["label_entropy_bits"],
        "nmi": estimate["nmi"],
        "mi_estimator": estimator,
    }


class Scheduler:
    def __init__(self, registry: Registry, store: Store, executor, *, seed: int = 0,
                 time_limit: float | None = None, restart: bool = False, progress: bool = True,
                 checkpoints: str | Path | None = None):
        self.registry = registry
        self.store = store
        self.executor = executor
        self.seed = seed
        self.time_limit = time_limit
        self.restart = restart
        self.progress = progress
        #: Trained weights live next to the store unless told otherwise.
        self.checkpoints = Path(checkpoints) if checkpoints else store.path.parent / "checkpoints"
        self._trained: dict[str, Trained] = {}  # by training key
        #: (dataset fingerprint, subject) -> why it does not load, or None: checked once each.
        self._load_errors: dict[tuple[str, str], str | None] = {}

    def run(self, plan: Plan) -> Summary:
        """Train what is missing and evaluate every planned run, holding the store's writer
        lease throughout: another writer between two of its writes would resume the same runs."""
        with self.store.writer_lease("warpbench run"):
            return self._run(plan)

    def _run(self, plan: Plan) -> Summary:
        summary = Summary()
        for dataset in plan.datasets.values():
            if not self.store.has_dataset(dataset.name, dataset.fingerprint()):
                self._note_changed(dataset, summary)
                test = load_test_subjects(dataset)
                for subject_id in dataset.subjects("test"):
                    self._checked(dataset, subject_id, test.unloadable.get(subject_id), summary)
                self.store.record_dataset(describe_dataset(dataset, test))
            elif self.store.reinstate_dataset(dataset.name, dataset.fingerprint()):
                summary.notes.append(
                    f"dataset {dataset.name!r} is back to a version stored before (fingerprint "
                    f"{dataset.fingerprint()}): its runs on that version resume and are its "
                    "leaderboard again")
        for planned in plan.runs:
            trained = None
            if planned.training is not None:
                trained = self._weights_for(planned, plan, summary)
                if trained.error:
                    summary.skipped.append(f"{planned}: not evaluated: training failed: {trained.error}")
                    continue
            self._run_one(planned, plan.datasets[planned.dataset], summary, trained)
        return summary

    def _note_changed(self, dataset: Dataset, summary: Summary) -> None:
        """Say so when a dataset the store knows comes with a new fingerprint: its runs start
        anew instead of resuming (mixing pairs of two versions of the data), and the runs of the
        earlier version stay in the store, off the leaderboard."""
        before = self.store.dataset_description(dataset.name)
        if before is None:
            return
        subjects = len(dataset.all_subjects())
        counts = (f", {before['subjects']} subjects then, {subjects} now"
                  if before["subjects"] != subjects else "")
        summary.notes.append(
            f"dataset {dataset.name!r} changed since it was stored (fingerprint "
            f"{before['fingerprint']} -> {dataset.fingerprint()}: its options, subjects or files "
            f"differ{counts}); its runs start anew, and the earlier runs stay in the store, "
            "off the leaderboard")

    def _weights_for(self, planned: PlannedRun, plan: Plan, summary: Summary) -> Trained:
        """The training a learning run evaluates. Trained (or taken from the cache) only when the
        run has pairs left to score: a finished evaluation needs no weights, so deleted weights,
        or a store merged from another machine, do not make an up-to-date run train again."""
        method = self.registry.methods[planned.method]
        source = plan.datasets[planned.train_dataset]
        key = training_key(method, planned.preset, source, self.seed)
        evaluated = plan.datasets[planned.dataset]
        scored = self.store.finished_pairs(
            config_key(method, planned.preset, evaluated, self.seed, key))
        if self.restart or not {(p.fixed, p.moving) for p in evaluated.pairs("test")} <= scored:
            return self._train(planned.training, source, summary)
        return Trained(key)

    def train(self, plan: Plan) -> Summary:
        """Run the plan's trainings (those not cached yet) and evaluate nothing, holding the
        store's writer lease (see :meth:`run`)."""
        summary = Summary()
        with self.store.writer_lease("warpbench train"):
            for training in plan.trainings:
                self._train(training, plan.datasets[training.dataset], summary)
        return summary

    # --- provenance ----------------------------------------------------------------------------
    def _provenance(self, method, preset: str) -> dict:
        """What runs and trainings record alike about the method, software and machine."""
        plugin = self.registry.plugin_of("method", method.name)
        return {
            "method": method.name, "preset": preset,
            "params": method.stored_params(preset),
            "method_version": method.version, "family": method.family,
            "supervision": method.supervision_of(preset), "plugin": plugin.name,
            "plugin_distribution": plugin.distribution, "plugin_version": plugin.version,
            "seed": self.seed, **environment(self.executor.device),
        }

    # --- training ------------------------------------------------------------------------------
    def _train(self, training: PlannedTraining, dataset: Dataset, summary: Summary) -> Trained:
        """The training's weights: from the cache when its row is complete and the weights
        exist, else by calling ``train`` (which resumes from the checkpoints in its folder).
        A training that raises is recorded as failed with its error; one that is interrupted is
        recorded as interrupted and the interruption goes on."""
        method = self.registry.methods[training.method]
        key = training_key(method, training.preset, dataset, self.seed)
        if key in self._trained:  # this training, or a preset's that differs only at test time
            return self._trained[key]
        row = self.store.training(key)
        if row and row["status"] == "complete" and row["weights"] and Path(row["weights"]).exists():
            summary.trainings_cached += 1
            self._trained[key] = Trained(key, Path(row["weights"]))
            return self._trained[key]

        folder = self.checkpoints / method.name / key
        folder.mkdir(parents=True, exist_ok=True)
        provenance = {**self._provenance(method, training.preset), "train_dataset": dataset.name,
                      "train_dataset_fingerprint": dataset.fingerprint()}
        self.store.begin_training(key, provenance, str(folder))
        curves = CurveRecorder(self.store, key)
        bar = tqdm(desc=f"training {training}", unit="step", file=sys.stderr,
                   disable=not self.progress, leave=True)
        steps: dict[str, int | None] = {"done": None, "total": None}

        def log(step, split, name, value):
            curves.log(step, split, name, value)
            if split == "train":
                bar.set_postfix({name: f"{value:.4g}"}, refresh=False)

        def progress(done, total):
            steps["done"], steps["total"] = int(done), int(total)
            bar.total = total
            bar.update(done - bar.n)

        job = TrainingJob(dataset, dict(method.presets[training.preset]), self.executor.device,
                          self.seed, folder, log=log, progress=progress)
        status, weights, error = "failed", None, None
        start = time.perf_counter()
        try:
            returned = method.train(job)
            if returned is None or not Path(returned).exists():
                raise FileNotFoundError(f"train() returned {returned!r}, which does not exist")
            weights, status = Path(returned).resolve(), "complete"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            bar.close()
            curves.flush()
            self.store.end_training(
                key, status, seconds=time.perf_counter() - start,
                weights=str(weights) if weights else None, error=error,
                steps=steps["done"] if steps["done"] is not None else curves.last_step or None,
                total_steps=steps["total"])
        if error:
            summary.trainings_failed += 1
            summary.failures.append(f"{training}: training failed: {error}")
        else:
            summary.trainings_done += 1
        self._trained[key] = Trained(key, weights, error)
        return self._trained[key]

    # --- evaluation ----------------------------------------------------------------------------
    def _checked(self, dataset: Dataset, subject_id: str, error: str | None,
                 summary: Summary) -> None:
        """Remember whether a subject loads; one that does not is named once in the summary."""
        self._load_errors[(dataset.fingerprint(), subject_id)] = error
        if error:
            summary.failures.append(f"{error} (its pairs are stored as failed)")

    def _load_error(self, dataset: Dataset, subject_id: str, summary: Summary) -> str | None:
        """Why a subject does not load (None when it does), loading it on its first question."""
        key = (dataset.fingerprint(), subject_id)
        if key not in self._load_errors:
            try:
                load_subject(dataset, subject_id)
                self._checked(dataset, subject_id, None, summary)
            except SubjectError as exc:
                self._checked(dataset, subject_id, str(exc), summary)
        return self._load_errors[key]

    def _unloadable(self, dataset: Dataset, pairs: list[Pair],
                    summary: Summary) -> dict[Pair, str]:
        """The pairs of ``pairs`` with a subject that does not load, with the error naming it."""
        errors = {}
        for pair in pairs:
            error = (self._load_error(dataset, pair.fixed, summary)
                     or self._load_error(dataset, pair.moving, summary))
            if error:
                errors[pair] = error
        return errors

    def _run_one(self, planned: PlannedRun, dataset: Dataset, summary: Summary,
                 trained: Trained | None) -> None:
        method = self.registry.methods[planned.method]
        key = config_key(method, planned.preset, dataset, self.seed, trained and trained.key)
        provenance = {
            **self._provenance(method, planned.preset),
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
            "train_dataset": planned.train_dataset,
            "in_domain": in_domain(planned.train_dataset, dataset.name),
            "training_key": trained and trained.key,
        }
        state = self.store.begin_run(key, provenance, restart=self.restart)
        summary.run_ids.append(state.run_id)
        pairs = dataset.pairs("test")
        todo = [p for p in pairs if (p.fixed, p.moving) not in state.done]
        if not todo:
            if state.status != "complete":  # killed after its last pair was stored
                self.store.end_run(state.run_id, "complete")
            summary.runs_up_to_date += 1
            return
        unloadable = self._unloadable(dataset, todo, summary)
        work = RunWork(method, method.presets[planned.preset], dataset,
                       [p for p in todo if p not in unloadable],
                       self.seed, self.time_limit, trained and trained.weights)
        device = self.executor.device
        results = chain((loading_failed(p, error, device) for p, error in unloadable.items()),
                        self.executor.evaluate(work))
        bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc=str(planned),
                   unit="pair", file=sys.stderr, disable=not self.progress, leave=True)
        try:
            for result in results:
                attempt = state.attempts.get((result.fixed, result.moving), 0) + 1
                self.store.record_pair(state.run_id, attempt, result)
                if result.status == "ok":
                    summary.pairs_ok += 1
                    bar.set_postfix(dice=f"{result.mean_dice:.3f}" if result.mean_dice is not None else "-")
                else:
                    summary.pairs_failed += 1
                    if Pair(result.fixed, result.moving) not in unloadable:  # named once, above
                        summary.failures.append(
                            f"{planned}: {result.fixed} <- {result.moving}: {result.error}")
                bar.update()
        except BaseException:
            self.store.end_run(state.run_id, "interrupted")
            raise
        finally:
            bar.close()
        self.store.end_run(state.run_id, "complete")
        summary.runs_done += 1
