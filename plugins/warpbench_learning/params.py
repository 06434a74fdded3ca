"""The parameters both learning methods take: the training budget and losses, the network, and
test-time optimisation (the presets' values are in :mod:`warpbench_learning.methods`)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from warpbench.methods import SUPERVISION
from warpbench.options import Settings


class UNetParams(Settings):
    """A learning method's preset, resolved."""

    supervision: Literal[SUPERVISION]
    """"labels" adds the Dice loss of the warped moving labels."""
    steps: NonNegativeInt
    """Optimiser steps: the training budget."""
    minutes: NonNegativeFloat | None
    """A wall-clock budget too, when set (time spent before a resume counts)."""
    batch_size: PositiveInt
    learning_rate: PositiveFloat
    lncc_window: PositiveInt
    """Voxels per side of the local NCC window."""
    smoothness_weight: NonNegativeFloat
    """Weight of the diffusion regulariser."""
    dice_weight: NonNegativeFloat
    """Weight of the Dice loss, used when supervision is "labels"."""
    integration_steps: NonNegativeInt
    """Scaling-and-squaring steps integrating the velocity."""
    downsize: PositiveInt
    """The network and the integration work on the pair shrunk by this factor."""
    augment: bool
    """Random flips of whole pairs."""
    log_every: PositiveInt
    """Steps between train-loss points."""
    val_every: PositiveInt
    """Steps between validations."""
    val_pairs: NonNegativeInt
    """Validation pairs drawn when the dataset names none."""
    checkpoint_every: PositiveInt
    """Steps between checkpoints."""
    io_steps: NonNegativeInt
    """Test-time optimisation steps per pair (0: none)."""
    io_learning_rate: PositiveFloat
    """Voxels of velocity per test-time Adam step."""
    encoder: list[PositiveInt]
    """Channels per encoder level."""
    decoder: list[PositiveInt]
    """Channels per decoder level, then of the extra full-resolution convolutions."""
