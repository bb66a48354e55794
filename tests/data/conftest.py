from collections.abc import Callable

import pytest
from torch.utils.data import TensorDataset

from prunekit.data import load_dataset
from prunekit.errors import DataError


def load_or_skip(name: str, split: str) -> TensorDataset:
    """The real data set, or skip the test saying where prunekit looked."""
    try:
        return load_dataset(name, split)  # type: ignore[arg-type]
    except DataError as error:
        pytest.skip(f"{name} {split} data not found (set PRUNEKIT_DATA): {error}")


@pytest.fixture(scope="session")
def mnist_train() -> TensorDataset:
    return load_or_skip("mnist", "train")


@pytest.fixture(scope="session")
def mnist_test() -> TensorDataset:
    return load_or_skip("mnist", "test")


@pytest.fixture(scope="session")
def real_dataset() -> Callable[[str, str], TensorDataset]:
    """``real_dataset(name, split)`` loads a registered data set or skips the test."""
    return load_or_skip
