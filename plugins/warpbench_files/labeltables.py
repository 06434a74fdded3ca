"""Label names from a FreeSurfer colour table, the format of neurite OASIS's ``seg35_labels.txt``:
one label per line, ``value name R G B A``; ``#`` starts a comment. A line holding only a value
(a plain list of label values, as ``eval_labels.txt`` files are) names it ``label_<value>``."""

from __future__ import annotations

from pathlib import Path


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
