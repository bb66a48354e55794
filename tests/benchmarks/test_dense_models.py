"""The benchmarks' dense models: trained deterministically (the initialisation is seeded, in
any process), and the shipped ones load (hash-checked safetensors) with their documented test
accuracy, so the documented runs start from the same weights on a fresh clone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunekit.data import load_dataset, make_loader
from prunekit.io import load
from prunekit.models import build_model
from prunekit.train import evaluate

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = """
import sys, hashlib
sys.path.insert(0, {bench!r})
from channels_setup import load_context
from common import dense_model, loaders
config = {{"dataset": "digits", "batch_size": 64, "cache_dir": sys.argv[1]}}
vgg = {{"name": "small-vgg", "kwargs": {{"in_size": 8, "width": 4}}, "epochs": 1}}
ctx = load_context(config, vgg)
lenet = {{**config, "model": {{"name": "lenet-300-100", "kwargs": {{"in_size": 8}}, "epochs": 1}}}}
train, _ = loaders("digits", 64, None, None)
mlp = dense_model(lenet, train, __import__("pathlib").Path(sys.argv[1]))
for model in (ctx.dense, mlp):
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values()))
    print(digest.hexdigest())
"""


def test_dense_models_are_the_same_in_every_process(tmp_path: Path) -> None:
    """Two processes (each with its own torch seed at start-up) train identical dense models."""
    code = SCRIPT.format(bench=str(BENCH))
    digests = [
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"cache{i}")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        for i in range(2)
    ]
    assert len(digests[0]) == 2 and digests[0] == digests[1]


@pytest.mark.parametrize(
    ("folder", "name", "dataset", "accuracy"),
    [
        ("small-vgg-fashion-mnist-cos-e4-nNone-s0", "small-vgg", "fashion-mnist", 92.58),
        ("lenet-300-100-mnist-e8-nNone-s0", "lenet-300-100", "mnist", 98.02),
        ("lenet-5-mnist-e3-nNone-s0", "lenet-5", "mnist", 98.48),
    ],
)
def test_shipped_dense_models_have_their_documented_accuracy(
    folder: str, name: str, dataset: str, accuracy: float
) -> None:
    torch.set_num_threads(1)
    model = load(BENCH / "models" / folder, build_model(name))
    result = evaluate(model, make_loader(load_dataset(dataset, "test"), 500))
    assert round(100 * result.accuracy, 2) == accuracy
