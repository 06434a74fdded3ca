"""MI(i;s): it equals H(s) when intensity names the label, vanishes when independent, and drops
by a hand-computable amount when labels share an intensity."""

import numpy as np
import pytest

from warpbench.mi import mutual_information


def _label_map(rng, shape=(16, 16, 16), values=(1, 2, 3, 4)) -> np.ndarray:
    return rng.choice(np.asarray(values), size=shape)


def test_intensity_that_names_the_label_carries_all_of_its_entropy():
    rng = np.random.default_rng(0)
    labels = [_label_map(rng) for _ in range(2)]
    # Distinct intensities per label, equally spaced, so they land in distinct bins.
    images = [10.0 * lab + 5.0 for lab in labels]
    result = mutual_information(images, labels)
    assert result["mi_bits"] == pytest.approx(result["label_entropy_bits"], rel=1e-12)
    assert result["nmi"] == pytest.approx(1.0)
    assert result["label_entropy_bits"] == pytest.approx(2.0, abs=0.01)  # 4 near-equal labels
    assert result["voxels"] == 2 * 16**3
    assert result["bins"] == 32


def test_noise_carries_no_information():
    rng = np.random.default_rng(1)
    labels = [_label_map(rng, shape=(32, 32, 32))]
    images = [rng.random((32, 32, 32)) + 0.1]
    result = mutual_information(images, labels)
    # Plug-in bias is about (32 - 1)(4 - 1) / (2 N ln 2) = 0.002 bits for N = 32^3.
    assert result["mi_bits"] < 0.01


def test_grouped_intensities_lose_the_distinction_inside_a_group():
    # 64 voxels: label 1 on half, labels 2 and 3 on a quarter each, so H(s) = 1.5 bits.
    labels = np.repeat([1, 2, 3], [32, 16, 16]).reshape(4, 4, 4)
    # Labels 2 and 3 share an intensity: MI = H(intensity) = H(1/2, 1/2) = 1 bit, NMI = 2/3.
    grouped = np.where(labels == 1, 1.0, 2.0)
    result = mutual_information([grouped], [labels])
    assert result["mi_bits"] == pytest.approx(1.0)
    assert result["label_entropy_bits"] == pytest.approx(1.5)
    assert result["nmi"] == pytest.approx(2 / 3)
    distinct = mutual_information([labels.astype(np.float64)], [labels])
    assert distinct["mi_bits"] == pytest.approx(1.5)


def test_zero_padding_and_intensity_scale_do_not_matter():
    labels = np.repeat([1, 2, 3], [32, 16, 16]).reshape(4, 4, 4)
    image = np.where(labels == 1, 1.0, 2.0)
    reference = mutual_information([image], [labels])
    padded_labels = np.pad(labels, 3)
    padded_image = np.pad(100.0 * image, 3)  # another scanner's scale, zero-padded
    result = mutual_information([image, padded_image], [labels, padded_labels])
    assert result["voxels"] == 2 * labels.size
    assert result["mi_bits"] == pytest.approx(reference["mi_bits"])
    assert result["nmi"] == pytest.approx(reference["nmi"])


def test_background_with_signal_counts_as_a_label():
    labels = np.repeat([0, 1], [32, 32]).reshape(4, 4, 4)
    image = np.where(labels == 0, 1.0, 2.0)  # background tissue has signal, so it is in the mask
    result = mutual_information([image], [labels])
    assert result["voxels"] == 64
    assert result["mi_bits"] == pytest.approx(1.0)
