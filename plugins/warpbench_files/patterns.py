"""File patterns with a subject-id capture: ``"{id}.nii.gz"``, ``"imagesTr/{id}.nii.gz"``,
``"OASIS_OAS1_{id}_MR1/aligned_norm.nii.gz"``, ``"{id}/{id}.native.mri.hdr"``,
``"*/{id}_seg*.img"``.

``{id}`` and ``*`` each stand for characters within one folder or file name (never a ``/``); an
``{id}`` that appears twice stands for the same id both times.

Names starting with ``.`` are skipped: they are macOS resource forks and editor files, which
archives of these collections are known to contain.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

ID = "{id}"


def _literal(text: str) -> str:
    """A regex for ``text`` with its ``*`` standing for anything within one name."""
    return "[^/]*".join(re.escape(part) for part in text.split("*"))


def _regex(pattern: str) -> re.Pattern:
    """The first ``{id}`` captures the id; a later one must repeat it (``{id}/{id}.hdr``)."""
    first, *rest = pattern.split(ID)
    captures = ["(?P<id>[^/]+?)"] + ["(?P=id)"] * (len(rest) - 1)
    return re.compile(_literal(first) + "".join(c + _literal(r) for c, r in zip(captures, rest)))


def _visible(relative: str) -> bool:
    return not any(part.startswith(".") for part in relative.split("/"))


def find_ids(root: Path, pattern: str) -> dict[str, list[Path]]:
    """Every subject id the pattern finds under ``root``, with the files it was found in (more
    than one file for an id is the pattern's ambiguity, for the caller to report)."""
    regex = _regex(pattern)
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob(pattern.replace(ID, "*"))):
        relative = path.relative_to(root).as_posix()
        match = regex.fullmatch(relative)
        if match and _visible(relative) and path.is_file():
            found.setdefault(match["id"], []).append(path)
    return found


def resolve(root: Path, pattern: str, subject_id: str) -> list[Path]:
    """The files ``pattern`` names for one subject: one path where it has no ``*`` (whether or
    not the file exists), else every visible file that matches (none, one, or too many)."""
    if "*" not in pattern:
        return [root / pattern.replace(ID, subject_id)]
    escaped = pattern.replace(ID, glob.escape(subject_id))
    return [p for p in sorted(root.glob(escaped))
            if _visible(p.relative_to(root).as_posix()) and p.is_file()]
