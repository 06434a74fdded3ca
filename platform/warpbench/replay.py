"""Replaying a stored run: its method, preset, seed and trained weights on its dataset's pairs.

The store keeps scores, not displacement fields (a field is 3 x D x H x W floats per pair), so
whatever shows or exports a run's fields registers its pairs again: the pair viewer and
``warpbench export-fields``, through this module, with one set of rules. A replay is worth
something only if it repeats the registration that was scored, so :func:`prepare` refuses a run,
with a message naming what differs, when the installed method has another version, the preset
now has other parameters, the ``datasets.yaml`` block has another fingerprint, or a trained run's
weights are gone (with the ``warpbench train`` command that makes them again). A run that
recorded no seed is replayed with the runner's default seed, which is the one it ran with.

A run of a tuned preset (``tuned@DATASET``, :mod:`warpbench.tuning`) is replayed with the
parameters stored with it: no plugin declares such a preset, a tuning defines it in the store,
and a later tuning may define it anew, so the run's own row is what it registered with (checked
by the installed method as any preset is).

Pairs are registered through the runner's own ``evaluate_pair``, so a replayed pair is validated,
warped and scored exactly as the stored one was. torch and the plugins are imported only when a
run is replayed, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The seed a run is replayed with when its row has none: the runner's default seed.
DEFAULT_SEED = 0


class ReplayError(ValueError):
    """A stored run (or one of its pairs) that cannot be replayed here; the message says why and
    what to do."""


def _missing(value) -> bool:
    """SQL NULL as pandas reads it: None or NaN."""
    return value is None or value != value


def run_seed(run: dict) -> int:
    """The seed ``run`` registered with (:data:`DEFAULT_SEED` when it recorded none)."""
    seed = run.get("seed")
    return DEFAULT_SEED if _missing(seed) else int(seed)


def find_run(store, run_id: str) -> dict:
    """A run's row (``Store.runs()``) by id or unique id prefix; :class:`ReplayError` otherwise."""
    runs = store.runs()
    if runs.empty:
        raise ReplayError(f"{store.path}: no runs")
    matches = runs[runs["run_id"].str.startswith(run_id)] if run_id else runs.iloc[0:0]
    if matches.empty:
        raise ReplayError(f"{store.path}: no run {run_id!r} (the store's run ids are the run_id "
                          f"column of runs.csv, written by `warpbench export --db {store.path} "
                          "--format csv --out DIR`)")
    if len(matches) > 1:
        raise ReplayError(f"{store.path}: {run_id!r} matches {len(matches)} runs; give more of "
                          "the id")
    return matches.iloc[0].to_dict()


def _named(run: dict) -> str:
    """How messages name a run: its id and configuration, e.g. ``1f0c... (vxm:default trained
    on oasis)``."""
    train = run.get("train_dataset")
    trained = f" trained on {train}" if isinstance(train, str) else ""
    return f"{run.get('run_id')} ({run['method']}:{run['preset']}{trained})"


def _weights_gone(run: dict, what: str, store_path=None) -> ReplayError:
    """The refusal of a trained run whose weights are not there, with the command that trains
    them again (for the store at ``store_path`` when it is known)."""
    store = f" --db {store_path}" if store_path else ""
    command = (f"warpbench train{store} --method {run['method']}:{run['preset']} "
               f"--dataset {run.get('train_dataset')} --seed {run_seed(run)}")
    return ReplayError(
        f"Run {_named(run)} needs the weights of its training, but {what}; "
        f"`warpbench train` makes them again: `{command}` (the re-trained network may score "
        "differently)")


def run_weights(store, run: dict) -> Path | None:
    """The weights file a trained run registered with, found through its ``training_key`` in the
    store's trainings; None for a run without one. :class:`ReplayError` when the training or its
    file is gone, naming the file and the command that trains it again."""
    key = run.get("training_key")
    if not isinstance(key, str):
        return None
    row = store.training(key)
    weights = Path(row["weights"]) if row and isinstance(row.get("weights"), str) else None
    if weights is not None and weights.is_file():
        return weights
    what = (f"its weights {weights} are gone" if weights else
            f"its training {key} has no weights in {store.path}")
    raise _weights_gone(run, what, store.path)


@dataclass
class ReplayedPair:
    """One pair registered again: the two subjects and the runner's result, with the field
    (``result.displacement``) kept."""

    fixed: Any  # warpbench.datasets.Subject
    moving: Any
    result: Any  # warpbench.runner.PairResult


@dataclass
class Replay:
    """A stored run checked to be reproducible here, ready to register its pairs again."""

    run: dict
    method: Any  # warpbench.methods.Method
    params: Any  # the preset's parameters, as the scheduler passes them
    dataset: Any  # warpbench.datasets.Dataset
    seed: int
    weights: Path | None
    _subjects: dict = field(default_factory=dict, repr=False)

    def subject(self, subject_id: str):
        """A subject of the run's dataset, loaded (and checked, as a run loads it) once per
        replay."""
        from warpbench.datasets import load_subject

        if subject_id not in self._subjects:
            self._subjects[subject_id] = load_subject(self.dataset, subject_id)
        return self._subjects[subject_id]

    def register(self, fixed_id: str, moving_id: str, device) -> ReplayedPair:
        """Register one pair with the run's parameters, seed and weights on ``device`` and score
        it as the runner did. :class:`ReplayError` when a subject cannot be loaded; a failed
        registration is the result's ``status`` and ``error``, as in a run."""
        from warpbench.runner import evaluate_pair

        try:
            fixed, moving = self.subject(fixed_id), self.subject(moving_id)
        except Exception as exc:  # a missing or unreadable subject file
            raise ReplayError(f"Cannot load the pair {fixed_id} <- {moving_id} from dataset "
                              f"`{self.dataset.name}`: {type(exc).__name__}: {exc}") from None
        result = evaluate_pair(self.method, self.params, self.dataset, fixed, moving, device,
                               seed=self.seed, keep_field=True, weights=self.weights)
        return ReplayedPair(fixed, moving, result)


def _stored_params(run: dict):
    text = run.get("params")
    return json.loads(text) if isinstance(text, str) else None


def _tuned_params(method, run: dict, named: str) -> dict:
    """The parameters a run of a tuned preset registered with: its stored ones, if the installed
    method accepts them."""
    from warpbench.options import OptionsError

    params = _stored_params(run)
    if not isinstance(params, dict):
        raise ReplayError(f"Run {named} is a run of a tuned preset and stores no parameters "
                          f"({run.get('params')}), so it cannot be replayed.")
    try:
        method.resolve(params)
    except OptionsError as exc:
        raise ReplayError(f"Run {named} used tuned parameters that the installed `{method.name}` "
                          f"refuses: {exc}") from None
    return params


def prepare(registry, config, run: dict, weights: str | Path | None = None) -> Replay:
    """Check that ``run`` (a row of ``Store.runs()``) can be replayed here and make its replay.

    ``config`` is the loaded ``datasets.yaml`` and ``weights`` a trained run's weights file
    (:func:`run_weights`; ignored for an untrained run). Refused with :class:`ReplayError`,
    naming what differs, when the method is not installed or has another version, the preset is
    gone or has other parameters (compared as the scheduler stores them), a trained run has no
    weights, or the dataset block cannot be built, has another fingerprint or its files are not
    here. A run of a tuned preset registers with the parameters stored with it, which the
    installed method must accept.
    """
    from warpbench.config import build_dataset
    from warpbench.datasets import DatasetConfigError
    from warpbench.tuning import is_tuned_preset

    named = _named(run)
    name, preset = run["method"], run["preset"]
    method = registry.methods.get(name)
    if method is None:
        raise ReplayError(
            f"Run {named} used method `{name}` (from {run.get('plugin_distribution')} "
            f"{run.get('plugin_version')}), which is not installed here (installed: "
            f"{', '.join(sorted(registry.methods)) or 'none'}), so it cannot be replayed.")
    if str(method.version) != str(run.get("method_version")):
        raise ReplayError(f"Run {named} used `{name}` version {run.get('method_version')}; "
                          f"version {method.version} is installed and may register differently.")
    if is_tuned_preset(preset):
        params = _tuned_params(method, run, named)
    elif preset not in method.presets:
        raise ReplayError(f"Method `{name}` has no preset `{preset}` any more.")
    else:
        params = method.presets[preset]
        if _stored_params(run) != json.loads(method.stored_params(preset)):
            raise ReplayError(f"Preset `{name}:{preset}` now has other parameters than run "
                              f"{named} used ({run.get('params')}).")
    if not (isinstance(run.get("train_dataset"), str) or method.family == "learning"):
        weights = None
    elif weights is None:
        raise ReplayError(
            f"Run {named} is a learning method's run: replaying it needs the weights of its "
            "training, and the run names none (a store written before runs recorded their "
            "`training_key`).")
    elif not Path(weights).is_file():
        raise _weights_gone(run, f"its weights {weights} are gone")
    try:
        dataset = build_dataset(config, run["dataset"], registry.dataset_kinds)
    except DatasetConfigError as exc:
        raise ReplayError(f"Cannot build dataset `{run['dataset']}`: {exc}") from None
    if dataset.fingerprint() != run.get("dataset_fingerprint"):
        raise ReplayError(f"Dataset `{run['dataset']}` in {config.path} is not the one run "
                          f"{named} evaluated (its options, split or pairs changed).")
    available, reason = dataset.availability()
    if not available:
        raise ReplayError(f"Dataset `{run['dataset']}` is not available here: {reason}")
    return Replay(run, method, params, dataset, run_seed(run),
                  Path(weights) if weights is not None else None)
