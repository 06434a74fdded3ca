"""Displacement fields on disk, in the Learn2Reg layout, and re-creating a stored run's fields.

A file ``disp_{fixed}_{moving}.nii.gz`` (or ``.nii``, ``.npz``, ``.npy``) holds the pull-back
displacement of one pair channels-last, (D, H, W, 3), in voxels of the fixed grid: the
Learn2Reg convention; in memory warpbench keeps it channels-first, (3, D, H, W). Files are read
without pickle (``np.load(..., allow_pickle=False)``), so a field file cannot run code, and only
inside their folder: a dataset name or subject id that is not one path component is refused, and
so is a file that is a symlink to outside the folder (:mod:`warpbench.paths`).

The layout joins the two ids with ``_``, which ids may contain too: with subjects ``a``, ``b_c``,
``a_b`` and ``c``, ``disp_a_b_c`` names both ``a <- b_c`` and ``a_b <- c``. Given the dataset's
subject ids, such a name is refused, never read or written for one of its pairs.

The store keeps scores, not fields. A run's fields are re-created by replaying it
(:mod:`warpbench.replay`: its method, preset, seed and trained weights, refused when any of them
differs from what the run used) on the same dataset (:func:`export_run_fields`). Each re-created
pair is scored again and compared with the stored scores, so a method that does not reproduce
its own result is reported rather than exported silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from warpbench.paths import UnsafePathError, check_inside, safe_component

FORMATS = ("nii.gz", "nii", "npz", "npy")
#: Stored and re-created mean Dice may differ by this much before a pair counts as not reproduced.
REPRODUCE_TOLERANCE = 1e-6


class FieldFileError(ValueError):
    """A field file that cannot be used; the message names the file."""


class ExportError(ValueError):
    """A run whose fields cannot be re-created; the message says why."""


def field_name(fixed: str, moving: str, fmt: str = "nii.gz") -> str:
    """The pair's file name; :class:`~warpbench.paths.UnsafePathError` when an id is not one
    path component."""
    ids = [safe_component(subject, "subject id") for subject in (fixed, moving)]
    return f"disp_{ids[0]}_{ids[1]}.{fmt}"


def check_unambiguous(fixed: str, moving: str, subjects, where: str = "") -> None:
    """:class:`FieldFileError` when this pair's file name also names another pair of
    ``subjects`` (the ids, joined by ``_``, split at another ``_``), saying which."""
    ids, joined = set(subjects), f"{fixed}_{moving}"
    splits = [(joined[:i], joined[i + 1:]) for i, char in enumerate(joined) if char == "_"]
    named = [(f, m) for f, m in splits if (f, m) == (fixed, moving) or {f, m} <= ids]
    if len(named) > 1:
        named = " and ".join(f"{f} <- {m}" for f, m in named)
        raise FieldFileError(f"{where}{field_name(fixed, moving, '*')}: the name is ambiguous, "
                             f"it names the pairs {named} of the dataset's subjects")


def find_field(folder: str | Path, fixed: str, moving: str, dataset: str | None = None,
               subjects=()) -> Path | None:
    """The pair's file in ``folder/<dataset>/`` or else ``folder/``, trying each format.

    With the dataset's ``subjects``, a name that names another pair too is refused; a file that
    resolves to outside ``folder`` is refused (:class:`FieldFileError` naming it either way)."""
    folder = Path(folder)
    check_unambiguous(fixed, moving, subjects, f"{folder}: ")
    places = ([folder / safe_component(dataset, "dataset name")] if dataset else []) + [folder]
    for place in places:
        for fmt in FORMATS:
            path = place / field_name(fixed, moving, fmt)
            if path.is_file():
                try:
                    check_inside(folder, path)
                except UnsafePathError as exc:
                    raise FieldFileError(str(exc)) from None
                return path
    return None


def read_field(path: str | Path, shape) -> np.ndarray:
    """Read a Learn2Reg field file as float32 (3, D, H, W), checking it fits ``shape`` (D, H, W)."""
    path = Path(path)
    name = path.name
    try:
        if name.endswith((".nii.gz", ".nii")):
            import nibabel as nib

            data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
            if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector fields put time on axis 3
                data = data[:, :, :, 0, :]
        elif name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                key = "disp" if "disp" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise FieldFileError(f"{path}: holds arrays {keys}; expected one array, "
                                         "or one named 'disp'")
                data = archive[key]
        elif name.endswith(".npy"):
            data = np.load(path, allow_pickle=False)
        else:
            raise FieldFileError(f"{path}: unknown format; expected one of {', '.join(FORMATS)}")
    except FieldFileError:
        raise
    except Exception as exc:
        raise FieldFileError(f"{path}: cannot read: {type(exc).__name__}: {exc}") from None
    expected = (*tuple(shape), 3)
    if tuple(data.shape) != expected:
        raise FieldFileError(f"{path}: shape {tuple(data.shape)}; expected (D, H, W, 3) = "
                             f"{expected}, voxel displacements on the fixed image's grid")
    if not np.issubdtype(data.dtype, np.floating):
        raise FieldFileError(f"{path}: dtype {data.dtype}; expected floating point")
    return np.ascontiguousarray(np.moveaxis(data, -1, 0), dtype=np.float32)


def write_field(path: str | Path, disp, affine=None) -> Path:
    """Write a (3, D, H, W) field channels-last in the format its suffix names."""
    path = Path(path)
    data = np.ascontiguousarray(np.moveaxis(np.asarray(disp, dtype=np.float32), 0, -1))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith((".nii.gz", ".nii")):
        import nibabel as nib

        image = nib.Nifti1Image(data, np.eye(4) if affine is None else np.asarray(affine))
        image.header.set_data_dtype(np.float32)
        nib.save(image, str(path))
    elif path.name.endswith(".npz"):
        np.savez_compressed(path, disp=data)
    elif path.name.endswith(".npy"):
        np.save(path, data)
    else:
        raise FieldFileError(f"{path}: unknown format; expected one of {', '.join(FORMATS)}")
    return path


@dataclass
class ExportSummary:
    folder: Path
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # pairs that could not be re-created
    not_reproduced: list[str] = field(default_factory=list)  # re-created, but scored differently


def _value(value) -> float | None:
    """A stored number, or None for SQL NULL (which pandas reads as NaN or None)."""
    return None if value is None or value != value else float(value)


def export_run_fields(store, registry, config, run_id: str, out: str | Path, fmt: str = "nii.gz",
                      device=None, progress: bool = False) -> ExportSummary:
    """Re-create the fields of a stored run's scored pairs (:mod:`warpbench.replay`) and write
    them to ``out`` with a ``fields.json`` manifest. :class:`ExportError` when the run cannot be
    replayed here, saying why."""
    import torch

    from warpbench import replay
    from warpbench.executors import default_device

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        run = replay.find_run(store, run_id)
        again = replay.prepare(registry, config, run, replay.run_weights(store, run))
    except replay.ReplayError as exc:
        raise ExportError(str(exc)) from None

    device = torch.device(device) if device else default_device()
    pairs = store.pairs(run["run_id"])
    rows = pairs[pairs["status"] == "ok"].to_dict("records")
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc=f"{run['method']}:{run['preset']} on {run['dataset']}", unit="pair")
    summary = ExportSummary(Path(out))
    subjects = again.dataset.all_subjects()
    for row in rows:
        label = f"{row['fixed']} <- {row['moving']}"
        try:
            check_unambiguous(row["fixed"], row["moving"], subjects)
            path = summary.folder / field_name(row["fixed"], row["moving"], fmt)
            check_inside(summary.folder, path)  # not through a symlink to elsewhere
            pair = again.register(row["fixed"], row["moving"], device)
        except (replay.ReplayError, FieldFileError, UnsafePathError) as exc:
            summary.failed.append(f"{label}: {exc}")
            continue
        if pair.result.status != "ok":
            summary.failed.append(f"{label}: {pair.result.error}")
            continue
        stored, now = _value(row["mean_dice"]), pair.result.mean_dice
        if (stored is None) != (now is None) or (
                stored is not None and abs(stored - now) > REPRODUCE_TOLERANCE):
            summary.not_reproduced.append(f"{label}: stored mean Dice {stored}, re-created {now}")
        summary.written.append(write_field(path, pair.result.displacement, pair.fixed.affine))
    manifest = {
        "run_id": run["run_id"], "method": run["method"], "preset": run["preset"],
        "params": json.loads(run["params"]), "method_version": run["method_version"],
        "dataset": run["dataset"], "dataset_fingerprint": run["dataset_fingerprint"],
        "seed": again.seed, "train_dataset": run.get("train_dataset"),
        "weights": str(again.weights) if again.weights else None,
        "layout": "disp_{fixed}_{moving}: pull-back displacement (D, H, W, 3) in voxels",
        "files": [p.name for p in summary.written],
    }
    summary.folder.mkdir(parents=True, exist_ok=True)
    (summary.folder / "fields.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return summary
