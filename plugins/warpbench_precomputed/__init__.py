"""Scoring displacement fields computed elsewhere, from files in the Learn2Reg layout.

Any method's outputs can be put on the leaderboard: write one ``disp_{fixed}_{moving}.nii.gz``
(or ``.npz``) per test pair, channels-last (D, H, W, 3) pull-back displacements in voxels of the
dataset's grid, into a folder, then::

    warpbench run --method precomputed:path/to/fields --dataset NAME

The preset *is* the folder: ``precomputed:PATH`` names any existing folder, and the run records its
absolute path and a digest of its files (names, sizes, modification times) among its parameters, so
another folder, or changed files, make another run instead of resuming a stale one. A pair's file
is looked up in ``PATH/<dataset>/`` first, then in ``PATH/``; a missing or malformed file fails
that pair with the file named. Files are read only inside the folder: a dataset name or subject
id that is not one path component, a file that is a symlink to outside the folder, or a name that
names two pairs of the dataset's subjects fails the pair, naming it (:mod:`warpbench.fields`).
``warpbench export-fields`` writes a stored run's fields in this layout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from warpbench import Method
from warpbench.fields import find_field, read_field
from warpbench.hookspecs import hookimpl
from warpbench.options import Settings


def folder_digest(folder: Path) -> str:
    """A short hash of the names, sizes and modification times of the field files in ``folder``
    and its subfolders (one level), so changed files make another configuration."""
    entries = []
    for path in sorted([*folder.glob("disp_*"), *folder.glob("*/disp_*")]):
        stat = path.stat() if path.exists() else path.lstat()  # a dangling link: no field
        entries.append(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


class FolderPresets(dict):
    """The presets of :class:`PrecomputedMethod`: ``default`` (no folder yet), and every existing
    folder, named by its path, as a preset of its own."""

    def __contains__(self, preset) -> bool:
        return dict.__contains__(self, preset) or (isinstance(preset, str) and Path(preset).is_dir())

    def __missing__(self, preset):
        folder = Path(preset) if isinstance(preset, str) else None
        if folder is None or not folder.is_dir():
            raise KeyError(preset)
        return {"folder": str(folder.resolve()), "files": folder_digest(folder)}


class PrecomputedParams(Settings):
    """A folder preset: where the fields are, and what its files were when the run began."""

    folder: str | None
    """The folder's absolute path (none in ``default``, which names no folder)."""
    files: str | None = None
    """:func:`folder_digest` of the folder."""


class PrecomputedMethod(Method):
    name = "precomputed"
    family = "baseline"
    version = "1"
    description = ("Fields computed elsewhere, read from disp_{fixed}_{moving}.nii.gz / .npz files "
                   "(Learn2Reg layout); the preset is the folder: precomputed:PATH.")
    wants_pair = True
    Params = PrecomputedParams
    presets = FolderPresets({"default": {"folder": None}})

    def register(self, fixed, moving, params, device, pair=None):
        folder = self.resolve(params).folder
        if not folder:
            raise ValueError("no folder of fields given: name it as the preset, "
                             "e.g. --method precomputed:path/to/fields")
        if pair is None:
            raise ValueError("precomputed fields are looked up by pair; the runner gives pair=")
        path = find_field(folder, pair.fixed, pair.moving, pair.dataset, pair.subjects)
        if path is None:
            raise FileNotFoundError(f"no field for {pair.fixed} <- {pair.moving}: looked for "
                                    f"disp_{pair.fixed}_{pair.moving}.nii.gz / .nii / .npz / .npy "
                                    f"in {Path(folder) / pair.dataset} and {folder}")
        return read_field(path, fixed.shape)


@hookimpl
def register_methods(register):
    register(PrecomputedMethod())
