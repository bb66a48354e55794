"""``load_data(spec)``: the user's data as train and held-out loaders plus one example input.

==========================  ===========================================================
spec                        reads
==========================  ===========================================================
``mnist``, ``digits``, ...  a built-in data set (:data:`prunekit.data.DATASETS`), its own split
``imagefolder:DIR``         one sub-folder of images per class, 80/20 split by class
``npz:FILE``                arrays ``x`` (float32) and ``y`` (int64 labels), 80/20 split
``text:FILE``               text tokenised by the model's tokenizer into blocks (LM data)
==========================  ===========================================================

Without data, :func:`example_from_shape` makes an input from ``"1x3x224x224"`` for tracing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from prunekit.data import DATASETS, load_dataset, make_loader
from prunekit.errors import ConfigError, DataError, closest
from prunekit.sources.base import ModelSource, SourceError
from prunekit.sources.readers import read_image_folder, read_npz, read_text

#: Spec prefixes and built-in names, for ``prunekit list``.
DATA_FAMILIES: dict[str, str] = {
    **{name: f"built-in data set {name!r} (its own train/test split)" for name in DATASETS},
    "imagefolder": "imagefolder:DIR, one sub-folder of images per class (80/20 split)",
    "npz": "npz:FILE, arrays x (inputs) and y (integer labels) (80/20 split)",
    "text": "text:FILE, text for a model with a tokenizer, cut into token blocks",
}
_PREFIXES = ("imagefolder", "npz", "text")


@dataclass(frozen=True)
class DataSource:
    """Data resolved from a spec.

    Attributes:
        train: shuffled (by ``seed``) loader of ``(inputs, targets)`` batches.
        test: held-out loader, in a fixed order.
        example_inputs: one input with batch 1 from the training data, for tracing.
        num_classes: number of label values, or ``None`` (language-model text).
        spec: the spec as given, stripped.
    """

    train: DataLoader[Any]
    test: DataLoader[Any]
    example_inputs: Any
    num_classes: int | None
    spec: str


def data_families() -> list[tuple[str, str]]:
    """``(name or prefix, description)`` of every data spec form, for ``prunekit list``."""
    return list(DATA_FAMILIES.items())


def load_data(
    spec: str,
    *,
    model: ModelSource | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    seed: int = 0,
    block_size: int = 128,
) -> DataSource:
    """Read the data named by ``spec`` (see the module docstring) into loaders.

    ``model`` supplies the image transform (image folders) or tokenizer (text) and is checked
    against the data's channel count; ``limit`` keeps the first ``limit`` samples of each split.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"a data spec must be a non-empty string, got {spec!r}")
    text = spec.strip()
    train, test, num_classes = _read(text, model, seed, block_size)
    try:
        train_loader = make_loader(train, batch_size, shuffle=True, seed=seed, limit=limit)
        test_loader = make_loader(test, batch_size, limit=limit)
    except ConfigError as error:
        raise SourceError(f"data {text!r}: {error}") from error
    example = train[0][0].unsqueeze(0)
    _check_channels(text, example, model)
    return DataSource(train_loader, test_loader, example, num_classes, text)


def _read(
    spec: str, model: ModelSource | None, seed: int, block_size: int
) -> tuple[Dataset[Any], Dataset[Any], int | None]:
    prefix, sep, target = spec.partition(":")
    if not sep:
        if spec not in DATASETS:
            raise SourceError(
                f"unknown data {spec!r}{closest(spec.lower(), DATASETS.names())}; built-in: "
                f"{', '.join(DATASETS.names())}; or {', '.join(p + ':PATH' for p in _PREFIXES)}"
            )
        try:
            train, test = load_dataset(spec, "train"), load_dataset(spec, "test")
        except DataError as error:
            raise SourceError(f"data {spec!r}: {error}") from error
        return train, test, DATASETS.get(spec).num_classes
    kind = prefix.lower()
    if kind == "imagefolder":
        return read_image_folder(target, model, seed)
    if kind == "npz":
        return read_npz(target, seed)
    if kind == "text":
        return read_text(target, model, block_size)
    raise SourceError(
        f"unknown data spec prefix {prefix!r} in {spec!r}{closest(kind, _PREFIXES)}; "
        f"known: {', '.join(p + ':' for p in _PREFIXES)} or a built-in name "
        f"({', '.join(DATASETS.names())})"
    )


def _check_channels(spec: str, example: Any, model: ModelSource | None) -> None:
    """Refuse image data whose channel count differs from the model's input shape."""
    shape = model.input_shape if model is not None else None
    if shape is None or not isinstance(example, torch.Tensor) or not example.is_floating_point():
        return
    if example.ndim == len(shape) == 4 and example.shape[1] != shape[1]:
        raise SourceError(
            f"data {spec!r} gives inputs {_format(example.shape)} but model {model.spec!r} "  # type: ignore[union-attr]
            f"expects {_format(shape)}: {example.shape[1]} channels, not {shape[1]}"
        )


def _format(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


def parse_shape(shape: str | Sequence[int]) -> tuple[int, ...]:
    """``"1x3x224x224"``, ``"1,3,224,224"``, ``"(1, 3, 224, 224)"`` or a sequence -> a tuple."""
    if isinstance(shape, str):
        parts = [p for p in re.split(r"[x×,\s()\[\]]+", shape.strip().lower()) if p]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            values = ()
    else:
        values = (
            tuple(shape)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            else ()
        )
    if not values or any(v < 1 for v in values):
        raise SourceError(
            f"input shape {shape!r} is not a list of positive integers like '1x3x224x224'"
        )
    return values


def example_from_shape(
    shape: str | Sequence[int], *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> torch.Tensor:
    """An input of ``shape`` for tracing when no data is given: standard normal values drawn
    with ``seed`` for floating dtypes, zeros (token id 0) for integer dtypes."""
    size = parse_shape(shape)
    if dtype.is_floating_point:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(size, generator=generator, dtype=dtype)
    return torch.zeros(size, dtype=dtype)
