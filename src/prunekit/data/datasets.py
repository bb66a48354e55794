"""Real image-classification data sets, read offline into ``TensorDataset`` objects.

Every loader returns float32 images ``[N, 1, H, W]`` normalised as ``(x - mean) / std`` after
scaling pixels to [0, 1], and int64 labels ``[N]``. The mean and std are those of the training
pixels, kept in :data:`DATASETS` (``DATASETS.get("mnist").mean``) so a user can undo them:

=============  ======  ======  ===================================================
name           mean    std     computed over
=============  ======  ======  ===================================================
mnist          0.1307  0.3081  the 60,000 training images (the usual constants)
fashion-mnist  0.2860  0.3530  the 60,000 training images
digits         0.3053  0.3760  all 1,797 images, pixels divided by 16
=============  ======  ======  ===================================================

Decoding the 60,000 MNIST training images takes well under a second, so nothing is cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from prunekit.data.idx import read_idx
from prunekit.data.locate import find_dataset_files
from prunekit.errors import ConfigError, DataError
from prunekit.registry import Registry

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")

#: IDX file names (without ``.gz``) of each split, shared by MNIST and Fashion-MNIST.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set: how to load it and what its samples look like.

    Attributes:
        name: registry key.
        load: ``load(split, root)`` returning the split as a ``TensorDataset``.
        num_classes: number of label values (labels are ``0 .. num_classes - 1``).
        image_shape: ``(channels, height, width)`` of one image.
        mean: pixel mean (after scaling to [0, 1]) subtracted by the loader.
        std: pixel standard deviation the loader divides by.
        reference: where the data comes from.
    """

    name: str
    load: Callable[[Split, str | Path | None], TensorDataset]
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: float
    std: float
    reference: str


def load_mnist(root: str | Path | None = None, split: Split = "train") -> TensorDataset:
    """MNIST handwritten digits (LeCun et al. 1998), 60,000 train / 10,000 test, 28x28.

    ``root`` is a folder holding ``mnist/`` (or the IDX files themselves); ``None`` searches
    the places listed in :mod:`prunekit.data.locate`.
    """
    info = DATASETS.get("mnist")
    return _load_idx_split("mnist", root, split, info.num_classes, info.mean, info.std)


def load_fashion_mnist(root: str | Path | None = None, split: Split = "train") -> TensorDataset:
    """Fashion-MNIST clothing images (Xiao, Rasul & Vollgraf 2017), 60,000 / 10,000, 28x28.

    ``root`` is a folder holding ``fashion-mnist/`` (or the IDX files themselves); ``None``
    searches the places listed in :mod:`prunekit.data.locate`.
    """
    info = DATASETS.get("fashion-mnist")
    return _load_idx_split("fashion-mnist", root, split, info.num_classes, info.mean, info.std)


def load_digits(split: Split = "train", test_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits), as ``[N, 1, 8, 8]``.

    The data ships without a split; this one is stratified by label and fixed by ``seed``, so the
    same ``test_fraction`` and ``seed`` always give the same train and test sets.
    """
    _check_split(split)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    index = np.arange(len(labels))
    train_index, test_index = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=labels
    )
    chosen = np.sort(train_index if split == "train" else test_index)
    info = DATASETS.get("digits")
    return _to_dataset(images[chosen], labels[chosen], 16.0, info.mean, info.std)


def load_dataset(
    name: str, split: Split = "train", root: str | Path | None = None
) -> TensorDataset:
    """Load the registered data set ``name`` (see :data:`DATASETS`) by name."""
    return DATASETS.get(name).load(split, root)


def _load_idx_split(
    subdir: str,
    root: str | Path | None,
    split: Split,
    num_classes: int,
    mean: float,
    std: float,
) -> TensorDataset:
    _check_split(split)
    if root is not None and str(root) in SPLITS and not Path(root).is_dir():
        raise ConfigError(f"root={root!r} looks like a split; call with split={root!r}")
    images_path, labels_path = find_dataset_files(subdir, IDX_FILES[split], root)
    images = read_idx(images_path, expect_ndim=3)
    labels = read_idx(labels_path, expect_ndim=1)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(
            f"{labels_path} holds label {int(labels.max())}; "
            f"{subdir} labels are 0..{num_classes - 1}"
        )
    return _to_dataset(images, labels, 255.0, mean, std)


def _to_dataset(
    images: np.ndarray, labels: np.ndarray, top: float, mean: float, std: float
) -> TensorDataset:
    """Images ``[N, H, W]`` with pixels in ``[0, top]`` and their labels -> a dataset of
    ``(pixels / top - mean) / std`` as float32 ``[N, 1, H, W]`` and int64 labels."""
    # torch converts and normalises in place, about 5x faster than numpy's astype on 60k images
    x = torch.from_numpy(np.array(images)).to(torch.float32)
    x = x.div_(top).sub_(mean).div_(std).unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(np.array(labels, dtype=np.int64)))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")


def _load_digits_entry(split: Split, root: str | Path | None) -> TensorDataset:
    """Registry adapter: the digits ship inside scikit-learn, so ``root`` is not used."""
    return load_digits(split)


DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register(
    "mnist",
    DatasetInfo(
        name="mnist",
        load=lambda split, root: load_mnist(root, split),
        num_classes=10,
        image_shape=(1, 28, 28),
        mean=0.1307,
        std=0.3081,
        reference="LeCun, Bottou, Bengio & Haffner 1998; http://yann.lecun.com/exdb/mnist/",
    ),
)
DATASETS.register(
    "fashion-mnist",
    DatasetInfo(
        name="fashion-mnist",
        load=lambda split, root: load_fashion_mnist(root, split),
        num_classes=10,
        image_shape=(1, 28, 28),
        mean=0.2860,
        std=0.3530,
        reference="Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747",
    ),
    aliases=("fashion_mnist", "fashionmnist"),
)
DATASETS.register(
    "digits",
    DatasetInfo(
        name="digits",
        load=_load_digits_entry,
        num_classes=10,
        image_shape=(1, 8, 8),
        mean=0.3053,
        std=0.3760,
        reference="scikit-learn load_digits (UCI optical recognition of handwritten digits)",
    ),
)
