"""Test-wide settings: one torch thread per test process, so parallel workers do not fight over
the two cores of a CI machine (measured: a digits MLP trained in 2.4 s single-threaded, 50 s with
two threads while another process ran); torchvision's operator schemas defined before anything
imports torchvision or timm; shared image-folder fixtures."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

torch.set_num_threads(1)
ensure_torchvision_ops()  # before any test imports torchvision or timm (CPU torch, CUDA wheel)

#: Real photographs shipped with scikit-image, by class folder (two of them are greyscale).
PHOTOS = {
    "animal": ("chelsea", "cat"),
    "people": ("astronaut", "camera"),
    "things": ("coffee", "rocket", "clock"),
}


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="session")
def save_png() -> Callable[[np.ndarray, Path], None]:
    """Write an ``uint8`` array as a PNG (creating its folder): for image-folder data sets."""
    return _save_png


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven real photographs (two of them greyscale) in three class folders."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")
    root = tmp_path_factory.mktemp("photos")
    for label, names in PHOTOS.items():
        for name in names:
            _save_png(getattr(data, name)(), root / label / f"{name}.png")
    return root
