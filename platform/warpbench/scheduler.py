"""Planning and running an evaluation, resumable: every method x preset x dataset, and for
learning methods every training dataset x evaluated dataset (the domain-shift matrix).

The plan is built from names (a suite, or ``--method``/``--dataset``). A learning method is
trained once per cache key (:func:`warpbench.training.training_key`: presets that differ only in
test-time keys share it) on each training dataset (a suite's ``train_on``, by default every
dataset of the plan with train subjects), into ``<checkpoints>/<method>/<key>/`` next to the
store; a training whose row is complete and whose weights exist is not run again, and an
interrupted or failed one is resumed by calling ``train`` again with the same folder. Each
trained network is evaluated on every dataset of the plan, scored with that dataset's own labels;
each run records whether it is in its training domain and on its training label protocol
(:mod:`warpbench.compatibility`).

Each planned run has a configuration key (method, preset and its parameters, method version,
dataset fingerprint, training key, seed); running the same plan again resumes each configuration's
newest run: finished pairs are skipped and failed ones retried. Results are written one pair at a
time, so an interruption loses at most the pairs in flight. This process is the store's only writer.

The executor is handed the work through a feed (:class:`_Execution`): every training the plan
needs first, so that independent trainings run at once where the executor has room (the pool's
workers, Ray's GPUs), then each run in the plan's order as soon as the training it evaluates is
done. Results come back as they finish, from several runs at once, and are recorded here; a
result that arrives twice (a retried task whose first attempt also finished) is stored once.

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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from warpbench import mi
from warpbench.compatibility import in_domain, label_protocol_note, same_labels
from warpbench.config import Config, build_dataset
from warpbench.datasets import (Dataset, DatasetConfigError, Pair, Subject, SubjectError,
                                load_subject)
from warpbench.executors import PairDone, RunWork, TrainingDone, TrainingWork, loading_failed
from warpbench.methods import LearningMethod, availability_of
from warpbench.plugins import Registry
from warpbench.provenance import environment
from warpbench.store import RunState, Store
from warpbench.training import CurveRecorder, training_key


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
    #: (dataset, dataset) -> why nothing trains on a dataset named as a training dataset.
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (training dataset, evaluated dataset) -> what networks trained on one are scored on in the
    #: other, where it has another label protocol (:func:`label_protocol_note`).
    other_labels: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The datasets.yaml the plan's datasets were built from (worker processes build them again).
    config: Config | None = None


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
    with train subjects) and are evaluated on every dataset of ``datasets``."""
    plan = Plan(config=config)
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
            note = label_protocol_note(source, target)
            if note:
                plan.other_labels[(source.name, target.name)] = note
    for method, preset in learning:
        for source in sources:
            plan.trainings.append(PlannedTraining(method, preset, source.name))
            plan.runs.extend(PlannedRun(method, preset, target.name, source.name)
                             for target in evaluated)
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
        execution = _Execution(self, plan, summary)
        for planned in plan.runs:
            execution.add_run(planned)
        execution.execute()
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

    def train(self, plan: Plan) -> Summary:
        """Run the plan's trainings (those not cached yet) and evaluate nothing, holding the
        store's writer lease (see :meth:`run`)."""
        summary = Summary()
        with self.store.writer_lease("warpbench train"):
            execution = _Execution(self, plan, summary)
            for training in plan.trainings:
                execution.add_training(training)
            execution.execute()
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
            "seed": self.seed, **self._environment(),
        }

    def _environment(self) -> dict:
        """The executor's provenance (an executor that is no :class:`Executor`: its device's)."""
        if hasattr(self.executor, "environment"):
            return self.executor.environment()
        return environment(self.executor.device)

    # --- subjects ------------------------------------------------------------------------------
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


@dataclass(eq=False)
class _Training:
    """A training handed to the executor: what records its curve, progress and end."""

    planned: PlannedTraining
    key: str
    curves: CurveRecorder
    bar: tqdm
    started: float = field(default_factory=time.perf_counter)
    steps: dict[str, int | None] = field(default_factory=lambda: {"done": None, "total": None})

    def log(self, step, split, name, value) -> None:
        self.curves.log(step, split, name, value)
        if split == "train":
            self.bar.set_postfix({name: f"{value:.4g}"}, refresh=False)

    def progress(self, done, total) -> None:
        self.steps["done"], self.steps["total"] = int(done), int(total)
        self.bar.total = total
        self.bar.update(done - self.bar.n)


@dataclass(eq=False)
class _Run:
    """A run handed to the executor: the pairs it still owes, and its progress bar."""

    planned: PlannedRun
    state: RunState
    bar: tqdm
    remaining: set[Pair]
    unloadable: dict[Pair, str]


class _Execution:
    """One command's work, as the executor sees it: the feed it takes tasks from (trainings
    first, then each run in the plan's order once the training it evaluates is done) and what
    becomes of each result (:meth:`handle`). It records everything, so the store is written
    by this process only, in the order results arrive.

    A result for a pair its run does not owe any more (one stored already: a retried task whose
    first attempt also finished) is left out, so a pair is stored once per attempt."""

    def __init__(self, scheduler: Scheduler, plan: Plan, summary: Summary):
        self.scheduler = scheduler
        self.store = scheduler.store
        self.plan = plan
        self.summary = summary
        self.trainings: deque[tuple[PlannedTraining, str]] = deque()  # to hand out
        self.ready: deque[tuple[PlannedRun, Trained | None]] = deque()  # runs to hand out
        self.waiting: dict[str, list[PlannedRun]] = {}  # training key -> runs evaluating it
        self.training: dict[TrainingWork, _Training] = {}  # handed out, not done
        self.running: dict[RunWork, _Run] = {}  # handed out, pairs owed

    # --- what there is to do -------------------------------------------------------------------
    def add_run(self, planned: PlannedRun) -> None:
        """Hand out ``planned`` now, or once its training is done. A learning run is trained
        (or taken from the cache) only when it has pairs left to score: a finished evaluation
        needs no weights, so deleted weights, or a store merged from another machine, do not
        make an up-to-date run train again."""
        if planned.training is None:
            self.ready.append((planned, None))
            return
        scheduler = self.scheduler
        method = scheduler.registry.methods[planned.method]
        key = training_key(method, planned.preset, self.plan.datasets[planned.train_dataset],
                           scheduler.seed)
        trained = scheduler._trained.get(key)
        if trained is None:
            trained = self._cached(key) if self._owes_pairs(planned, key) else Trained(key)
        if trained is None:
            self._queue_training(planned.training, key)
            self.waiting[key].append(planned)
        elif trained.error:
            self._skip(planned, trained.error)
        else:
            self.ready.append((planned, trained))

    def add_training(self, training: PlannedTraining) -> None:
        """Train ``training`` unless its complete weights are cached."""
        method = self.scheduler.registry.methods[training.method]
        key = training_key(method, training.preset, self.plan.datasets[training.dataset],
                           self.scheduler.seed)
        if key not in self.scheduler._trained and self._cached(key) is None:
            self._queue_training(training, key)

    def _queue_training(self, training: PlannedTraining, key: str) -> None:
        if key not in self.waiting:  # presets that differ only at test time share a key
            self.waiting[key] = []
            self.trainings.append((training, key))

    def _cached(self, key: str) -> Trained | None:
        """The stored training of ``key`` when it is complete and its weights exist."""
        row = self.store.training(key)
        if row and row["status"] == "complete" and row["weights"] and Path(row["weights"]).exists():
            self.summary.trainings_cached += 1
            self.scheduler._trained[key] = Trained(key, Path(row["weights"]))
            return self.scheduler._trained[key]
        return None

    def _owes_pairs(self, planned: PlannedRun, key: str) -> bool:
        method = self.scheduler.registry.methods[planned.method]
        evaluated = self.plan.datasets[planned.dataset]
        scored = self.store.finished_pairs(
            config_key(method, planned.preset, evaluated, self.scheduler.seed, key))
        wanted = {(p.fixed, p.moving) for p in evaluated.pairs("test")}
        return self.scheduler.restart or not wanted <= scored

    def _skip(self, planned: PlannedRun, error: str) -> None:
        self.summary.skipped.append(f"{planned}: not evaluated: training failed: {error}")

    # --- the feed ------------------------------------------------------------------------------
    def next(self) -> RunWork | TrainingWork | None:
        if self.trainings:
            return self._begin_training(*self.trainings.popleft())
        while self.ready:
            work = self._begin_run(*self.ready.popleft())
            if work is not None:
                return work
        return None

    def _begin_training(self, training: PlannedTraining, key: str) -> TrainingWork:
        """Record the training as running and hand it out; ``train`` resumes from the
        checkpoints in its folder."""
        scheduler = self.scheduler
        method = scheduler.registry.methods[training.method]
        dataset = self.plan.datasets[training.dataset]
        folder = scheduler.checkpoints / method.name / key
        folder.mkdir(parents=True, exist_ok=True)
        provenance = {**scheduler._provenance(method, training.preset),
                      "train_dataset": dataset.name,
                      "train_dataset_fingerprint": dataset.fingerprint()}
        self.store.begin_training(key, provenance, str(folder))
        bar = tqdm(desc=f"training {training}", unit="step", file=sys.stderr,
                   disable=not scheduler.progress, leave=True)
        state = _Training(training, key, CurveRecorder(self.store, key), bar)
        work = TrainingWork(method, dict(method.presets[training.preset]), dataset,
                            scheduler.seed, folder, self.plan.config, log=state.log,
                            progress=state.progress, label=str(training))
        self.training[work] = state
        return work

    def _begin_run(self, planned: PlannedRun, trained: Trained | None) -> RunWork | None:
        """Resume or start the run of ``planned``; its pairs still to do, or None when it has
        none left for the executor (it is then complete)."""
        scheduler = self.scheduler
        method = scheduler.registry.methods[planned.method]
        dataset = self.plan.datasets[planned.dataset]
        key = config_key(method, planned.preset, dataset, scheduler.seed, trained and trained.key)
        source = self.plan.datasets.get(planned.train_dataset)
        provenance = {
            **scheduler._provenance(method, planned.preset),
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
            "train_dataset": planned.train_dataset,
            "in_domain": in_domain(source and source.domain, dataset.domain),
            "same_labels": source and same_labels(source, dataset),
            "pre_aligned": dataset.pre_aligned,
            "training_key": trained and trained.key,
        }
        state = self.store.begin_run(key, provenance, restart=scheduler.restart)
        self.summary.run_ids.append(state.run_id)
        pairs = dataset.pairs("test")
        todo = [p for p in pairs if (p.fixed, p.moving) not in state.done]
        if not todo:
            if state.status != "complete":  # killed after its last pair was stored
                self.store.end_run(state.run_id, "complete")
            self.summary.runs_up_to_date += 1
            return None
        unloadable = scheduler._unloadable(dataset, todo, self.summary)
        bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc=str(planned),
                   unit="pair", file=sys.stderr, disable=not scheduler.progress, leave=True)
        run = _Run(planned, state, bar, set(todo), unloadable)
        try:
            for pair, error in unloadable.items():
                self._record(run, loading_failed(pair, error, scheduler.executor.device))
        except BaseException:
            self._end_run(run, "interrupted")
            raise
        work = RunWork(method, method.presets[planned.preset], dataset,
                       [p for p in todo if p not in unloadable], scheduler.seed,
                       scheduler.time_limit, trained and trained.weights, self.plan.config)
        if not work.pairs:
            self._end_run(run, "complete")
            return None
        self.running[work] = run
        return work

    # --- what comes back -----------------------------------------------------------------------
    def execute(self) -> None:
        """Hand the work to the executor and record what comes back. However it stops (Ctrl-C,
        an error), what was handed out and not finished is recorded as interrupted."""
        try:
            for event in self.scheduler.executor.execute(self):
                if isinstance(event, TrainingDone):
                    self._training_done(event)
                else:
                    self._pair_done(event)
        except BaseException:
            for work in list(self.training):
                self._end_training(work, "interrupted")
            for work in list(self.running):
                self._end_run(self.running.pop(work), "interrupted")
            raise
        for work in list(self.training):  # an executor that dropped work
            self._end_training(work, "failed", error="the executor returned no result")
        for work, run in list(self.running.items()):
            self.summary.failures.append(f"{run.planned}: the executor returned no result for "
                                         f"{len(run.remaining)} pairs")
            self._end_run(self.running.pop(work), "interrupted")

    def _pair_done(self, event: PairDone) -> None:
        run = self.running.get(event.work)
        if run is None:  # a result for a run that owes nothing any more
            return
        self._record(run, event.result)
        if not run.remaining:
            del self.running[event.work]
            self._end_run(run, "complete")

    def _record(self, run: _Run, result) -> None:
        pair = Pair(result.fixed, result.moving)
        if pair not in run.remaining:  # stored already: a result that arrived twice
            return
        attempt = run.state.attempts.get((result.fixed, result.moving), 0) + 1
        self.store.record_pair(run.state.run_id, attempt, result)
        run.remaining.discard(pair)
        if result.status == "ok":
            self.summary.pairs_ok += 1
            run.bar.set_postfix(
                dice=f"{result.mean_dice:.3f}" if result.mean_dice is not None else "-")
        else:
            self.summary.pairs_failed += 1
            if pair not in run.unloadable:  # named once, when it was found
                self.summary.failures.append(
                    f"{run.planned}: {result.fixed} <- {result.moving}: {result.error}")
        run.bar.update()

    def _end_run(self, run: _Run, status: str) -> None:
        run.bar.close()
        self.store.end_run(run.state.run_id, status)
        if status == "complete":
            self.summary.runs_done += 1

    def _training_done(self, event: TrainingDone) -> None:
        state = self.training.get(event.work)
        if state is None:  # reported twice
            return
        status = "failed" if event.error else "complete"
        weights = Path(event.weights).resolve() if event.weights else None
        self._end_training(event.work, status, weights, event.error)
        if event.error:
            self.summary.trainings_failed += 1
            self.summary.failures.append(f"{state.planned}: training failed: {event.error}")
        else:
            self.summary.trainings_done += 1
        trained = Trained(state.key, weights, event.error)
        self.scheduler._trained[state.key] = trained
        for planned in self.waiting.pop(state.key, []):
            if trained.error:
                self._skip(planned, trained.error)
            else:
                self.ready.append((planned, trained))

    def _end_training(self, work: TrainingWork, status: str, weights: Path | None = None,
                      error: str | None = None) -> None:
        """Record how a training ended (its curve points first: all of them, however it
        ended)."""
        state = self.training.pop(work)
        state.bar.close()
        state.curves.flush()
        done = state.steps["done"]
        self.store.end_training(
            state.key, status, seconds=time.perf_counter() - state.started,
            weights=str(weights) if weights else None, error=error,
            steps=done if done is not None else state.curves.last_step or None,
            total_steps=state.steps["total"])
