import pytest
from torch.utils.data import TensorDataset

from prunekit.data import load_mnist
from prunekit.errors import DataError


@pytest.fixture(scope="session")
def mnist_train_set() -> TensorDataset:
    """The real MNIST training split, or skip the test saying where prunekit looked."""
    try:
        return load_mnist(split="train")
    except DataError as error:
        pytest.skip(f"MNIST data not found (set PRUNEKIT_DATA): {error}")
