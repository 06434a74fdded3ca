"""Equal-budget tuning (``warpbench tune``): every method searched by one protocol on the
validation pairs only, so that a method does not win by its author's tuning effort.

The protocol, the same for every method:

- the search space is the method's own declaration (``Method.search_space``); every parameter it
  does not name keeps the ``default`` preset's value;
- trial 0 is the ``default`` preset (where it lies in the space), so the tuned preset scores at
  least as well as the shipped one on the validation pairs;
- Optuna's TPE sampler, seeded: trial ``n`` is sampled by a sampler seeded with (seed, n) from
  the trials before it, so the same seed gives the same trials, and a tuning resumed after an
  interruption samples exactly what it would have sampled uninterrupted;
- the objective is the mean Dice over the dataset's validation pairs (a pair that fails counts
  0), subject to a regular field: a trial whose mean folding exceeds ``max_folding`` % of voxels
  is infeasible (Optuna's constraint) and never becomes the tuned preset;
- the pairs are taken in one fixed order (whatever order an executor's workers finish them in),
  and a pruner (Optuna's PercentilePruner) stops a trial whose running mean after its early
  pairs is in the worst quarter of the trials before (not a learning method's trial: its cost,
  the training, is spent before its first pair, so stopping it saves nothing and loses a
  trained candidate);
- the budget is a number of trials or of registration seconds (a learning method's training
  seconds count too, its training capped by ``LearningMethod.tuning_budget``), the same for every
  method of one ``warpbench tune --suite`` call; what each used is stored;
- no test pair is registered: the pairs come from the validation split and are checked against
  the test split before any is registered, and the dataset a method sees while tuning refuses
  the test split (:class:`ValidationOnly`); a breach raises :class:`SplitLeak`.

The best feasible trial becomes the preset ``tuned@DATASET`` (:func:`add_tuned_presets` gives it
to the methods of a registry, as ``warpbench run`` does), whose test-split run is an ordinary run;
a learning method's tuned preset trains under its default's budget, not the trials' cap.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from warpbench import search_space
from warpbench.datasets import Dataset, Pair
from warpbench.executors import RunWork
from warpbench.methods import LearningMethod, Method
from warpbench.options import OptionsError
from warpbench.provenance import environment
from warpbench.store import Store
from warpbench.training import TrainingJob

OBJECTIVE = "mean Dice over the validation pairs, a failed pair counting 0"
DEFAULT_TRIALS = 30
#: Validation pairs drawn when the dataset's block names none (``pairs: {val: N}`` names some).
DEFAULT_PAIRS = 10
#: Mean % of voxels with a non-positive Jacobian determinant above which a trial is infeasible.
DEFAULT_MAX_FOLDING = 0.1
#: Trials TPE samples at random before it models the good ones (fewer for a short budget).
STARTUP_TRIALS = 10
#: A trial is pruned when its running mean is below this percentile of the trials before at the
#: same pair, once this many trials have finished and it has scored this many pairs.
PRUNE_PERCENTILE = 25.0
PRUNE_STARTUP_TRIALS = 5
PRUNE_WARMUP_PAIRS = 3


class TuningError(ValueError):
    """A tuning that cannot be done as asked (no validation pairs, a method without a search
    space, a budget that is not one); the message names the method, dataset or option."""


class SplitLeak(AssertionError):
    """Tuning reached the test split: a bug in the platform or the method, never a result."""


#: What the name of every tuned preset starts with (``tuned@DATASET``).
TUNED_PREFIX = "tuned@"


def tuned_preset_name(dataset: str) -> str:
    """The preset a tuning on ``dataset`` defines."""
    return f"{TUNED_PREFIX}{dataset}"


def is_tuned_preset(preset: str) -> bool:
    """Whether ``preset`` names a tuned preset, which a tuning in a store defines (not a plugin):
    a run of one is replayed with the parameters stored with it (:mod:`warpbench.replay`)."""
    return isinstance(preset, str) and preset.startswith(TUNED_PREFIX)


@dataclass(frozen=True)
class Budget:
    """What a tuning may spend: a number of trials, or of seconds (registration seconds, and a
    learning method's training seconds). The trial in flight when seconds run out finishes."""

    trials: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if (self.trials is None) == (self.seconds is None):
            raise TuningError("a tuning budget is either a number of trials or of seconds")
        if (self.trials is not None and self.trials < 1) or \
                (self.seconds is not None and not self.seconds > 0):
            raise TuningError(f"a tuning budget must be positive, got {self}")

    def spent(self, trials: int, seconds: float) -> bool:
        if self.trials is not None:
            return trials >= self.trials
        return seconds >= self.seconds

    def __str__(self) -> str:
        return f"{self.trials} trials" if self.trials is not None else f"{self.seconds:g} s"


# --- the validation split, and nothing else ------------------------------------------------------
class ValidationOnly:
    """A dataset as a tuning shows it to a method and an executor: everything but the test split.
    ``subjects("test")``, ``pairs("test")`` and loading a test subject raise
    :class:`SplitLeak`, and each attempt is kept in :attr:`breaches` (the platform's loading
    turns a reader's exception into a failed pair, so the tuner checks them after each pair)."""

    def __init__(self, dataset: Dataset):
        self._dataset = dataset
        self._test = set(dataset.subjects("test"))
        self.breaches: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self._dataset, name)

    def _refuse(self, what: str):
        message = f"dataset {self._dataset.name!r}: tuning reached the test split ({what})"
        self.breaches.append(message)
        raise SplitLeak(message)

    def subjects(self, split: str) -> list[str]:
        if split == "test":
            self._refuse("its subjects were asked for")
        return self._dataset.subjects(split)

    def pairs(self, split: str = "val") -> list[Pair]:
        if split == "test":
            self._refuse("its pairs were asked for")
        return self._dataset.pairs(split)

    def load(self, subject_id: str):
        if subject_id in self._test:
            self._refuse(f"test subject {subject_id!r} was loaded")
        return self._dataset.load(subject_id)


def validation_pairs(dataset: Dataset, count: int = DEFAULT_PAIRS) -> list[Pair]:
    """The pairs a tuning registers, in order: the dataset's own validation pairs when its block
    names some (``pairs: {val: N}``), else ``count`` drawn as that block would draw them. Raises
    :class:`TuningError` when the validation split has fewer than two subjects."""
    subjects = dataset.subjects("val")
    if len(subjects) < 2:
        raise TuningError(
            f"dataset {dataset.name!r} has {len(subjects)} validation subject(s): tuning "
            "registers only validation pairs, so it needs at least 2 (split: {val: ...} in its "
            "datasets.yaml block)")
    if dataset.settings.pairs.val:
        return dataset.pairs("val")
    drawn = dataset.settings.pairs.model_copy(update={"val": count})
    view = _with_settings(dataset, dataset.settings.model_copy(update={"pairs": drawn}))
    return view.pairs("val")


def _with_settings(dataset: Dataset, settings) -> Dataset:
    """A shallow copy of ``dataset`` reading ``settings`` (its own pairing code, other counts)."""
    view = copy.copy(dataset)
    view.settings = settings
    return view


def check_validation_only(dataset: Dataset, pairs: list[Pair]) -> None:
    """Raise :class:`SplitLeak` unless every subject of ``pairs`` is a validation subject
    and none is a test subject: checked before any pair is registered."""
    val, test = set(dataset.subjects("val")), set(dataset.subjects("test"))
    for pair in pairs:
        for subject in (pair.fixed, pair.moving):
            if subject in test or subject not in val:
                raise SplitLeak(f"dataset {dataset.name!r}: tuning pair {pair.fixed} <- "
                                      f"{pair.moving} has {subject!r}, not a validation subject")


# --- one trial -----------------------------------------------------------------------------------
@dataclass
class TrialOutcome:
    """How a trial ended: ``complete``, ``pruned`` or ``failed`` (with the error)."""

    state: str
    training_seconds: float = 0.0
    error: str | None = None


def run_trial(executor, method: Method, params: dict[str, Any], dataset: ValidationOnly,
              pairs: list[Pair], *, seed: int, time_limit: float | None,
              on_pair: Callable[[Any], bool], training_folder: Path | None = None,
              config=None) -> TrialOutcome:
    """Evaluate one trial: train a learning method under ``params`` (in ``training_folder``,
    resuming from its checkpoints), then register ``pairs`` through ``executor`` (as a run's
    pairs are) and hand each result to ``on_pair``, which stores it and says whether to stop
    (pruning). The one place a trial meets an executor, so an executor that spreads pairs
    over workers spreads trials too (``config``: the ``datasets.yaml`` a worker process builds
    the dataset again from).

    ``on_pair`` gets the results in the order of ``pairs``, whatever order the executor's
    workers finish them in (a result that comes early waits for those before it), so the
    pruner sees the same running means, and a seed gives the same trials, on one worker or
    many; when the trial is pruned, results that came early are dropped, as they would not
    have been registered one pair after another."""
    weights, training_seconds = None, 0.0
    if isinstance(method, LearningMethod):
        training_folder.mkdir(parents=True, exist_ok=True)
        job = TrainingJob(dataset, dict(params), executor.device, seed, training_folder)
        start = time.perf_counter()
        try:
            weights = Path(method.train(job))
        except Exception as exc:
            if dataset.breaches:  # not a failed trial: a breach of the protocol
                raise SplitLeak("; ".join(dataset.breaches)) from exc
            return TrialOutcome("failed", time.perf_counter() - start,
                                f"training failed: {type(exc).__name__}: {exc}")
        training_seconds = time.perf_counter() - start
        if dataset.breaches:
            raise SplitLeak("; ".join(dataset.breaches))
    work = RunWork(method, params, dataset, pairs, seed, time_limit, weights, config=config)
    place = {(pair.fixed, pair.moving): index for index, pair in enumerate(pairs)}
    early: dict[int, Any] = {}  # results that came before one of an earlier pair
    following = 0  # the place of the next result on_pair gets
    with closing(executor.evaluate(work)) as results:
        for result in results:
            if dataset.breaches:
                raise SplitLeak("; ".join(dataset.breaches))
            early[place[(result.fixed, result.moving)]] = result
            while following in early:
                if on_pair(early.pop(following)):
                    return TrialOutcome("pruned", training_seconds)
                following += 1
    for index in sorted(early):  # an executor that never returned a pair: the rest in order
        if on_pair(early[index]):
            return TrialOutcome("pruned", training_seconds)
    return TrialOutcome("complete", training_seconds)


def trial_scores(pairs: list[dict]) -> dict[str, Any]:
    """A trial's scores from its pairs' rows: the objective (mean Dice, a failed pair 0), the
    mean HD95, SDlogJ and folding of the scored pairs, counts and registration seconds."""
    ok = [p for p in pairs if p["status"] == "ok"]

    def mean(column, rows):
        values = [p[column] for p in rows if p[column] is not None and not _nan(p[column])]
        return float(np.mean(values)) if values else None

    dice = [p["mean_dice"] if p["status"] == "ok" and not _nan(p["mean_dice"]) else 0.0
            for p in pairs]
    return {
        "value": float(np.mean(dice)) if ok else None,
        "mean_hd95": mean("mean_hd95", ok), "sdlogj": mean("sdlogj", ok),
        "folding_percent": mean("folding_percent", ok),
        "pairs_scored": len(ok), "pairs_failed": len(pairs) - len(ok),
        "seconds": float(sum(p["seconds"] or 0.0 for p in pairs if not _nan(p["seconds"]))),
    }


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _row(result) -> dict:
    """A :class:`PairResult` as the columns :func:`trial_scores` reads."""
    return {"fixed": result.fixed, "moving": result.moving, "status": result.status,
            "mean_dice": result.mean_dice, "mean_hd95": result.mean_hd95,
            "sdlogj": result.sdlogj, "folding_percent": result.folding_percent,
            "seconds": result.seconds}


# --- a tuning ------------------------------------------------------------------------------------
@dataclass
class TuningOutcome:
    """What one tuning of a method on a dataset did and found."""

    key: str
    method: str
    dataset: str
    preset: str
    budget: Budget
    trials: int = 0
    seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    #: The best trial's sampled parameters (the rest are the default preset's).
    best_sampled: dict[str, Any] | None = None


def tuning_key(method: Method, dataset: Dataset, seed: int, pairs: list[Pair],
               max_folding: float) -> str:
    """What decides a tuning's trials: the method (version, default preset, search space and
    training cap), the dataset and its fingerprint, the pairs, the seed, objective and
    constraint. Not the budget: a larger budget goes on with the same trials."""
    blob = json.dumps(
        [method.name, method.version, method.presets["default"],
         search_space.describe(method.search_space), getattr(method, "tuning_budget", {}),
         dataset.name, dataset.fingerprint(), [(p.fixed, p.moving) for p in pairs], seed,
         # Named only where it does not prune, so the keys of the pruned tunings stay the same.
         OBJECTIVE, max_folding, *([] if prunes(method) else ["never pruned"])],
        sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def prunes(method: Method) -> bool:
    """Whether a tuning stops ``method``'s trials on their early pairs: not a learning
    method's, whose trial has paid for its training before its first pair."""
    return not isinstance(method, LearningMethod)


def trial_seed(seed: int, trial: int) -> int:
    """The seed of the sampler that samples trial ``trial`` of a tuning seeded ``seed``."""
    return int(np.random.SeedSequence([seed, trial]).generate_state(1)[0])


class Tuner:
    """Tunes methods on datasets into a store through an executor, resumably: the store's
    finished trials are taken as they are, the unfinished one goes on from its stored pairs."""

    def __init__(self, registry, store: Store, executor, *, seed: int = 0,
                 time_limit: float | None = None, max_folding: float = DEFAULT_MAX_FOLDING,
                 progress: bool = True, checkpoints: str | Path | None = None,
                 on_trial: Callable[[TuningOutcome], None] | None = None, config=None):
        self.registry = registry
        #: The datasets.yaml the datasets come from, for executors with worker processes.
        self.config = config
        self.store = store
        self.executor = executor
        self.seed = seed
        self.time_limit = time_limit
        self.max_folding = max_folding
        self.progress = progress
        self.checkpoints = Path(checkpoints) if checkpoints else store.path.parent / "checkpoints"
        #: Called after every trial (a benchmark exports the tables there).
        self.on_trial = on_trial

    def tune(self, method_name: str, dataset: Dataset, budget: Budget,
             pairs: int = DEFAULT_PAIRS) -> TuningOutcome:
        """Spend ``budget`` on tuning ``method_name`` on ``dataset``'s validation pairs (its own,
        or ``pairs`` drawn), holding the store's writer lease throughout."""
        method = self.registry.methods[method_name]
        try:
            search_space.check_space(method)
        except OptionsError as exc:
            raise TuningError(str(exc)) from None
        chosen = validation_pairs(dataset, pairs)
        check_validation_only(dataset, chosen)
        with self.store.writer_lease("warpbench tune"):
            return self._tune(method, dataset, budget, chosen)

    def _provenance(self, method: Method, dataset: Dataset, pairs: list[Pair]) -> dict:
        import optuna

        plugin = self.registry.plugin_of("method", method.name)
        return {
            "method": method.name, "preset": tuned_preset_name(dataset.name),
            "base_params": method.stored_params("default"),
            "method_version": method.version, "family": method.family,
            "supervision": method.supervision_of("default"), "plugin": plugin.name,
            "plugin_distribution": plugin.distribution, "plugin_version": plugin.version,
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
            "seed": self.seed,
            "search_space": json.dumps({"space": search_space.describe(method.search_space),
                                        "training_cap": getattr(method, "tuning_budget", {})},
                                       sort_keys=True),
            "validation_pairs": json.dumps([[p.fixed, p.moving] for p in pairs]),
            "objective": OBJECTIVE, "max_folding": self.max_folding,
            "sampler": f"optuna TPESampler (seeded per trial from seed {self.seed}, "
                       f"{STARTUP_TRIALS} random startup trials)",
            "pruner": (f"optuna PercentilePruner ({PRUNE_PERCENTILE:g}th percentile, after "
                       f"{PRUNE_STARTUP_TRIALS} trials and {PRUNE_WARMUP_PAIRS} pairs)"
                       if prunes(method) else "none (a trial's training is spent before its "
                       "first pair)"),
            "optuna_version": optuna.__version__, **environment(self.executor.device),
        }

    def _tune(self, method: Method, dataset: Dataset, budget: Budget,
              pairs: list[Pair]) -> TuningOutcome:
        key = tuning_key(method, dataset, self.seed, pairs, self.max_folding)
        state = self.store.begin_tuning(key, self._provenance(method, dataset, pairs),
                                        budget.trials, budget.seconds)
        outcome = TuningOutcome(key, method.name, dataset.name, tuned_preset_name(dataset.name),
                                budget)
        stored_pairs = state.pairs
        finished = [_stored_row(t, stored_pairs.get(int(t["trial"]), [])) for t in state.finished]
        guarded = ValidationOnly(dataset)
        bar = _progress_bar(f"tuning {method.name} on {dataset.name}", budget, self.progress)
        try:
            while not budget.spent(len(finished), _seconds(finished)):
                number = len(finished)
                row = self._trial(method, guarded, pairs, key, number, finished,
                                  stored_pairs.get(number, []))
                finished.append(row)
                self._update(outcome, method, finished)
                bar.update(1 if budget.trials is not None else row["seconds_spent"])
                if outcome.best_value is not None:
                    bar.set_postfix(best=f"{outcome.best_value:.3f}")
                if self.on_trial:
                    self.on_trial(outcome)
        except BaseException:
            self.store.end_tuning(key, "interrupted")
            raise
        finally:
            bar.close()
        self._update(outcome, method, finished)
        self.store.end_tuning(key, "complete")
        return outcome

    def _trial(self, method: Method, dataset: ValidationOnly, pairs: list[Pair], key: str,
               number: int, finished: list[dict], stored: list[dict]) -> dict:
        """Sample, evaluate and store trial ``number``; its row (as ``tuning_trials`` holds
        it, with ``seconds_spent``: what it cost of the budget)."""
        space = method.search_space
        study = self._study(space, finished)
        default = search_space.within(space, method.presets["default"])
        if number == 0 and default is not None:
            study.enqueue_trial(search_space.encode(space, default))
        asked = study.ask(search_space.distributions(space))
        sampled = search_space.decode(space, asked.params)
        params = {**method.presets["default"], **sampled}
        if isinstance(method, LearningMethod):
            params = method.capped(params)
        sampled_text, params_text = _json(sampled), _json(params)
        if not self.store.begin_trial(key, number, sampled_text, params_text):
            stored = []
        done = list(stored)
        for step in range(len(done)):  # the pruner sees a resumed trial as it saw it first
            asked.report(trial_scores(done[: step + 1])["value"] or 0.0, step)
        scored = {(p["fixed"], p["moving"]) for p in done}
        todo = [p for p in pairs if (p.fixed, p.moving) not in scored]
        positions = {(p.fixed, p.moving): i for i, p in enumerate(pairs)}
        prunable = prunes(method)

        def stop_early() -> bool:
            return prunable and len(done) < len(pairs) and asked.should_prune()

        def on_pair(result) -> bool:
            self.store.record_tuning_pair(key, number, positions[(result.fixed, result.moving)],
                                          result)
            done.append(_row(result))
            step = len(done) - 1
            asked.report(trial_scores(done)["value"] or 0.0, step)
            return stop_early()

        if done and stop_early():  # a resumed trial the pruner had already stopped
            outcome = TrialOutcome("pruned")
        else:
            folder = self.checkpoints / "tuning" / key / f"trial-{number}"
            outcome = run_trial(self.executor, method, params, dataset, todo, seed=self.seed,
                                time_limit=self.time_limit, on_pair=on_pair,
                                training_folder=folder, config=self.config)
        scores = {**trial_scores(done), "training_seconds": outcome.training_seconds,
                  "error": outcome.error}
        state = outcome.state
        if state == "complete" and scores["pairs_scored"] == 0:
            state, scores["error"] = "failed", "no validation pair was scored"
        row = {"trial": number, "state": state, "sampled": sampled_text, "params": params_text,
               **scores, "intermediate": _running_means(done)}
        row["seconds_spent"] = (scores["seconds"] or 0.0) + outcome.training_seconds
        with_this = [*finished, row]
        best = self._best(with_this)
        self.store.end_trial(key, number, state, scores, used_trials=len(with_this),
                             used_seconds=_seconds(with_this),
                             best=best and {"trial": best["trial"], "value": best["value"],
                                            "params": tuned_params(method, best)})
        return row

    def _study(self, space, finished: list[dict]):
        """An Optuna study holding the ``finished`` trials, whose sampler (seeded by this
        tuning's seed and the number of the trial to come) samples the next one."""
        import optuna  # here: `warpbench run` imports this module, and needs no optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        number = len(finished)
        sampler = optuna.samplers.TPESampler(
            seed=trial_seed(self.seed, number), n_startup_trials=STARTUP_TRIALS)
        pruner = optuna.pruners.PercentilePruner(
            PRUNE_PERCENTILE, n_startup_trials=PRUNE_STARTUP_TRIALS,
            n_warmup_steps=PRUNE_WARMUP_PAIRS - 1)
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        distributions = search_space.distributions(space)
        states = {"complete": optuna.trial.TrialState.COMPLETE,
                  "pruned": optuna.trial.TrialState.PRUNED,
                  "failed": optuna.trial.TrialState.FAIL}
        for row in finished:
            complete = row["state"] == "complete"
            study.add_trial(optuna.trial.create_trial(
                state=states[row["state"]],
                value=row["value"] if complete else None,
                params=search_space.encode(space, json.loads(row["sampled"])),
                distributions=distributions,
                intermediate_values=row["intermediate"],
                constraints=({"folding": (row["folding_percent"] or 0.0) - self.max_folding}
                             if complete else None)))
        return study

    def _best(self, rows: list[dict]) -> dict | None:
        """The best feasible complete trial (the lowest number among equals)."""
        feasible = [r for r in rows if r["state"] == "complete" and r["value"] is not None
                    and (r["folding_percent"] or 0.0) <= self.max_folding]
        return max(feasible, key=lambda r: (r["value"], -r["trial"]), default=None)

    def _update(self, outcome: TuningOutcome, method: Method, rows: list[dict]) -> None:
        outcome.trials = len(rows)
        outcome.seconds = _seconds(rows)
        outcome.states = {s: sum(r["state"] == s for r in rows)
                          for s in dict.fromkeys(r["state"] for r in rows)}
        best = self._best(rows)
        if best is not None:
            outcome.best_trial, outcome.best_value = best["trial"], best["value"]
            outcome.best_params = json.loads(tuned_params(method, best))
            outcome.best_sampled = json.loads(best["sampled"])


def tuned_params(method: Method, trial: dict) -> str:
    """The tuned preset a best ``trial`` defines, as JSON: the parameters it ran with; for a
    learning method, the default preset with the trial's sampled values, so its training budget
    is the default's, not the cap each trial trained under (the cap bounds what tuning spends;
    the tuned network is compared with the default at the same budget)."""
    if isinstance(method, LearningMethod):
        return _json({**method.presets["default"], **json.loads(trial["sampled"])})
    return trial["params"]


def _json(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


def _running_means(rows: list[dict]) -> dict[int, float]:
    return {step: trial_scores(rows[: step + 1])["value"] or 0.0 for step in range(len(rows))}


def _stored_row(trial: dict, pairs: list[dict]) -> dict:
    """A finished trial as the store returned it (NaN for NULL) in the form :meth:`Tuner._trial`
    returns, with the running means of its ``pairs``."""
    row = {name: None if _nan(value) else value for name, value in trial.items()}
    row["trial"] = int(row["trial"])
    row["intermediate"] = _running_means(pairs)
    row["seconds_spent"] = (row["seconds"] or 0.0) + (row["training_seconds"] or 0.0)
    return row


def _seconds(rows: list[dict]) -> float:
    """What ``rows`` (finished trials) spent of a budget in seconds."""
    return float(sum(r["seconds_spent"] for r in rows))


def _progress_bar(description: str, budget: Budget, enabled: bool):
    unit = "trial" if budget.trials is not None else "s"
    total = budget.trials if budget.trials is not None else budget.seconds
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=not enabled,
                leave=True)


# --- tuned presets, for every command that runs methods ------------------------------------------
def add_tuned_presets(registry, store: Store) -> list[str]:
    """Give each registered method the ``tuned@DATASET`` presets the store defines (its newest
    complete tuning per dataset), so ``warpbench run --method greedy:tuned@hippocampus`` can name
    them. A stored preset the installed method no longer accepts is left out, and named in the
    returned problems."""
    problems = []
    for row in store.tuned_presets().to_dict("records"):
        method = registry.methods.get(row["method"])
        if method is None:
            continue
        params = json.loads(row["best_params"])
        try:
            method.resolve(params)
        except OptionsError as exc:
            problems.append(f"tuned preset {row['method']}:{row['preset']} is left out: {exc}")
            continue
        # On the instance: the class's presets stay as the plugin declared them.
        method.presets = {**method.presets, row["preset"]: params}
    return problems
