"""Which datasets a network trained on one dataset may be evaluated on.

A registration network outputs a field, not labels, so it can register any pair of 3-D volumes:
it pads internally, and every dataset's volumes are (D, H, W) by the spatial contract, so grid
sizes need not agree. What must agree is what the scores mean: a label-supervised network learnt
to align *its* structures, and Dice on another dataset compares like with like only when that
dataset evaluates the same structures. So two datasets are compatible when their canonical label
names (:meth:`warpbench.datasets.Dataset.label_names`, which a block's ``label_map`` can rename)
are the same set.

A run of a trained network is *in domain* when it is tested on the dataset it was trained on,
and *shifted* otherwise; :func:`in_domain` says which, and the store keeps the answer with the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store imports this module, and a reader of the store needs no torch
    from warpbench.datasets import Dataset


def incompatibility(trained_on: Dataset, evaluated: Dataset) -> str | None:
    """Why a network trained on ``trained_on`` cannot be evaluated on ``evaluated``; None when it
    can. The reason names both datasets and the labels only one of them has."""
    if trained_on.name == evaluated.name:
        return None
    ours, theirs = set(trained_on.label_names().values()), set(evaluated.label_names().values())
    if ours == theirs:
        return None
    return (f"labels differ between {trained_on.name!r} and {evaluated.name!r} "
            f"({len(ours & theirs)} shared; only in {trained_on.name}: {_some(ours - theirs)}; "
            f"only in {evaluated.name}: {_some(theirs - ours)}); a datasets.yaml block's "
            "label_map can say which names mean the same structure")


def in_domain(train_dataset: str | None, dataset: str) -> bool | None:
    """Whether a run tests its network on the dataset it was trained on; None for a method that
    is not trained. Computed here only: the scheduler stores it with the run (``runs.in_domain``)
    and every table and report reads it from there."""
    if train_dataset is None:
        return None
    return train_dataset == dataset


def _some(names: set[str], shown: int = 4) -> str:
    """A few of ``names`` (sorted), and how many more: a reason stays one readable line."""
    if not names:
        return "none"
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more
