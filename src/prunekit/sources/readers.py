"""Readers for the user's data: an image folder, a ``.npz`` file, a text file.

Each returns ``(train, test, num_classes)`` datasets of ``(inputs, targets)`` pairs, the shape
prunekit's training and evaluation loops take.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.errors import DataError
from prunekit.sources.base import ModelSource, SourceError, one_line
from prunekit.sources.splits import TEST_FRACTION, split_indices
from prunekit.sources.transforms import shape_transform

Splits = tuple[Dataset[Any], Dataset[Any], int | None]
#: Image size used for an image folder when no model says what it expects.
DEFAULT_IMAGE_SHAPE = (1, 3, 224, 224)


def read_image_folder(directory: str, model: ModelSource | None, seed: int) -> Splits:
    """``torchvision.datasets.ImageFolder`` (one sub-folder per class), preprocessed by the
    model's image transform, else resized to the model's input shape (224x224 RGB without one)."""
    where = f"imagefolder:{directory}"
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise SourceError(f"{where}: no such directory")
    ensure_torchvision_ops()
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root), transform=_image_transform(model))
    except (FileNotFoundError, RuntimeError) as error:
        raise SourceError(
            f"{where}: no images found in {root} (expected one sub-folder per class holding "
            f".jpg/.png files): {one_line(error)}"
        ) from error
    train, test = split_indices(len(folder), folder.targets, seed, where)
    return Subset(folder, train), Subset(folder, test), len(folder.classes)


def _image_transform(model: ModelSource | None) -> Callable[[Any], Any]:
    if model is not None and model.image_transform is not None:
        return model.image_transform
    shape = model.input_shape if model is not None else None
    if shape is None or len(shape) != 4:
        shape = DEFAULT_IMAGE_SHAPE
    return shape_transform(shape)


def read_npz(file: str, seed: int) -> Splits:
    """Arrays ``x`` and ``y`` (else the first two arrays) of a ``.npz`` file: float32 inputs and
    int64 labels, split 80/20 by class. ``x_train, y_train, x_test, y_test`` give the split."""
    where = f"npz:{file}"
    path = Path(file).expanduser()
    if not path.is_file():
        raise SourceError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:
        raise SourceError(f"{where}: not a readable .npz file: {one_line(error)}") from error
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        train = _tensors(arrays["x_train"], arrays["y_train"], f"{where} (train)")
        test = _tensors(arrays["x_test"], arrays["y_test"], f"{where} (test)")
        return train, test, _num_classes(train.tensors[1], test.tensors[1])
    x, y = _pick_xy(arrays, where)
    data = _tensors(x, y, where)
    labels = data.tensors[1]
    train_index, test_index = split_indices(
        len(labels), labels.tolist() if labels.ndim == 1 else None, seed, where
    )
    train = TensorDataset(*(t[train_index] for t in data.tensors))
    test = TensorDataset(*(t[test_index] for t in data.tensors))
    return train, test, _num_classes(labels)


def _pick_xy(arrays: dict[str, np.ndarray], where: str) -> tuple[np.ndarray, np.ndarray]:
    if "x" in arrays and "y" in arrays:
        return arrays["x"], arrays["y"]
    if len(arrays) < 2:
        raise SourceError(
            f"{where}: holds {len(arrays)} array(s) ({', '.join(arrays) or 'none'}); "
            "it needs inputs 'x' and labels 'y'"
        )
    first, second = list(arrays)[:2]
    return arrays[first], arrays[second]


def _tensors(x: np.ndarray, y: np.ndarray, where: str) -> TensorDataset:
    if len(x) != len(y):
        raise SourceError(f"{where}: {len(x)} inputs but {len(y)} labels")
    if not (np.issubdtype(y.dtype, np.integer) or np.array_equal(y, np.round(y))):
        raise SourceError(
            f"{where}: labels must be integers, got {y.dtype} values like {y.flat[0]}"
        )
    return TensorDataset(
        torch.from_numpy(np.asarray(x, dtype=np.float32)),
        torch.from_numpy(np.asarray(y, dtype=np.int64)),
    )


def _num_classes(*labels: torch.Tensor) -> int | None:
    if any(t.ndim != 1 or t.numel() == 0 for t in labels):
        return None
    return int(max(int(t.max()) for t in labels)) + 1


def read_text(file: str, model: ModelSource | None, block_size: int) -> Splits:
    """The file tokenised by the model's tokenizer and cut into blocks of ``block_size`` tokens,
    each an ``(input_ids, labels)`` pair with ``labels = input_ids`` (language modelling; the
    model shifts labels itself). The last 20% of the blocks are held out."""
    where = f"text:{file}"
    if model is None or model.tokenizer is None:
        shown = "no model" if model is None else f"model {model.spec!r}, which has no tokenizer"
        raise SourceError(
            f"{where}: text data needs a model with a tokenizer (hf:DIR); got {shown}"
        )
    path = Path(file).expanduser()
    if not path.is_file():
        raise SourceError(f"{where}: no such file")
    from prunekit.llm.calibration import read_text as read
    from prunekit.llm.calibration import tokenize

    try:
        ids = tokenize(model.tokenizer, read(path))
    except DataError as error:
        raise SourceError(f"{where}: {error}") from error
    limit = getattr(model.tokenizer, "model_max_length", block_size)
    block = min(block_size, limit) if isinstance(limit, int) and limit > 0 else block_size
    count = ids.numel() // block
    if count < 2:
        raise SourceError(
            f"{where}: {ids.numel()} tokens make {count} block(s) of {block}; "
            f"a train and a held-out block need at least {2 * block} tokens"
        )
    blocks = ids[: count * block].view(count, block)
    held = max(1, round(count * TEST_FRACTION))
    train, test = blocks[: count - held], blocks[count - held :]
    return TensorDataset(train, train.clone()), TensorDataset(test, test.clone()), None
