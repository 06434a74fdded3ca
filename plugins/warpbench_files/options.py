"""The options of the three kinds: what every reader brings onto its grid (:class:`GridOptions`),
and what each kind adds to find its files.

Every field has a docstring: ``warpbench schema`` shows it, and a bad value is reported as one
line naming the block and the key (:mod:`warpbench.options`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt

from warpbench.datasets import Count, DatasetOptions, LabelNames
from warpbench.options import Settings, must_be, number

#: The world axes' letter pairs: an orientation takes one letter of each, in any order.
AXIS_PAIRS = ("LR", "PA", "IS")

Millimetres = number(gt=0)


def _orientation(codes: str) -> str:
    """Three letters naming the direction each array axis runs towards (nibabel's axis codes)."""
    codes = codes.upper()
    pairs = sorted(next((p for p in AXIS_PAIRS if letter in p), letter) for letter in codes)
    if len(codes) != 3 or pairs != sorted(AXIS_PAIRS):
        raise ValueError("must be 3 letters, one of each of L/R, A/P and I/S, such as RAS or LPS")
    return codes


def _pattern(pattern: str) -> str:
    if "{id}" not in pattern:
        raise ValueError(f"must hold '{{id}}' (the subject id), got {pattern!r}")
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise ValueError(f"must be a path under 'root', got {pattern!r}")
    return pattern


Pattern = Annotated[str, AfterValidator(_pattern)]
Orientation = Annotated[str, AfterValidator(_orientation)]


class Patterns(Settings):
    """Where each subject's files are, as paths under ``root``: ``{id}`` stands for the subject
    id (the same one wherever it appears) and ``*`` for any characters within one folder or file
    name."""

    image: Pattern
    """The image of each subject; the subjects are the ids found for this pattern."""
    labels: Pattern
    """Its label map (a subject without one fails to load, naming the file it looked for)."""
    mask: Pattern | None = None
    """Its mask (optional): the image is 0 outside the mask."""


class GridOptions(DatasetOptions):
    """How every kind of this plugin brings a subject onto the dataset's grid: one orientation,
    one spacing, then centre-cropped or padded to one shape."""

    spacing: Annotated[tuple[Millimetres, Millimetres, Millimetres],
                       must_be("3 positive numbers (mm)")] | None = None
    """Voxel size in mm: every subject is resampled to it through its affine (images linear,
    labels and masks nearest neighbour). Default: each file's own spacing, not resampled."""
    grid: Annotated[tuple[Count, Count, Count], must_be("3 positive integers")] | None = None
    """The shape every subject is centre-cropped or zero-padded to, after resampling."""
    orientation: Annotated[Orientation, must_be("3 axis letters such as RAS or LPS")] | None = None
    """Where each array axis points (RAS: right, anterior, superior); every subject is
    reoriented to it. Default: the first subject's orientation, so files stored alike are never
    permuted and a grid reads in the files' axis order."""
    cut_labels: Literal["warn", "error"] = "warn"
    """What a grid that cuts off labelled voxels does: warn, naming the subject and the count, or
    fail that subject's load."""
    mask_labels: bool = False
    """Also set the labels outside the mask to background (by default a mask changes only the
    image, so every labelled structure is still scored)."""
    label_geometry: Literal["own", "image"] = "own"
    """Where the label map and mask lie: `own`, where their files' affines put them (brought onto
    the image's grid in world coordinates); `image`, on the image's voxels, taking the image's
    affine, for collections whose label files carry no usable geometry of their own (Analyze
    atlases written without voxel sizes). With `image` a label map or mask whose shape is not the
    image's fails its subject, naming both files."""
    cache_dir: Annotated[Path, must_be("a path")] = Path("results/cache/datasets")
    """Where preprocessed subjects are cached, relative to the folder of datasets.yaml."""


class FilesOptions(GridOptions):
    """Image and label files found by path patterns under a root folder."""

    root: Annotated[str, Field(min_length=1), must_be("a folder path")]
    """The folder the patterns are under, relative to the folder of datasets.yaml (or
    absolute)."""
    files: Patterns
    """The patterns of the image, labels and optional mask files."""
    labels: Annotated[LabelNames | Literal["found"],
                      must_be("a mapping of positive label values to names, or 'found'")] | None = (
        None)
    """{value: name} of the evaluated labels, or `found`: every value above 0 in any subject's
    label map, named `label_<value>` (for a collection whose label table is not known; the values
    each file holds are remembered beside the cache, so the files are read once)."""
    labels_file: Annotated[str, Field(min_length=1), must_be("a file path")] | None = None
    """A FreeSurfer colour table (`value name R G B A` per line) under root naming the evaluated
    labels: every value above 0 in it. Used when `labels` is not given."""
    limit: Annotated[Count, must_be("a positive integer")] | None = None
    """Only the first N subjects (in id order), for quick runs."""
    obtain: Annotated[str, Field(min_length=1), must_be("a sentence")] | None = None
    """Where and how the data is obtained, told with the reason while the root is missing
    (`warpbench datasets` lists the dataset as unavailable)."""


class NeuriteOasisOptions(FilesOptions):
    """The neurite OASIS collection (414 FreeSurfer-processed OASIS-1 subjects, affinely aligned
    to a common 160x192x224 1 mm space): its file names are the defaults."""

    files: Patterns = Patterns(image="OASIS_OAS1_{id}_MR1/aligned_norm.nii.gz",
                               labels="OASIS_OAS1_{id}_MR1/aligned_seg35.nii.gz")
    """The patterns (default: the skull-stripped aligned image and its 35-label map)."""
    labels_file: Annotated[str, Field(min_length=1), must_be("a file path")] | None = (
        "seg35_labels.txt")
    """The colour table naming the labels (default: the collection's seg35_labels.txt)."""
    grid: Annotated[tuple[Count, Count, Count], must_be("3 positive integers")] | None = (
        160, 192, 224)
    """The shape (default: the collection's own, 160x192x224)."""


class TrainPairs(Settings):
    """Pairs drawn among the train subjects; the val and test pairs are the task's own."""

    train: Annotated[Annotated[StrictInt, Field(ge=0)] | Literal["all"],
                     must_be("a count or 'all'")] = 0
    """Random ordered pairs of train subjects, or `all`."""
    seed: Annotated[StrictInt, Field(ge=0), must_be("a non-negative integer")] = 0
    """Seed of the draw."""


class Learn2RegOptions(GridOptions):
    """A Learn2Reg task folder: its ``<TASK>_dataset.json`` lists the subjects, labels and the
    official registration pairs."""

    root: Annotated[str, Field(min_length=1), must_be("a folder path")]
    """The task folder (holding the dataset.json), relative to the folder of datasets.yaml."""
    task: Annotated[str, Field(min_length=1), must_be("a file name")] | None = None
    """The dataset.json's file name (default: the one `*_dataset.json` in root)."""
    labels: LabelNames | None = None
    """{value: name} of the evaluated labels (default: the dataset.json's)."""
    use_masks: bool = True
    """Apply each subject's mask, where its entry names one."""
    test_pairs: Literal["registration_val", "registration_test"] | None = None
    """Which official pairs are the test pairs (default: registration_test when it is given and
    every subject in it has a label map, else registration_val)."""
    split: Annotated[None, must_be("left out: the dataset.json defines the split")] = None
    """Not used: the train, val and test subjects follow from the task's official pairs."""
    pairs: TrainPairs = TrainPairs()
    """Random pairs among the train subjects (val and test pairs are the task's)."""
