"""The parameters the learning methods take: the training recipe (budget, schedule, model
selection, augmentation, losses), test-time optimisation, and each network's own (the presets'
values are in :mod:`warpbench_learning.methods`)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from warpbench.methods import SUPERVISION
from warpbench.options import Settings


class Augmentation(Settings):
    """Random transforms of every training subject (:mod:`warpbench_learning.augmentation`):
    each bound is the largest value drawn, uniformly, in either direction."""

    rotation: NonNegativeFloat
    """Degrees about each axis."""
    scaling: NonNegativeFloat
    """Relative change of size along each axis."""
    translation: NonNegativeFloat
    """Voxels along each axis."""
    elastic: NonNegativeFloat
    """Voxels: the standard deviation of the smooth velocity's control points."""
    elastic_spacing: PositiveInt
    """Voxels between the smooth velocity's control points."""
    gamma: NonNegativeFloat
    """Standard deviation of log(gamma) of the intensity curve."""
    bias: NonNegativeFloat
    """Standard deviation of the log bias field's control points (a multiplicative field)."""
    noise: NonNegativeFloat
    """Standard deviation of Gaussian noise, images being in [0, 1]."""


class TrainingParams(Settings):
    """What every learning method's preset holds besides its network."""

    supervision: Literal[SUPERVISION]
    """"labels" adds the Dice loss of the warped moving labels."""
    steps: NonNegativeInt
    """Optimiser steps: the training budget."""
    minutes: NonNegativeFloat | None
    """A wall-clock budget too, when set (time spent before a resume counts)."""
    batch_size: PositiveInt
    """Pairs per step on the CPU."""
    cuda_batch_size: PositiveInt
    """Pairs per step on a CUDA device, where a larger batch costs little more time."""
    learning_rate: PositiveFloat
    """Adam's learning rate after the warm-up."""
    lr_schedule: Literal["constant", "cosine"]
    """"cosine" decays the learning rate to zero at ``steps`` along half a cosine."""
    warmup_steps: NonNegativeInt
    """Steps over which the learning rate rises linearly from zero."""
    lncc_window: PositiveInt
    """Voxels per side of the local NCC window."""
    smoothness_weight: NonNegativeFloat
    """Weight of the diffusion regulariser."""
    dice_weight: NonNegativeFloat
    """Weight of the Dice loss, used when supervision is "labels"."""
    integration_steps: NonNegativeInt
    """Scaling-and-squaring steps integrating the velocity (0: the network's output is the
    displacement itself)."""
    integration_downsize: PositiveInt
    """The velocity is integrated on the image grid shrunk by this factor, or on the network's
    grid where that is coarser (VoxelMorph's ``int_downsize``)."""
    downsize: PositiveInt | Literal["auto"]
    """The network and the integration work on the pair shrunk by this factor; "auto": full
    resolution on a small training grid, half on a large one (:mod:`warpbench_learning.model`)."""
    augment: Augmentation | None
    """Random transforms of the training subjects (None: none)."""
    log_every: PositiveInt
    """Steps between train-loss points."""
    val_every: PositiveInt
    """Steps between validations (the last step is validated too)."""
    val_pairs: NonNegativeInt
    """Validation pairs drawn when the dataset names none."""
    patience: NonNegativeInt
    """Validations in a row without a better validation Dice after which training stops
    (0: never early)."""
    checkpoint_every: PositiveInt
    """Steps between checkpoints (every validation is checkpointed too)."""
    io_steps: NonNegativeInt
    """Test-time optimisation steps per pair (0: none)."""
    io_learning_rate: PositiveFloat
    """Voxels of velocity per test-time Adam step."""


class UNetParams(TrainingParams):
    """VoxelMorph's and LKU-Net's presets."""

    encoder: list[PositiveInt]
    """Channels per encoder level."""
    decoder: list[PositiveInt]
    """Channels per decoder level, then of the extra full-resolution convolutions."""


class TransMorphParams(TrainingParams):
    """TransMorph's presets: its Swin-transformer encoder (:mod:`warpbench_learning.transmorph`)."""

    patch_size: PositiveInt
    """Voxels per side of a patch (a power of two): the first stage's tokens."""
    embed_dim: PositiveInt
    """Channels of the first stage; each further stage doubles them."""
    depths: list[PositiveInt]
    """Swin blocks per stage."""
    heads: list[PositiveInt]
    """Attention heads per stage."""
    window: list[PositiveInt]
    """Tokens per attention window along each axis, the same in every stage."""
    mlp_ratio: PositiveFloat
    """Hidden channels of a block's MLP per channel."""
    drop_path: NonNegativeFloat
    """Stochastic depth: the largest rate, reached by the last block (linear from zero)."""

    @model_validator(mode="after")
    def _consistent(self) -> TransMorphParams:
        """A network these settings can build: one head count per stage, dividing its channels;
        a 3-D window; a patch size that halves down to one voxel."""
        if len(self.heads) != len(self.depths):
            raise ValueError(f"heads {self.heads} and depths {self.depths} must be as long")
        for stage, heads in enumerate(self.heads):
            if (self.embed_dim * 2**stage) % heads:
                raise ValueError(f"stage {stage}'s {self.embed_dim * 2**stage} channels do not "
                                 f"divide among {heads} heads")
        if len(self.window) != 3:
            raise ValueError(f"window {self.window} must have three sides")
        if self.patch_size & (self.patch_size - 1):
            raise ValueError(f"patch_size {self.patch_size} must be a power of two")
        return self
