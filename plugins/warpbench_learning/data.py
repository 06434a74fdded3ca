"""Images and labels as the networks see them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from warpbench.datasets import Dataset, load_subject

# Intensities are mapped from these percentiles onto [0, 1] and clipped: robust to a few extreme
# voxels, and the same input range whatever the scanner or dataset scale.
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def normalise(image: np.ndarray) -> np.ndarray:
    """``image`` mapped by its own percentiles onto [0, 1], float32."""
    low, high = np.percentile(image, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scaled = (image - low) / max(float(high - low), 1e-12)
    return np.clip(scaled, 0, 1).astype(np.float32)


class Subjects:
    """The subjects of one split, loaded once: normalised images (S, 1, D, H, W) and label maps
    as indices into the dataset's evaluated labels (0 for anything else), on ``device``."""

    def __init__(self, dataset: Dataset, ids: list[str], device: torch.device):
        self.ids = list(ids)
        self.label_values = sorted(dataset.labels)
        lookup = {value: index + 1 for index, value in enumerate(self.label_values)}
        images, labels = [], []
        for subject_id in self.ids:
            subject = load_subject(dataset, subject_id)  # a bad file is named, not trained on
            images.append(normalise(subject.image))
            index = np.zeros(subject.labels.shape, np.int64)
            for value, position in lookup.items():
                index[subject.labels == value] = position
            labels.append(index)
        self.images = torch.as_tensor(np.stack(images)[:, None], device=device)
        self.labels = torch.as_tensor(np.stack(labels), device=device)

    def __len__(self) -> int:
        return len(self.ids)

    def onehot(self, indices: torch.Tensor) -> torch.Tensor:
        """One-hot evaluated labels (N, L, D, H, W) of the subjects at ``indices``, background
        dropped."""
        hot = F.one_hot(self.labels[indices], len(self.label_values) + 1)
        return hot.permute(0, 4, 1, 2, 3)[:, 1:].float()
