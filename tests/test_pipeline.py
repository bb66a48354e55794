"""A recipe job end to end on scikit-learn digits (seconds): layer granularity removes whole
residual blocks, saves the plan with the model, and the saved model loads to the same outputs."""

from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.io import load, read_metadata
from prunekit.pipeline import run_recipe
from prunekit.recipe import parse_recipe
from prunekit.result import PruneResult
from prunekit.surgery import rebuild_hook


def test_layer_recipe_removes_blocks_and_saves_a_loadable_plan(tmp_path: Path) -> None:
    recipe = parse_recipe(
        {
            "model": {"name": "small-resnet", "kwargs": {"width": 4, "blocks": [2, 2, 2]}},
            "data": {"dataset": "digits", "batch_size": 64, "test_limit": 200},
            "train": {"epochs": 0},
            "prune": {
                "granularity": "layer",
                "estimator": {"name": "angular"},
                "sparsity": 0.5,  # 2 of the 4 blocks without a downsampling shortcut
                "calibration_batches": 2,
            },
            "output": {"dir": str(tmp_path), "plots": False},
        }
    )
    report = run_recipe(recipe, progress=False, log=lambda _: None)
    assert isinstance(report.result, PruneResult)
    assert report.result.verification is not None
    removed = set(report.result.plan.blocks)
    assert len(removed) == 2 and removed <= {"layer1.0", "layer1.1", "layer2.1", "layer3.1"}
    assert report.pruned.params < report.before.params and report.pruned.macs < report.before.macs

    meta = read_metadata(tmp_path / "model")
    assert meta.plan is not None and set(meta.plan["blocks"]) == removed
    loaded = load(tmp_path / "model", rebuild_hook=rebuild_hook)
    pruned = report.result.model
    x = pruned.example_input()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), pruned.eval()(x))
    assert sum(p.numel() for p in loaded.parameters()) == report.pruned.params


def test_recipe_fine_tunes_by_distillation_from_the_unpruned_model(tmp_path: Path) -> None:
    spec = {
        "model": {"name": "small-vgg", "kwargs": {"width": 8}},
        "data": {"dataset": "digits", "batch_size": 64, "test_limit": 200},
        "train": {"epochs": 3, "lr": 0.01},
        "prune": {"granularity": "channel", "sparsity": 0.5, "calibration_batches": 2},
        "finetune": {"epochs": 2, "lr": 0.01, "distill": {"alpha": 0.7, "temperature": 3.0}},
        "output": {"dir": str(tmp_path), "plots": False, "save": False},
    }
    messages: list[str] = []
    report = run_recipe(parse_recipe(spec), progress=False, log=messages.append)
    assert any("distilling from the unpruned model" in m for m in messages)
    assert report.after is not None and report.after.params == report.pruned.params
    # dense ~96%, half the channels removed ~9%: distillation recovers a good part of it
    assert report.after.metric["accuracy"] > report.pruned.metric["accuracy"] + 10


def test_recipe_refuses_distillation_without_fine_tuning() -> None:
    import pytest

    from prunekit.errors import ConfigError

    with pytest.raises(ConfigError, match="distill needs fine-tuning"):
        parse_recipe({"prune": {"sparsity": 0.5}, "finetune": {"epochs": 0, "distill": {}}})


@pytest.mark.slow
def test_recipe_reports_runtime_latency_and_exports(tmp_path: Path) -> None:
    recipe = parse_recipe(
        {
            "model": {"name": "small-resnet", "kwargs": {"width": 4, "blocks": [1, 1, 1]}},
            "data": {"dataset": "digits", "batch_size": 64, "test_limit": 200},
            "train": {"epochs": 0},
            "prune": {"granularity": "channel", "sparsity": 0.5},
            "output": {
                "dir": str(tmp_path),
                "plots": False,
                "latency_runtimes": ["onnxruntime", "openvino"],
            },
            "export": {"format": "openvino"},
        }
    )
    report = run_recipe(recipe, progress=False, log=lambda _: None)
    page = (tmp_path / "report.html").read_text()
    assert "latency onnxruntime b1 (CPU time)" in page
    assert "latency openvino b1 (CPU time)" in page
    assert report.files["export"] == tmp_path / "model.xml"
    assert (tmp_path / "model.bin").exists()


def test_recipe_refuses_unknown_latency_runtime() -> None:
    with pytest.raises(ConfigError, match="tensorrt"):
        parse_recipe(
            {
                "model": {"name": "small-resnet"},
                "data": {"dataset": "digits"},
                "prune": {"sparsity": 0.5},
                "output": {"latency_runtimes": ["tensorrt"]},
            }
        )
