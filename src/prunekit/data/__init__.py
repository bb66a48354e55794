"""Real data, read offline: IDX files, MNIST, Fashion-MNIST, scikit-learn digits, and loaders.

``load_dataset("mnist", "test")`` loads a registered data set by name (see :data:`DATASETS`);
``make_loader(dataset, 128, shuffle=True, seed=0, limit=512)`` wraps it for training.
"""

from prunekit.data.datasets import (
    DATASETS,
    IDX_FILES,
    SPLITS,
    DatasetInfo,
    Split,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)
from prunekit.data.idx import read_idx, write_idx
from prunekit.data.loaders import make_loader, take_first
from prunekit.data.locate import ENV_VAR, candidate_roots, find_dataset_files

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "IDX_FILES",
    "SPLITS",
    "DatasetInfo",
    "Split",
    "candidate_roots",
    "find_dataset_files",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_loader",
    "read_idx",
    "take_first",
    "write_idx",
]
