"""How a network's test relates to its training: in domain or shifted, on its own label protocol
or another.

A registration network outputs a field, not labels, so it can register any pair of 3-D volumes
(it pads internally, and every dataset's volumes are (D, H, W) by the spatial contract): a network
trained on one dataset is evaluated on every dataset of a plan, and scored there with that
dataset's own labels, as the study tested networks trained on OASIS on the Klein 2009 sets. Two
things are recorded with each such run, because they change what its Dice means:

- *in domain* (:func:`in_domain`): tested on the data source it was trained on. A block names its
  source with ``domain`` (by default its own name), so a block over held-out subjects of the same
  collection is in domain, and an acquisition change (``shifted``) or another collection is not.
- *same labels* (:func:`same_labels`): the tested dataset evaluates the very structures the
  training set had, by their canonical names (:meth:`warpbench.datasets.Dataset.label_names`,
  which a block's ``label_map`` can rename). A label-supervised network learnt to align *its*
  structures; on another protocol it is scored on structures it never saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # the store imports this module, and a reader of the store needs no torch
    from warpbench.datasets import Dataset


def same_labels(trained_on: Dataset, evaluated: Dataset) -> bool:
    """Whether ``evaluated`` scores the structures ``trained_on`` has, by canonical name."""
    return (trained_on.name == evaluated.name
            or set(trained_on.label_names().values()) == set(evaluated.label_names().values()))


def label_protocol_note(trained_on: Dataset, evaluated: Dataset) -> str | None:
    """What a network trained on ``trained_on`` is scored on when ``evaluated`` has other labels
    (the labels shared and those only one side has), for the plan's listing; None when they are
    the same."""
    if same_labels(trained_on, evaluated):
        return None
    ours, theirs = set(trained_on.label_names().values()), set(evaluated.label_names().values())
    return (f"scored on {evaluated.name}'s own labels, another protocol than "
            f"{trained_on.name}'s ({len(ours & theirs)} shared; only in {trained_on.name}: "
            f"{_some(ours - theirs)}; only in {evaluated.name}: {_some(theirs - ours)}); a "
            "block's label_map can say which names mean the same structure")


def in_domain(train_domain: str | None, domain: str) -> bool | None:
    """Whether a run tests its network on the data source it was trained on, given the two
    datasets' domains (:attr:`warpbench.datasets.Dataset.domain`; a run stored before domains
    existed passes the dataset names, each block its own domain); None for a method that is not
    trained. Computed here only: the scheduler stores it with the run (``runs.in_domain``) and
    every table and report reads it from there."""
    if train_domain is None:
        return None
    return train_domain == domain


def test_condition(in_domain, same_labels) -> str | None:
    """How every table words a trained run's test: ``in-domain`` or ``shifted``, with ``, other
    labels`` when it was scored on another label protocol; None for a run that is not trained
    (``in_domain`` missing). Accepts the store's values as pandas reads them (NA for unknown)."""
    if pd.isna(in_domain):
        return None
    words = "in-domain" if in_domain else "shifted"
    return f"{words}, other labels" if not pd.isna(same_labels) and not same_labels else words


def _some(names: set[str], shown: int = 4) -> str:
    """A few of ``names`` (sorted), and how many more: a note stays one readable line."""
    if not names:
        return "none"
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more
