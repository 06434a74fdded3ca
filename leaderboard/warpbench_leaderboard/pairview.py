"""Recomputing one registered pair for the pair viewer; no Streamlit here.

The store keeps scores, not displacement fields. So the viewer replays the run on the chosen pair
(:mod:`warpbench.replay`, the rules ``warpbench export-fields`` follows too: the run's method
version, preset parameters, seed, dataset block and, for a learning run, the weights its training
left, which :func:`with_weights` looks up in the store), so it is warped and scored exactly as
stored; a run that cannot be replayed faithfully is refused, saying what differs. For the
deterministic classical methods on CPU the recomputed Dice matches the stored one; the viewer
shows both, so a difference (a GPU run, a nondeterministic method) is visible rather than hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class PairViewError(RuntimeError):
    """The pair cannot be recomputed here; the message says why and what to do (Markdown)."""


@dataclass
class PairView:
    fixed_id: str
    moving_id: str
    fixed_image: np.ndarray
    moving_image: np.ndarray
    moved_image: np.ndarray
    fixed_labels: np.ndarray
    moving_labels: np.ndarray
    moved_labels: np.ndarray
    disp: np.ndarray  # (3, D, H, W) voxels, pull-back
    det: np.ndarray  # Jacobian determinant (D, H, W)
    spacing: tuple[float, float, float]
    mean_dice: float
    folding_percent: float
    sdlogj: float
    seconds: float
    device: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.fixed_image.shape)


def with_weights(db_path: str | Path, run: dict) -> dict:
    """``run`` with ``weights``, the file its training left (through the run's ``training_key``);
    unchanged for a run of an untrained method. :class:`PairViewError` when the file is gone."""
    from warpbench.replay import ReplayError, run_weights
    from warpbench.store import Store

    try:
        weights = run_weights(Store(db_path), run)
    except ReplayError as exc:
        raise PairViewError(str(exc)) from None
    return run if weights is None else {**run, "weights": str(weights)}


def recompute_pair(config_path: str | Path, run: dict, fixed_id: str, moving_id: str,
                   registry=None) -> PairView:
    """Replay ``run`` (:mod:`warpbench.replay`) on one pair and build everything the viewer draws.

    ``run`` is a row of ``Store.runs()``, with ``weights`` for a trained run
    (:func:`with_weights`). Raises :class:`PairViewError` saying why when the configuration
    cannot be read, or the run cannot be replayed here or fails on the pair.
    """
    from warpbench import metrics, replay
    from warpbench.config import ConfigError, load_config
    from warpbench.executors import default_device
    from warpbench.plugins import load_registry
    from warpbench.spatial import warp_image, warp_labels

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise PairViewError(
            f"Cannot read the dataset configuration: {exc}\n\nGive the path of the "
            "`datasets.yaml` the run used (the app looks in its working folder by default)."
        ) from None
    device = default_device()
    try:
        again = replay.prepare(registry or load_registry(), config, run, run.get("weights"))
        pair = again.register(fixed_id, moving_id, device)
    except replay.ReplayError as exc:
        raise PairViewError(str(exc)) from None
    result, fixed, moving = pair.result, pair.fixed, pair.moving
    if result.status != "ok":
        raise PairViewError(f"Re-running `{run['method']}:{run['preset']}` on the pair failed: "
                            f"{result.error}")
    disp = result.displacement
    return PairView(
        fixed_id=fixed_id, moving_id=moving_id,
        fixed_image=fixed.image, moving_image=moving.image,
        moved_image=warp_image(moving.image, disp),
        fixed_labels=np.asarray(fixed.labels), moving_labels=np.asarray(moving.labels),
        moved_labels=warp_labels(moving.labels, disp), disp=disp,
        det=metrics.jacobian_determinant(disp), spacing=fixed.spacing,
        mean_dice=_number(result.mean_dice), folding_percent=_number(result.folding_percent),
        sdlogj=_number(result.sdlogj), seconds=result.seconds or 0.0, device=str(device),
    )


def _number(score: float | None) -> float:
    """A score of the result, NaN where it has none."""
    return math.nan if score is None else score
