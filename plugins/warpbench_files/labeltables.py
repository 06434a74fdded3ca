"""Label names from a FreeSurfer colour table, the format of neurite OASIS's ``seg35_labels.txt``:
one label per line, ``value name R G B A``; ``#`` starts a comment. A line holding only a value
(a plain list of label values, as ``eval_labels.txt`` files are) names it ``label_<value>``.

Or, for a collection whose table is not known (``labels: found``), the values the label maps
hold, each named ``label_<value>`` (:func:`found_labels`)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from warpbench_files.reading import (SubjectFileError, file_stamp, read_volume, relative_name,
                                     source_files)

log = logging.getLogger(__name__)


def read_label_table(path: Path) -> dict[int, str]:
    """{value: name} of every label above 0 (the background is never evaluated) in ``path``;
    a ValueError naming the file and line for anything else."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the label table: {exc}") from exc
    labels: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            value = int(fields[0])
        except ValueError:
            raise ValueError(f"{path}, line {number}: expected 'value name R G B A', "
                             f"got {line.strip()!r}") from None
        if value in labels:
            raise ValueError(f"{path}, line {number}: label {value} is named twice")
        if value > 0:
            labels[value] = fields[1] if len(fields) > 1 else f"label_{value}"
    if not labels:
        raise ValueError(f"{path}: names no label above 0")
    return dict(sorted(labels.items()))


def found_labels(label_maps: list[Path], root: Path, record: Path) -> dict[int, str]:
    """``labels: found``: {value: ``label_<value>``} of every value above 0 in any of
    ``label_maps``. A file that is missing, unreadable or not integer-valued adds nothing (its
    subject's load fails naming it). The values of each file are remembered in ``record`` (JSON)
    under its files' sizes and modification times, so an unchanged file is read once."""
    try:
        remembered = json.loads(record.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        remembered = {}
    known, values = {}, set()
    for path in label_maps:
        files = source_files(path)
        stamp = [file_stamp(p, root) for p in files]
        if any(size is None for _, size, _ in stamp):
            continue  # missing: the subject's load says so
        key = relative_name(path, root)
        entry = remembered.get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            found = entry.get("values", [])
        else:
            found = _values_in(path)
            if found is None:
                continue
        known[key] = {"stamp": stamp, "values": found}
        values.update(int(v) for v in found)
    if known != remembered:
        _write_record(record, known)
    return {value: f"label_{value}" for value in sorted(values) if value > 0}


def _values_in(path: Path) -> list[int] | None:
    """The distinct values of the label map in ``path``, or None where it cannot serve."""
    try:
        data = np.asarray(read_volume(path, "label map").dataobj)
    except SubjectFileError:
        return None
    if not np.issubdtype(data.dtype, np.integer):
        if not np.isfinite(data).all() or (data != np.rint(data)).any():
            return None
        data = data.astype(np.int64)
    return [int(v) for v in np.unique(data)]


def _write_record(record: Path, files: dict) -> None:
    """The record written whole under a temporary name and renamed into place; a folder that
    cannot be written only costs reading the files again next time."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=record.parent, prefix=".found-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"version": 1, "files": files}, handle)
            os.replace(temporary, record)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("cannot remember the label values in %s (%s)", record, exc)
