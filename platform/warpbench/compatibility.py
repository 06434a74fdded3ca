"""Which datasets a network trained on one dataset may be evaluated on.

A registration network outputs a field, not labels, so it can register any pair of 3-D volumes:
it pads internally, and every dataset's volumes are (D, H, W) by the spatial contract, so grid
sizes need not agree. What must agree is what the scores mean: a label-supervised network learnt
to align *its* structures, and Dice on another dataset compares like with like only when that
dataset evaluates the same structures. So two datasets are compatible when their canonical label
names (:meth:`warpbench.datasets.Dataset.label_names`, which a block's ``label_map`` can rename)
are the same set.
"""

from __future__ import annotations

from warpbench.datasets import Dataset


def incompatibility(trained_on: Dataset, evaluated: Dataset) -> str | None:
    """Why a network trained on ``trained_on`` cannot be evaluated on ``evaluated``; None when it
    can. The reason names both datasets and the labels only one of them has."""
    if trained_on.name == evaluated.name:
        return None
    ours, theirs = set(trained_on.label_names().values()), set(evaluated.label_names().values())
    if ours == theirs:
        return None
    only_train = ", ".join(sorted(ours - theirs)) or "none"
    only_eval = ", ".join(sorted(theirs - ours)) or "none"
    return (f"labels differ between {trained_on.name!r} and {evaluated.name!r} (only in "
            f"{trained_on.name}: {only_train}; only in {evaluated.name}: {only_eval}); add a "
            "label_map to a datasets.yaml block if they name the same structures")
