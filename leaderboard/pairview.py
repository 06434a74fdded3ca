"""Recomputing one registered pair for the pair viewer; no Streamlit here.

The store keeps scores, not displacement fields (a field is 3 x D x H x W floats per pair). So the
viewer rebuilds what it shows: it reads the run's dataset from ``datasets.yaml``, loads the two
subjects, and evaluates the pair again through the runner's own ``evaluate_pair`` (the run's
preset parameters and seed, and a learning run's trained weights, which :func:`with_weights` looks
up in the store; the field kept), so it is warped and scored exactly as stored. For
the deterministic classical methods on CPU the field, and so the recomputed Dice, matches the
stored one; the viewer shows both, so a difference (a changed dataset block, another method
version, a GPU run) is visible rather than hidden.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
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
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.fixed_image.shape)


def with_weights(db_path: str | Path, run: dict) -> dict:
    """``run`` with ``weights``, the file its training left (through the run's ``training_key``);
    unchanged for a run of an untrained method. :class:`PairViewError` when the file is gone."""
    from warpbench.fields import ExportError, run_weights
    from warpbench.store import Store

    if not isinstance(run.get("training_key"), str):
        return run
    try:
        return {**run, "weights": str(run_weights(Store(db_path), run))}
    except ExportError as exc:
        raise PairViewError(f"Cannot recompute the pair: {exc}") from None


def recompute_pair(config_path: str | Path, run: dict, fixed_id: str, moving_id: str,
                   registry=None) -> PairView:
    """Rebuild the field of ``run``'s method on one pair and everything the viewer draws.

    ``run`` is a row of ``Store.runs()`` (method, preset, params, dataset, fingerprint, seed,
    method version, family), with ``weights`` for a learning run (:func:`with_weights`).
    Raises :class:`PairViewError` with the reason when the dataset or
    the method is not available here.
    """
    from warpbench import metrics
    from warpbench.config import ConfigError, build_dataset, load_config
    from warpbench.datasets import DatasetConfigError
    from warpbench.executors import default_device
    from warpbench.plugins import load_registry
    from warpbench.runner import evaluate_pair
    from warpbench.spatial import warp_image, warp_labels

    warnings = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise PairViewError(
            f"Cannot read the dataset configuration: {exc}\n\nGive the path of the "
            "`datasets.yaml` the run used (the app looks in its working folder by default)."
        ) from None
    registry = registry or load_registry()
    dataset_name = run["dataset"]
    try:
        dataset = build_dataset(config, dataset_name, registry.dataset_kinds)
    except DatasetConfigError as exc:
        raise PairViewError(f"Cannot build dataset `{dataset_name}` from `{config.path}`: {exc}") from None
    available, reason = dataset.availability()
    if not available:
        raise PairViewError(f"Dataset `{dataset_name}` is not available here: {reason}")
    stored_fingerprint = run.get("dataset_fingerprint")
    if isinstance(stored_fingerprint, str) and stored_fingerprint != dataset.fingerprint():
        warnings.append(
            f"The `{dataset_name}` block of `{config.path}` differs from the one the run used "
            "(fingerprints differ), so the images may not be the ones that were scored."
        )
    method = registry.methods.get(run["method"])
    if method is None:
        raise PairViewError(
            f"Method `{run['method']}` is not installed here (installed: "
            f"{', '.join(sorted(registry.methods)) or 'none'}), so its field cannot be recomputed."
        )
    weights = None
    if method.family == "learning" or isinstance(run.get("train_dataset"), str):
        if not isinstance(run.get("weights"), str):
            raise PairViewError(
                f"`{run['method']}` is a learning method: recomputing its field needs the weights "
                "of its training, and the run names none (a store written before runs recorded "
                "their `training_key`)."
            )
        weights = Path(run["weights"])
        if not weights.is_file():
            raise PairViewError(f"`{run['method']}` is a learning method and its weights "
                                f"`{weights}` are gone; `warpbench train` makes them again.")
    stored_version = run.get("method_version")
    if isinstance(stored_version, str) and stored_version != str(method.version):
        warnings.append(
            f"The run used `{run['method']}` version {stored_version}; version {method.version} "
            "is installed, so the field may differ from the scored one."
        )
    params = json.loads(run["params"]) if isinstance(run.get("params"), str) else {}
    current = method.presets.get(run["preset"])
    if current is None or params != json.loads(json.dumps(current, default=str)):
        warnings.append(f"Preset `{run['preset']}` has changed since the run; using the run's "
                        "stored parameters.")
    try:
        fixed = dataset.load(fixed_id)
        moving = dataset.load(moving_id)
    except Exception as exc:  # a missing or unreadable subject file
        raise PairViewError(f"Cannot load the pair from `{dataset_name}`: "
                            f"{type(exc).__name__}: {exc}") from None

    device = default_device()
    seed = run.get("seed")
    seed = int(seed) if seed is not None and not _isnan(seed) else 0
    # The runner's own path: same seed, same validation, same warp and scores as the stored pair.
    result = evaluate_pair(method, dict(params), dataset, fixed, moving, device, seed=seed,
                           keep_field=True, weights=weights)
    if result.status != "ok":
        raise PairViewError(f"Re-running `{run['method']}:{run['preset']}` on the pair failed: "
                            f"{result.error}")
    disp = result.displacement
    det = metrics.jacobian_determinant(disp)
    return PairView(
        fixed_id=fixed_id, moving_id=moving_id,
        fixed_image=fixed.image, moving_image=moving.image, moved_image=warp_image(moving.image, disp),
        fixed_labels=np.asarray(fixed.labels), moving_labels=np.asarray(moving.labels),
        moved_labels=warp_labels(moving.labels, disp), disp=disp, det=det, spacing=fixed.spacing,
        mean_dice=result.mean_dice if result.mean_dice is not None else math.nan,
        folding_percent=result.folding_percent if result.folding_percent is not None else math.nan,
        sdlogj=result.sdlogj if result.sdlogj is not None else math.nan,
        seconds=result.seconds or 0.0, device=str(device), warnings=warnings,
    )


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
