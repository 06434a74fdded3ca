"""Learn2Reg task folders (``plugin: learn2reg``), read through their ``<TASK>_dataset.json``.

The file (Learn2Reg 2021 and later) names the task (``name``), its ``modality`` and ``labels``
(``{"0": "background", "1": ...}``, or one such table per modality), the grid
(``tensorImageShape``), and lists the volumes: ``training`` and ``test`` entries of
``{"image": "./imagesTr/X_0000.nii.gz", "label": ..., "mask": ...}`` and the official pairs,
``registration_val`` and ``registration_test``, as ``{"fixed": ..., "moving": ...}``, paths
relative to the task folder.

Subjects are the entries with a label map (an entry without one cannot be scored; a label file
that is listed but missing fails its subject's load, naming it). The test pairs are
``registration_test`` where it is given and every subject in it has a label map, else
``registration_val`` (the task's test labels are usually not public); when ``registration_test``
is the test set, ``registration_val`` is the validation set. The train subjects are all the
others. Masks are applied where an entry names one (``use_masks``), as in :mod:`layouts`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from warpbench.datasets import LABEL_NAMES, SPLITS, Pair
from warpbench.options import describe
from warpbench_files.gridded import GriddedDataset, Sources, shown
from warpbench_files.options import Learn2RegOptions
from warpbench_files.reading import PAIR_ENDINGS

#: File name endings stripped from an image's name to give its subject id.
VOLUME_ENDINGS = (".nii.gz", ".nii", *PAIR_ENDINGS)
PAIR_LISTS = ("registration_val", "registration_test")
#: What to cite for any Learn2Reg task, beside the task file's own ``reference``.
LEARN2REG_CITATION = (
    "Hering A, Hansen L, Mok TCW, et al. Learn2Reg: comprehensive multi-task medical image "
    "registration challenge, dataset and evaluation in the era of deep learning. IEEE Transactions "
    "on Medical Imaging 42(3), 697-712 (2023)")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Entry(_Open):
    """One volume of a task: its image and, where the task gives them, label map and mask."""

    image: str
    label: str | None = None
    mask: str | None = None


class PairEntry(_Open):
    """An official registration pair: ``moving`` is registered onto ``fixed``."""

    fixed: str
    moving: str


class TaskFile(_Open):
    """The parts of a ``<TASK>_dataset.json`` this reader uses; other keys are left alone."""

    name: str = ""
    modality: dict[str, str] | str = {}
    labels: dict[str, Any] = {}
    tensorImageShape: dict[str, list[int]] = {}
    licence: str = ""
    license: str = ""
    reference: str = ""
    training: list[Entry] = []
    test: list[Entry | str] = []
    registration_val: list[PairEntry] = []
    registration_test: list[PairEntry] = []


@dataclass
class OfficialSplit:
    """The subjects of each split and the official val and test pairs."""

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    val_pairs: list[Pair] = field(default_factory=list)
    test_pairs: list[Pair] = field(default_factory=list)
    test_source: str = ""


def subject_id(path: str) -> str:
    """A volume's subject id: its file name without the volume ending (``OASIS_0001_0000``)."""
    name = Path(path).name
    return next((name[: -len(e)] for e in VOLUME_ENDINGS if name.endswith(e)), Path(path).stem)


def label_names(table: dict[str, Any]) -> dict[int, str]:
    """{value: name} from a task's ``labels``: ``{"1": "name"}``, ``{"name": 1}`` (nnU-Net v2),
    or one table per modality (which must agree)."""
    if table and all(isinstance(v, dict) for v in table.values()):
        merged: dict[int, str] = {}
        for one in table.values():
            for value, name in label_names(one).items():
                if merged.setdefault(value, name) != name:
                    raise ValueError(f"label {value} is {merged[value]!r} for one modality and "
                                     f"{name!r} for another")
        return merged
    if table and all(isinstance(v, int) and not isinstance(v, bool) for v in table.values()):
        return {value: name for name, value in table.items()}
    try:
        return {int(value): str(name) for value, name in table.items()}
    except ValueError:
        raise ValueError(f"label values must be integers, got {shown(sorted(table))}") from None


class Learn2RegDataset(GriddedDataset):
    """A Learn2Reg task folder: subjects, label names and the official pairs from its
    ``<TASK>_dataset.json`` (see the module docstring)."""

    kind = "learn2reg"
    version = "1"
    Options = Learn2RegOptions
    source = ("the task's folder (with its <TASK>_dataset.json) from "
              "https://learn2reg.grand-challenge.org")

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        super().__init__(name, options, base_dir)
        self.task_path, self.missing_reason = self._find_task_file()
        task = self._read_task() if self.task_path else TaskFile()
        self.task_name = task.name
        self.modality = task.modality if isinstance(task.modality, dict) else {"0": task.modality}
        self.labels = self._evaluated_labels(task)
        self.grid = self._grid(task)
        if self.settings.license is None:
            self.license = task.licence or task.license
        if self.settings.citation is None:
            self.citation = "; ".join(filter(None, [task.reference, LEARN2REG_CITATION]))
        self._entries, self._problems, self._ids = self._subjects_of(task)
        self.official = self._official(task) if self.task_path else OfficialSplit()

    # --- the Dataset interface -----------------------------------------------------------------
    def availability(self) -> tuple[bool, str]:
        if self.missing_reason and self.root.is_dir():
            return False, self.missing_reason
        return super().availability()

    def find_sources(self) -> tuple[dict[str, Sources], list[str]]:
        return self._entries, self._problems

    @property
    def metadata_files(self) -> list[Path]:
        return [self.task_path] if self.task_path else []

    def subjects(self, split: str) -> list[str]:
        """The task's split: test and val from the official pairs, train the other subjects."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return list(getattr(self.official, split))

    def pairs(self, split: str = "test") -> list[Pair]:
        """The official pairs for val and test; random ones among train subjects (``pairs``)."""
        if split == "test":
            return list(self.official.test_pairs)
        if split == "val":
            return list(self.official.val_pairs)
        return super().pairs(split)

    # --- the task file -------------------------------------------------------------------------
    def _find_task_file(self) -> tuple[Path | None, str]:
        """The dataset.json and, where it is missing, why."""
        if self.settings.task is not None:
            path = self.root / self.settings.task
            return (path, "") if path.is_file() else (None, f"no task file {path}")
        found = sorted(self.root.glob("*_dataset.json")) if self.root.is_dir() else []
        if len(found) > 1:
            self.fail(f"{self.root} holds {len(found)} task files "
                      f"({shown([p.name for p in found])}); set 'task' to one of them")
        if not found:
            return None, f"no *_dataset.json in {self.root}"
        return found[0], ""

    def _read_task(self) -> TaskFile:
        try:
            return TaskFile.model_validate_json(self.task_path.read_bytes())
        except OSError as exc:
            self.fail(f"cannot read {self.task_path}: {exc}")
        except ValidationError as exc:
            self.fail(f"{self.task_path}: {describe(exc, None, 'key')}")

    def _evaluated_labels(self, task: TaskFile) -> dict[int, str]:
        if self.settings.labels is not None:
            return self.settings.labels
        if task.labels:
            try:
                return LABEL_NAMES.validate_python(label_names(task.labels))
            except (ValueError, ValidationError) as exc:
                reason = describe(exc, None, "label") if isinstance(exc, ValidationError) else exc
                self.fail(f"{self.task_path} labels: {reason}")
        if self.task_path:
            self.fail(f"{self.task_path} names no labels, so the block needs "
                      "'labels: {1: name, 2: name, ...}' naming the label values to evaluate")
        return {}  # availability() says the task file is missing

    def _grid(self, task: TaskFile) -> tuple[int, int, int] | None:
        """The block's grid, else (without resampling) the task's ``tensorImageShape``."""
        if self.settings.grid is not None:
            return self.settings.grid
        shape = task.tensorImageShape.get("0")
        if self.settings.spacing is None and shape is not None and len(shape) == 3:
            return tuple(shape)
        if self.task_path:
            self.fail("needs 'grid': the task's tensorImageShape is "
                      f"{shape or 'not given'}, which holds only at the files' own spacing")
        return None

    def _subjects_of(self, task: TaskFile
                     ) -> tuple[dict[str, Sources], list[str], dict[str, str]]:
        """Every labelled entry by subject id, two entries sharing an id as a problem, and the
        subject id of each labelled image path as the task file writes it (normalised)."""
        sources, problems, ids = {}, [], {}
        for entry in [*task.training, *(e for e in task.test if isinstance(e, Entry))]:
            if entry.label is None:
                continue
            sid = subject_id(entry.image)
            mask = self.root / entry.mask if entry.mask and self.settings.use_masks else None
            found = Sources(self.root / entry.image, self.root / entry.label, mask)
            if sources.setdefault(sid, found) != found:
                problems.append(f"{self.task_path} lists two volumes for subject {sid!r}")
            ids[os.path.normpath(entry.image)] = sid
        return sources, problems, ids

    def _official(self, task: TaskFile) -> OfficialSplit:
        """The test pairs (see the module docstring), the val pairs where they are not the test
        pairs and name labelled subjects only, and the subjects of each split."""
        ids = self._ids
        pairs, unlabelled = {}, {}
        for name in PAIR_LISTS:
            entries = getattr(task, name)
            paths = [os.path.normpath(p) for e in entries for p in (e.fixed, e.moving)]
            unlabelled[name] = sorted({p for p in paths if p not in ids})
            if not unlabelled[name]:
                pairs[name] = [Pair(ids[os.path.normpath(e.fixed)], ids[os.path.normpath(e.moving)])
                               for e in entries]
        chosen = self.settings.test_pairs
        if chosen is None:
            usable = task.registration_test and "registration_test" in pairs
            chosen = "registration_test" if usable else "registration_val"
        if chosen not in pairs:
            self.fail(f"{self.task_path} {chosen} names volumes that no labelled entry lists, so "
                      f"its pairs cannot be scored: {shown(unlabelled[chosen])}")
        split = OfficialSplit(test_pairs=pairs[chosen], test_source=chosen)
        if chosen != "registration_val":
            split.val_pairs = pairs.get("registration_val", [])
        split.test = sorted({s for p in split.test_pairs for s in (p.fixed, p.moving)})
        split.val = sorted({s for p in split.val_pairs for s in (p.fixed, p.moving)})
        shared = sorted(set(split.val) & set(split.test))
        if shared:
            self.fail(f"{self.task_path}: registration_val and {chosen} share subjects "
                      f"{shown(shared)}")
        split.train = sorted(set(self._entries) - set(split.val) - set(split.test))
        return split
