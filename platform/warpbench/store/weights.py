"""Trained weights that travel with an export, so a training kept in git is a cache hit elsewhere.

``warpbench export`` copies each complete training's weights file into ``<folder>/weights/`` and
lists it, with its sha256 and size, in ``<folder>/weights.json``; the tables keep the path the
weights had where they were trained (that is provenance). ``warpbench merge`` of such a folder
checks every listed file (inside the folder, of its digest) before the output is touched, copies
it into the output's checkpoint folder (``<store folder>/checkpoints/<method>/<key>/``, where the
scheduler looks), and points the training's row there, unless the output's own complete training
of that key still has its weights: its runs were evaluated with those.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from warpbench.paths import UnsafePathError, check_inside, safe_component
from warpbench.store.errors import StoreFileError

MANIFEST = "weights.json"
FOLDER = "weights"
#: A training key as :func:`warpbench.training.training_key` makes it.
_KEY = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class WeightsFile:
    """One training's weights in an export folder, checked."""

    training_key: str
    method: str
    path: Path
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy under a temporary name and rename: a reader never sees half a weights file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def export_weights(con, folder: Path) -> list[Path]:
    """Copy the weights of every complete training whose file exists into ``folder/weights/``
    and write the manifest; files a previous export left there for trainings no longer listed
    are removed. Returns the files written (manifest last); none when no weights exist."""
    rows = con.execute(
        "SELECT training_key, method, weights FROM trainings WHERE status = 'complete' "
        "AND weights IS NOT NULL ORDER BY training_key").fetchall()
    listed, written = {}, []
    for key, method, weights in rows:
        source = Path(weights)
        if not source.is_file():
            continue  # deleted since: the export still holds the row, as the store does
        target = folder / FOLDER / f"{key}{source.suffix}"
        digest = sha256_of(source)
        if not target.is_file() or sha256_of(target) != digest:
            _copy_atomic(source, target)
        listed[key] = {"method": method, "file": f"{FOLDER}/{target.name}", "sha256": digest,
                       "bytes": target.stat().st_size}
        written.append(target)
    kept = {folder / entry["file"] for entry in listed.values()}
    for stale in (folder / FOLDER).glob("*") if (folder / FOLDER).is_dir() else ():
        if stale.is_file() and stale not in kept:
            stale.unlink()
    manifest = folder / MANIFEST
    if listed:
        temporary = manifest.with_name(f".{MANIFEST}.{os.getpid()}.part")
        temporary.write_text(json.dumps(listed, indent=1, sort_keys=True) + "\n")
        os.replace(temporary, manifest)
        written.append(manifest)
    else:
        manifest.unlink(missing_ok=True)
    return written


def read_manifest(folder: Path) -> list[WeightsFile]:
    """The weights an export folder lists, each checked: a safe key and method, a file inside
    the folder, of the listed sha256. :class:`StoreFileError` names the folder and the entry."""
    path = folder / MANIFEST
    if not path.is_file():
        return []
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreFileError(f"{path}: not a weights manifest ({exc})") from None
    if not isinstance(listed, dict):
        raise StoreFileError(f"{path}: not a weights manifest (expected an object of trainings)")
    found = []
    for key, entry in sorted(listed.items()):
        where = f"{path}: training {key!r}"
        if not _KEY.fullmatch(str(key)) or not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("method", "file", "sha256")):
            raise StoreFileError(f"{where}: expected a training key with method, file and sha256")
        file = folder / entry["file"]
        try:
            safe_component(entry["method"], "method")
            check_inside(folder, file)
        except UnsafePathError as exc:
            raise StoreFileError(f"{where}: {exc}") from None
        if not file.is_file():
            raise StoreFileError(f"{where}: its weights file {file} is missing")
        if sha256_of(file) != entry["sha256"]:
            raise StoreFileError(f"{where}: {file} does not have the listed sha256 (changed or "
                                 "truncated since it was exported); export it again")
        found.append(WeightsFile(key, entry["method"], file, entry["sha256"]))
    return found


def bring_weights(con, files: list[WeightsFile], checkpoints: Path) -> int:
    """Copy each of ``files`` into ``checkpoints`` and point its complete training there where
    the output has no weights of its own for it; returns how many trainings were pointed."""
    brought = 0
    for weights in files:
        row = con.execute("SELECT status, weights FROM trainings WHERE training_key = ?",
                          [weights.training_key]).fetchone()
        if row is None or row[0] != "complete" or (row[1] and Path(row[1]).is_file()):
            continue  # not a complete training here, or one with its own weights
        target = (checkpoints / weights.method / weights.training_key
                  / f"weights{weights.path.suffix}")
        if not target.is_file() or sha256_of(target) != weights.sha256:
            _copy_atomic(weights.path, target)
        con.execute("UPDATE trainings SET weights = ? WHERE training_key = ?",
                    [str(target.resolve()), weights.training_key])
        brought += 1
    return brought
