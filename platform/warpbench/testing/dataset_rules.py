"""The dataset rules: a dataset's declaration, subjects, splits, pairs and loaded arrays, judged
on what it really returns (at most ``max_subjects`` subjects loaded, for a large dataset).

The platform's modules are imported where a check runs, not with this module.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from warpbench.testing.engine import ContractReport, RuleBook, Skipped, Violation, Warned, describe

DATASET_RULES = RuleBook()
dataset_rule = DATASET_RULES.rule


class DatasetProbe:
    """Asks a dataset once for what the dataset rules judge: whether its files are there, and its
    subjects (at most ``max_subjects``), loaded."""

    def __init__(self, dataset, max_subjects: int | None = None):
        self.dataset = dataset
        self.max_subjects = max_subjects

    @cached_property
    def availability(self) -> tuple[bool, str]:
        return self.dataset.availability()

    def require_available(self) -> None:
        available, reason = self.availability
        if not available:
            raise Skipped(f"the dataset is unavailable: {reason}")

    def ids(self) -> list[str]:
        self.require_available()
        return list(self.dataset.all_subjects())

    @cached_property
    def subjects(self) -> dict[str, Any]:
        """id -> Subject or the exception its load raised."""
        ids = self.ids()
        if self.max_subjects is not None:
            ids = ids[: self.max_subjects]
        subjects = {}
        for subject_id in ids:
            try:
                subjects[subject_id] = self.dataset.load(subject_id)
            except Exception as exc:
                subjects[subject_id] = exc
        return subjects

    def loaded(self) -> dict[str, Any]:
        good = {k: v for k, v in self.subjects.items() if not isinstance(v, Exception)}
        if not good:
            raise Skipped("no subject loaded (see subjects-load)")
        return good


@dataset_rule("available", "the dataset's files are present")
def rule_available(probe: DatasetProbe) -> str:
    available, reason = probe.availability
    if not available:
        raise Violation("the dataset says its files are missing", "available", reason)
    return "available"


@dataset_rule("labels-declared", "evaluated labels are declared: integers > 0 with names")
def rule_labels_declared(probe: DatasetProbe) -> str:
    labels = getattr(probe.dataset, "labels", None)
    if not isinstance(labels, dict) or not labels:
        raise Violation("no labels declared", "a non-empty dict {value: name}", repr(labels))
    bad = [k for k in labels
           if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0]
    if bad:
        raise Violation("label values must be integers above 0 (0 is background)",
                        "integers > 0", repr(bad))
    unnamed = [k for k, v in labels.items() if not isinstance(v, str) or not v]
    if unnamed:
        raise Violation("every label needs a name", "non-empty strings", f"labels {unnamed}")
    return f"{len(labels)} labels"


@dataset_rule("subjects-listed", "subject ids are a non-empty list of distinct strings")
def rule_subjects_listed(probe: DatasetProbe) -> str:
    ids = probe.ids()
    if not ids:
        raise Violation("no subjects", "at least one subject id", "[]")
    not_str = [i for i in ids if not isinstance(i, str)]
    if not_str:
        raise Violation("subject ids must be strings", "str", repr(not_str[:5]))
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise Violation("subject ids repeat", "distinct ids", repr(duplicated[:5]))
    return f"{len(ids)} subjects"


@dataset_rule("splits-disjoint", "train, val and test are disjoint sets of the subjects")
def rule_splits_disjoint(probe: DatasetProbe) -> str:
    from warpbench.datasets import SPLITS

    ids = set(probe.ids())
    splits = {s: probe.dataset.subjects(s) for s in SPLITS}
    for split, members in splits.items():
        unknown = sorted(set(members) - ids)
        if unknown:
            raise Violation(f"split {split!r} names unknown subjects", "ids from all_subjects()",
                            repr(unknown[:5]))
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            shared = sorted(set(splits[a]) & set(splits[b]))
            if shared:
                raise Violation(f"splits {a!r} and {b!r} share subjects",
                                "no subject in two splits", repr(shared[:5]))
    return ", ".join(f"{s} {len(m)}" for s, m in splits.items())


@dataset_rule("pairs-valid", "pairs join two different subjects of their own split")
def rule_pairs_valid(probe: DatasetProbe) -> str:
    from warpbench.datasets import SPLITS

    probe.require_available()
    counts = {}
    for split in SPLITS:
        members = set(probe.dataset.subjects(split))
        pairs = probe.dataset.pairs(split)
        outside = [p for p in pairs if p.fixed not in members or p.moving not in members]
        if outside:
            raise Violation(f"{split} pairs reach outside the {split} split",
                            f"fixed and moving from {split}", repr(outside[:3]))
        selfish = [p for p in pairs if p.fixed == p.moving]
        if selfish:
            raise Violation(f"{split} pairs register a subject to itself", "fixed != moving",
                            repr(selfish[:3]))
        keys = [(p.fixed, p.moving) for p in pairs]
        if len(set(keys)) != len(keys):
            raise Violation(f"{split} pairs repeat", "distinct pairs", f"{len(keys)} pairs, "
                            f"{len(set(keys))} distinct")
        counts[split] = len(pairs)
    if not counts["test"]:
        raise Violation("no test pairs to evaluate", "at least one test pair", "0")
    return ", ".join(f"{s} {n}" for s, n in counts.items()) + " pairs"


@dataset_rule("subjects-load", "every subject loads, under its own id")
def rule_subjects_load(probe: DatasetProbe) -> str:
    subjects = probe.subjects
    for subject_id, subject in subjects.items():
        if isinstance(subject, Exception):
            raise Violation(f"load({subject_id!r}) raised", "a Subject",
                            f"{type(subject).__name__}: {subject}")
        if getattr(subject, "id", None) != subject_id:
            raise Violation(f"load({subject_id!r}) returned another subject", subject_id,
                            repr(getattr(subject, "id", subject)))
    limit = "" if probe.max_subjects is None else f" (first {probe.max_subjects})"
    return f"{len(subjects)} subjects loaded{limit}"


@dataset_rule("images-float32", "images are finite float32 (D, H, W) arrays")
def rule_images_float32(probe: DatasetProbe) -> str:
    for subject_id, subject in probe.loaded().items():
        image = subject.image
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise Violation(f"subject {subject_id!r}: the image is not a 3-D numpy array",
                            "numpy array (D, H, W)", describe(image))
        if image.dtype != np.float32:
            raise Violation(f"subject {subject_id!r}: wrong image dtype", "float32",
                            str(image.dtype))
        if not np.isfinite(image).all():
            raise Violation(f"subject {subject_id!r}: the image has NaN or infinite values",
                            "finite values", f"{int((~np.isfinite(image)).sum())} non-finite")
    return "float32, finite"


@dataset_rule("label-maps", "label maps are integer arrays of the image's shape")
def rule_label_maps(probe: DatasetProbe) -> str:
    for subject_id, subject in probe.loaded().items():
        labels = subject.labels
        if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
            raise Violation(f"subject {subject_id!r}: the label map is not an integer array",
                            "integer numpy array", describe(labels))
        if labels.shape != subject.image.shape:
            raise Violation(f"subject {subject_id!r}: label map and image differ in shape",
                            str(subject.image.shape), str(labels.shape))
    return "integer, shaped like their images"


@dataset_rule("one-grid", "all subjects share one grid (shape and voxel spacing)")
def rule_one_grid(probe: DatasetProbe) -> str:
    subjects = list(probe.loaded().values())
    first = subjects[0]
    spacing = np.asarray(first.spacing)
    for subject in subjects[1:]:
        if subject.image.shape != first.image.shape:
            raise Violation(f"subjects {first.id!r} and {subject.id!r} differ in shape",
                            str(first.image.shape), str(subject.image.shape))
        if not np.allclose(subject.spacing, spacing, rtol=1e-3):
            raise Violation(f"subjects {first.id!r} and {subject.id!r} differ in spacing",
                            str(tuple(spacing)), str(tuple(subject.spacing)))
    return f"shape {first.image.shape}, spacing {tuple(round(float(s), 4) for s in spacing)} mm"


@dataset_rule("label-values", "label maps hold only background and declared labels")
def rule_label_values(probe: DatasetProbe) -> str:
    declared = set(getattr(probe.dataset, "labels", {}) or {})
    seen: set[int] = set()
    for subject in probe.loaded().values():
        if isinstance(subject.labels, np.ndarray):
            seen |= {int(v) for v in np.unique(subject.labels)}
    undeclared = sorted(seen - declared - {0})
    if undeclared:
        raise Warned(f"values {undeclared[:10]} appear in label maps but are not declared "
                     "(they are not evaluated)")
    missing = sorted(declared - seen)
    if missing:
        raise Warned(f"declared labels {missing[:10]} appear in no loaded label map")
    return f"{len(seen - {0})} declared labels present"


def check_dataset(dataset, *, max_subjects: int | None = None) -> ContractReport:
    """Put ``dataset`` (a :class:`warpbench.Dataset` instance) through every dataset rule,
    loading at most ``max_subjects`` subjects (all by default)."""
    return DATASET_RULES.run(DatasetProbe(dataset, max_subjects),
                             f"dataset {dataset.name!r} (kind {dataset.kind!r})")


def assert_dataset_contract(dataset, **options) -> ContractReport:
    """:func:`check_dataset`, raising :class:`ContractError` with the report on any failure."""
    return check_dataset(dataset, **options).raise_for_failures()
