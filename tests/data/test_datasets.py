from collections.abc import Callable

import pytest
import torch
from torch.utils.data import TensorDataset

from prunekit.data import DATASETS, load_dataset, load_digits
from prunekit.errors import ConfigError, UnknownNameError


def test_mnist_train_split_matches_the_published_data(mnist_train: TensorDataset) -> None:
    x, y = mnist_train.tensors
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(y).tolist()[:2] == [5923, 6742]


def test_mnist_test_split_matches_the_published_data(mnist_test: TensorDataset) -> None:
    x, y = mnist_test.tensors
    assert x.shape == (10000, 1, 28, 28)
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_documented_mnist_constants_standardise_the_training_pixels(
    mnist_train: TensorDataset,
) -> None:
    x = mnist_train.tensors[0]
    assert abs(x.mean().item()) < 1e-3
    assert x.std().item() == pytest.approx(1.0, abs=1e-3)
    # a blank pixel maps to -mean/std
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-6)


def test_fashion_mnist_is_balanced_and_starts_with_an_ankle_boot(
    real_dataset: Callable[[str, str], TensorDataset],
) -> None:
    x, y = real_dataset("fashion-mnist", "test").tensors
    assert x.shape == (10000, 1, 28, 28)
    assert y[0].item() == 9  # class 9 is "ankle boot"
    assert torch.bincount(y).tolist() == [1000] * 10


def test_digits_split_is_stratified_disjoint_and_repeatable() -> None:
    train, test = load_digits("train"), load_digits("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.tensors[0].shape == (1437, 1, 8, 8)
    assert torch.bincount(test.tensors[1]).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    assert torch.equal(load_digits("test").tensors[0], test.tensors[0])
    assert not torch.equal(load_digits("test", seed=1).tensors[1], test.tensors[1])
    assert len(load_digits("test", test_fraction=0.5)) == 899


def test_documented_digits_constants_standardise_all_images() -> None:
    x = torch.cat([load_digits("train").tensors[0], load_digits("test").tensors[0]])
    assert abs(x.mean().item()) < 1e-3
    assert x.std().item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1])
def test_digits_test_fraction_must_be_a_proper_fraction(test_fraction: float) -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        load_digits("test", test_fraction=test_fraction)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_registered_dataset_loads_with_its_declared_geometry(
    name: str, real_dataset: Callable[[str, str], TensorDataset]
) -> None:
    info = DATASETS.get(name)
    x, y = real_dataset(name, "test").tensors
    assert tuple(x.shape[1:]) == info.image_shape
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.min().item() >= 0 and y.max().item() == info.num_classes - 1
    assert info.std > 0 and info.reference


def test_aliases_and_unknown_names() -> None:
    assert DATASETS.canonical("Fashion_MNIST") == "fashion-mnist"
    with pytest.raises(UnknownNameError, match="did you mean 'mnist'"):
        load_dataset("minst", "test")
