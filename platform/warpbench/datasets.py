"""What a dataset is to the platform: subjects on one grid, splits, and evaluation pairs.

A dataset *kind* (a :class:`Dataset` subclass supplied by a plugin) is instantiated once per block
of ``datasets.yaml``. Its options are a pydantic model, :attr:`Dataset.Options`, extending
:class:`DatasetOptions`, the options every kind shares (``split``, ``pairs``, ...), so every
dataset splits and pairs its subjects the same way and every block is checked the same way.
The platform loads a subject through :func:`load_subject`, which checks what any kind returns
(:func:`check_volumes`), so an unusable subject is one error naming it, never a NaN image or a
rounded label reaching a method.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, StrictInt, TypeAdapter, model_validator

from warpbench.fetch import Download
from warpbench.options import Settings, must_be, number, validate
from warpbench.paths import UnsafePathError, safe_component
from warpbench.spatial import spacing_from_affine

if TYPE_CHECKING:  # config imports this module
    from warpbench.config import Config

SPLITS = ("train", "val", "test")
#: A split's share of the subjects: a fraction when every share given is a float <= 1, else a count.
Share = Annotated[number(ge=0), must_be("a non-negative number (a fraction or a count)")]
#: A split's evaluation pairs: that many random ordered pairs, or every one.
PairCount = Annotated[Annotated[StrictInt, Field(ge=0)] | Literal["all"],
                      must_be("a count or 'all'")]
Seed = Annotated[StrictInt, Field(ge=0), must_be("a non-negative integer")]


def _evaluated(labels: dict[int, str]) -> dict[int, str]:
    """The labels in value order without the background (0), which is never evaluated."""
    evaluated = {value: name for value, name in sorted(labels.items()) if value != 0}
    if not evaluated or min(evaluated) < 0:
        raise ValueError("no positive label values")
    return evaluated


#: A positive count (of voxels, subjects).
Count = Annotated[StrictInt, Field(ge=1)]
LabelNames = Annotated[dict[int, str], AfterValidator(_evaluated),
                       must_be("a mapping of positive label values to names")]
#: The same check for labels a reader finds in a file (a dataset.json) as for a block's.
LABEL_NAMES = TypeAdapter(LabelNames)


class Split(Settings):
    """How the subjects are split: each split's share, as fractions (0.6, 0.1, 0.3) or counts
    (10, 2, 8), and the seed of the shuffle. A split left out gets none."""

    train: Share = 0
    """Subjects learning methods train on."""
    val: Share = 0
    """Subjects learning methods validate on."""
    test: Share = 0
    """Subjects every method is evaluated on."""
    seed: Seed = 0
    """Seed of the shuffle that assigns subjects to splits."""

    @model_validator(mode="after")
    def _fractions_fit(self):
        shares = [self.train, self.val, self.test]
        if all(isinstance(v, float) for v in shares if v) and sum(shares) > 1 + 1e-9:
            raise ValueError(f"fractions add up to {sum(shares):g}, more than 1")
        return self


class Pairs(Settings):
    """Evaluation pairs per split: a number of random ordered pairs of distinct subjects, or
    ``all`` of them, and the seed of the draw. A split left out gets none."""

    train: PairCount = 0
    val: PairCount = 0
    """Validation pairs; a learning method draws its own when there are none."""
    test: PairCount = 0
    """The pairs every method is scored on."""
    seed: Seed = 0
    """Seed of the draw."""


class DatasetOptions(Settings):
    """The options every dataset block takes, whatever its kind."""

    split: Split = Split(train=0.6, val=0.1, test=0.3)
    """train/val/test as fractions or counts, and a seed (default: 0.6, 0.1, 0.3)."""
    pairs: Pairs = Pairs(test=10)
    """Per split: a number of random ordered pairs, or `all`, and a seed (default: 10 test
    pairs)."""
    license: str | None = None
    """The data's licence (a kind may know it from its files)."""
    citation: str | None = None
    """What to cite for the data (a kind may know it from its files)."""
    description: str | None = None
    """What this dataset is, in words (for readers of the file)."""
    download: Download | None = None
    """A public download of the data (url, sha256, format, license), for `warpbench fetch`."""
    label_map: Annotated[dict[int, Annotated[str, Field(min_length=1)]],
                         must_be("a mapping of label ids to canonical names")] = {}
    """{label id: canonical name}: renames labels, so that datasets that name the same structures
    differently are compared on the structures they share (a network trained on one and tested on
    the other counts as tested on its own label protocol when every name agrees)."""
    domain: Annotated[str, Field(min_length=1), must_be("a name")] | None = None
    """The data source this block reads (default: the block's name): a network trained on a block
    and tested on another block of the same domain (held-out subjects of one collection) is in
    domain, and shifted otherwise."""
    pre_aligned: bool | None = None
    """The subjects are affinely aligned in a common space already, so the classical methods'
    presets skip their affine stage (default: what the kind knows of its data; false for files of
    unknown provenance)."""


class OpenDatasetOptions(DatasetOptions):
    """The options of a kind that declares none of its own: the shared ones are checked, and any
    other key is left for the kind to read from ``self.options``."""

    model_config = ConfigDict(extra="allow")


class DatasetConfigError(ValueError):
    """A ``datasets.yaml`` block that cannot describe a dataset; the message names it."""


@dataclass
class Subject:
    """One subject: intensity image and label map on the dataset's grid, with their affine."""

    id: str
    image: np.ndarray  # float32 (D, H, W)
    labels: np.ndarray  # integer (D, H, W)
    affine: np.ndarray  # 4x4

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)


class SubjectError(ValueError):
    """A subject that cannot be loaded or is unusable. The message, one line, names the dataset
    and subject (:func:`load_subject`) and the file where the reader knows it."""


@dataclass(frozen=True)
class Pair:
    """An ordered evaluation pair: ``moving`` is registered onto ``fixed``."""

    fixed: str
    moving: str


class Dataset:
    """Base class of every dataset kind.

    Subclasses set ``kind`` (the name ``datasets.yaml`` uses after ``plugin:``) and ``Options``
    (their options model, extending :class:`DatasetOptions`; without one, keys other than the
    shared ones are not checked), and implement :meth:`all_subjects`, :meth:`load` and, when
    files may be missing, :meth:`availability`. ``super().__init__`` validates the block once:
    ``self.settings`` is the typed options, ``self.options`` the block as written (the
    fingerprint hashes it).
    """

    kind: ClassVar[str]
    version: ClassVar[str] = "0"
    #: The block's options model; the default checks the shared options and lets others pass.
    Options: ClassVar[type[DatasetOptions]] = OpenDatasetOptions
    license: str = ""
    citation: str = ""
    #: Evaluated labels, value -> name; background (0) is never evaluated.
    labels: dict[int, str]
    #: Whether the kind's data is affinely aligned when its block does not say (``pre_aligned``).
    aligned_by_default: ClassVar[bool] = False

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        self.name = name
        try:  # a dataset's name names its cache folders and field folders
            safe_component(name, "its name (which names its cache and field folders)")
        except UnsafePathError as exc:
            self.fail(str(exc))
        self.options = dict(options)
        self.base_dir = Path(base_dir)
        self.settings = validate(self.Options, self.options, self._where, "option",
                                 DatasetConfigError)
        if self.settings.license is not None:
            self.license = self.settings.license
        if self.settings.citation is not None:
            self.citation = self.settings.citation

    @classmethod
    def from_block(cls, name: str, options: dict[str, Any], config: Config,
                   dataset_kinds: dict[str, type[Dataset]]) -> Dataset:
        """This kind built from its block of ``config`` (a ``datasets.yaml``), as
        :func:`warpbench.config.build_dataset` builds every block. A kind that derives from
        other blocks of the same file (``shifted``) overrides it to build them with
        ``dataset_kinds``; the others need only their options and the file's folder."""
        return cls(name, options, config.base_dir)

    # --- what subclasses implement -------------------------------------------------------------
    def all_subjects(self) -> list[str]:
        """Every subject id, in a stable order."""
        raise NotImplementedError

    def load(self, subject_id: str) -> Subject:
        """One subject on the dataset's grid, intensities normalised."""
        raise NotImplementedError

    def availability(self) -> tuple[bool, str]:
        """Whether the dataset's files are here, and if not, why (shown to the user)."""
        return True, ""

    # --- shared behaviour ----------------------------------------------------------------------
    def fail(self, message: str):
        """Raise the configuration error that names this dataset and its kind."""
        raise DatasetConfigError(f"{self._where}: {message}")

    @property
    def _where(self) -> str:
        return f"dataset {self.name!r} ({self.kind})"

    @property
    def domain(self) -> str:
        """The data source the block reads: its ``domain`` option, else its name."""
        return self.settings.domain or self.name

    @property
    def pre_aligned(self) -> bool:
        """Whether the subjects are affinely aligned already: the block's ``pre_aligned``, else
        the kind's :attr:`aligned_by_default`."""
        stated = self.settings.pre_aligned
        return self.aligned_by_default if stated is None else stated

    def label_names(self) -> dict[int, str]:
        """Each evaluated label's canonical name: its own name unless the block's ``label_map``
        ({id: canonical name}) renames it. A network trained on one dataset and tested on another
        counts as tested on its own label protocol when these names agree (see
        :mod:`warpbench.compatibility`)."""
        renamed = self.settings.label_map
        strangers = sorted(set(renamed) - set(self.labels))
        if strangers:
            self.fail(f"option 'label_map': {strangers[0]} is not one of its label ids "
                      f"{sorted(self.labels)}")
        return {label: renamed.get(label, name) for label, name in self.labels.items()}

    def fingerprint(self) -> str:
        """A short hash of everything that decides this dataset's content and pairs."""
        blob = json.dumps([self.kind, self.version, self.options], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def subjects(self, split: str) -> list[str]:
        """The subject ids of one split (disjoint, deterministic from the split seed)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        ids = sorted(self.all_subjects())
        order = np.random.default_rng(self.settings.split.seed).permutation(len(ids))
        shuffled = [ids[i] for i in order]
        counts = self._split_counts(len(ids))
        start = sum(counts[s] for s in SPLITS[: SPLITS.index(split)])
        return sorted(shuffled[start : start + counts[split]])

    def pairs(self, split: str = "test") -> list[Pair]:
        """Ordered evaluation pairs within one split: ``pairs.<split>`` random distinct pairs, or
        every ordered pair when it is ``all``."""
        ids = self.subjects(split)
        wanted = getattr(self.settings.pairs, split)
        every = [Pair(f, m) for f in ids for m in ids if f != m]
        if wanted == "all" or wanted >= len(every):
            return every
        rng = np.random.default_rng(self.settings.pairs.seed)
        chosen = rng.choice(len(every), size=int(wanted), replace=False)
        return [every[i] for i in sorted(chosen)]

    def _split_counts(self, n: int) -> dict[str, int]:
        values = {s: getattr(self.settings.split, s) for s in SPLITS}
        if all(isinstance(v, float) and v <= 1 for v in values.values() if v):
            counts = {s: int(round(values[s] * n)) for s in SPLITS}
            counts["train"] = n - counts["val"] - counts["test"]
        else:
            counts = {s: int(values[s]) for s in SPLITS}
        if sum(counts.values()) > n or min(counts.values()) < 0:
            self.fail(f"split {values} asks for more than its {n} subjects")
        return counts


def files_digest(fingerprint: str, files: list[Path], root: Path) -> str:
    """``fingerprint`` combined with the content of ``files`` (their paths under ``root`` and a
    sha256 of their bytes), for readers whose block alone does not decide the data: a subject
    added, removed or rewritten makes a new fingerprint, and a copy of the same files under the
    same block on another machine keeps it (modification times would not)."""
    digest = hashlib.sha256(fingerprint.encode())
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        try:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:  # loading the subject names the file; here it only counts
            digest.update(f"unreadable: {type(exc).__name__}".encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def check_volumes(image: np.ndarray, labels: np.ndarray, image_name: str = "the image",
                  labels_name: str = "the label map") -> None:
    """Raise :class:`SubjectError` unless ``image`` and ``labels`` are 3-D arrays of one shape, the
    image finite and the labels integers: what every method and score relies on. A NaN image
    would be scored (or blamed on a method) and fractional labels silently rounded, so a reader
    checks what it read here, naming its files, and :func:`load_subject` checks every subject."""
    for name, array in ((image_name, image), (labels_name, labels)):
        if array.ndim != 3:
            raise SubjectError(f"{name} holds a {array.ndim}-D array of shape {array.shape}; "
                               "expected 3-D")
    if labels.shape != image.shape:
        raise SubjectError(f"{labels_name} has shape {labels.shape}, unlike the shape "
                           f"{image.shape} of {image_name}")
    check_image(image, image_name)
    check_labels(labels, labels_name)


def check_image(image: np.ndarray, name: str = "the image") -> None:
    """Raise :class:`SubjectError` unless every voxel of ``image`` is finite."""
    if not np.isfinite(image).all():
        raise SubjectError(f"{name} has {np.count_nonzero(~np.isfinite(image))} non-finite "
                           f"voxels (NaN or infinite) of {image.size}")


def check_labels(labels: np.ndarray, name: str = "the label map") -> None:
    """Raise :class:`SubjectError` unless ``labels`` holds integers (integral floats pass)."""
    if labels.dtype.kind not in "biuf":
        raise SubjectError(f"{name} holds {labels.dtype} values; a label map holds integers")
    if labels.dtype.kind == "f":
        wrong = ~np.isfinite(labels) | (labels != np.rint(labels))
        if wrong.any():
            raise SubjectError(f"{name} holds values that are not integers (such as "
                               f"{labels[wrong].flat[0]:g}); a label map holds integers")


def load_subject(dataset: Dataset, subject_id: str) -> Subject:
    """``dataset.load(subject_id)``, checked by :func:`check_volumes`: how the platform loads a
    subject, so that whatever a reader raises or returns, an unusable subject is one
    :class:`SubjectError` naming it (and keeping the reader's message), which costs only the
    pairs of that subject. A subject id becomes part of paths (a reader's cache, a field file's
    name), so one that is not a single path component is refused before the reader sees it."""
    try:
        safe_component(subject_id, "subject id")
        subject = dataset.load(subject_id)
        check_volumes(subject.image, subject.labels)
    except Exception as exc:  # any reader's failure, named and kept
        reason = str(exc) if isinstance(exc, SubjectError) else f"{type(exc).__name__}: {exc}"
        message = f"dataset {dataset.name!r}, subject {subject_id!r}: {reason}"
        raise SubjectError(" ".join(message.split())) from exc
    return subject
