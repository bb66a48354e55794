"""Layer granularity: ``prunekit.prune(model, x, granularity="layer")`` removes whole residual
blocks; surgery, plan, verification, save / load, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import prunekit
from prunekit import io
from prunekit.errors import ConfigError, SaveFileError
from prunekit.graph.blocks import find_residual_blocks, skipping
from prunekit.result import PruneResult
from prunekit.surgery import Plan, VerificationError, rebuild, rebuild_hook
from prunekit.surgery.blocks import IdentityBlock
from prunekit.surgery.layers import remove_residual_blocks, verify_blocks


class Residual(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        self.width = width  # a plain attribute the stand-in keeps

    def forward(self, x: Tensor, scale: float = 1.0) -> Tensor:
        return x + scale * self.fc2(torch.relu(self.fc1(x)))


class Net(nn.Module):
    def __init__(self, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.blocks = nn.ModuleList(Residual() for _ in range(blocks))
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, scale=0.5)
        return self.head(h)


def _net(blocks: int = 3) -> Net:
    torch.manual_seed(0)
    return Net(blocks).eval()


def _x() -> Tensor:
    return torch.randn(2, 3, generator=torch.Generator().manual_seed(1))


def _data() -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, generator=gen), torch.randint(0, 2, (8,), generator=gen))]


def _layers(model: nn.Module, **kwargs: Any) -> PruneResult:
    kwargs.setdefault("sparsity", 1 / 3)
    result = prunekit.prune(model, _x(), granularity="layer", **kwargs)
    assert isinstance(result, PruneResult)
    return result


@pytest.mark.parametrize("estimator", ["magnitude", "random", "angular", "oracle", "taylor"])
def test_one_block_goes_verified_and_the_users_model_is_untouched(estimator: str) -> None:
    model = _net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = _layers(model, estimator=estimator, data=_data())
    assert len(result.plan.blocks) == 1 and result.removed_units == 1
    (name,) = result.plan.blocks
    removed = result.model.get_submodule(name)
    assert isinstance(removed, IdentityBlock) and removed.width == 4
    assert result.verification is not None and result.verification.verified == (name,)
    assert result.verification.max_abs_diff == 0.0
    assert all(isinstance(b, Residual) for b in model.blocks)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with torch.no_grad(), skipping(model.get_submodule(name)):
        torch.testing.assert_close(result.model(_x()), model(_x()), rtol=0, atol=0)


def test_lowest_magnitude_block_goes_and_params_drop_by_exactly_that_block() -> None:
    model = _net()
    with torch.no_grad():
        model.blocks[1].fc2.weight.mul_(0.01)
    result = _layers(model, estimator="magnitude")
    assert list(result.plan.blocks) == ["blocks.1"]
    block_params = sum(p.numel() for p in model.blocks[1].parameters())
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in result.model.parameters()) == total - block_params
    assert result.params_ratio == pytest.approx((total - block_params) / total)
    assert result.macs_ratio is not None and result.macs_ratio < 1.0


def test_threshold_removes_the_blocks_scored_below_it() -> None:
    model = _net()
    with torch.no_grad():
        model.blocks[2].fc1.weight.zero_()  # the branch of block 2 is now a constant
        model.blocks[2].fc2.weight.zero_()
        model.blocks[2].fc2.bias.zero_()  # ... zero: block 2 is the identity
    scores = {
        n: float(s) for n, s in _layers(model, estimator="angular", data=_data()).scores.items()
    }
    assert scores["blocks.2"] == 0.0 and min(scores["blocks.0"], scores["blocks.1"]) > 1e-3
    result = _layers(model, estimator="angular", data=_data(), sparsity=None, threshold=1e-6)
    assert list(result.plan.blocks) == ["blocks.2"]


def test_plan_is_versioned_json_and_rebuilds() -> None:
    model = _net()
    result = _layers(model, estimator="magnitude", sparsity=2 / 3)
    data = json.loads(result.plan.to_json())
    assert data["version"] == 2
    assert data["blocks"] == {
        name: {"replaced_by": "identity", "type": "Residual", "tuple_length": 0}
        for name in result.plan.blocks
    }
    plan = Plan.from_json(result.plan.to_json())
    assert plan.blocks == result.plan.blocks
    rebuilt = rebuild(_net(), plan)
    rebuilt.load_state_dict(result.model.state_dict())
    torch.testing.assert_close(rebuilt(_x()), result.model(_x()), rtol=0, atol=0)
    assert json.loads(Plan({}).to_json())["version"] == 1  # plans without blocks as before


def test_rebuild_refuses_a_plan_for_another_model() -> None:
    plan = Plan({}, blocks={"blocks.0": {"replaced_by": "identity", "type": "Bottleneck"}})
    with pytest.raises(SaveFileError, match="is a Residual, the plan expects Bottleneck"):
        rebuild(_net(), plan)
    plan = Plan({}, blocks={"blocks.7": {"replaced_by": "identity", "type": "Residual"}})
    with pytest.raises(SaveFileError, match="lacks"):
        rebuild(_net(), plan)
    plan = Plan({}, blocks={"blocks.0": {"replaced_by": "shortcut", "type": "Residual"}})
    with pytest.raises(SaveFileError, match="replaced_by 'shortcut'"):
        rebuild(_net(), plan)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    result = _layers(_net(), estimator="magnitude")
    pruned = result.model
    with torch.no_grad():  # saved weights differ from the original's
        for p in pruned.parameters():
            p.add_(0.01)
    io.save(pruned, tmp_path / "m", plan=result.plan.to_json())
    loaded = io.load(tmp_path / "m", _net(), rebuild_hook=rebuild_hook)
    assert torch.equal(loaded(_x()), pruned(_x()))
    assert isinstance(loaded.get_submodule(next(iter(result.plan.blocks))), IdentityBlock)


def test_inplace_replaces_blocks_in_the_users_model() -> None:
    model = _net()
    result = _layers(model, estimator="magnitude", inplace=True)
    assert result.model is model
    assert isinstance(model.get_submodule(next(iter(result.plan.blocks))), IdentityBlock)


class TupleBlock(nn.Module):
    """Returns ``(x + f(x), aux)``; the caller uses ``aux``, which the identity cannot give."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.fc(x)
        return x + y, y.sum()


class UsesAux(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block = nn.Linear(3, 4), TupleBlock()

    def forward(self, x: Tensor) -> Tensor:
        h, aux = self.block(self.stem(x))
        return h * aux


def test_verification_names_the_block_that_breaks_it() -> None:
    torch.manual_seed(0)
    model = UsesAux().eval()
    blocks = find_residual_blocks(model, _x())
    assert [(b.name, b.tuple_length) for b in blocks] == [("block", 2)]
    pruned, plan = remove_residual_blocks(model, blocks)
    with pytest.raises(VerificationError, match=r"on their own: \['block'\]"):
        verify_blocks(model, pruned, plan, _x())


def test_bad_arguments_raise_config_errors_naming_them() -> None:
    model = _net()
    with pytest.raises(ConfigError, match="removes every one of the 3 candidate blocks"):
        _layers(model, sparsity=0.9)
    with pytest.raises(ConfigError, match="removes none"):
        _layers(model, sparsity=0.1)
    with pytest.raises(ConfigError, match="estimator 'angular' needs data"):
        _layers(model, estimator="angular")
    with pytest.raises(ConfigError, match="no meaning there: scope: 'layer'"):
        _layers(model, scope="layer")
    with pytest.raises(ConfigError, match="needs sparsity"):
        _layers(model, sparsity=None)
    with pytest.raises(ConfigError, match="needs example_inputs"):
        prunekit.prune(model, granularity="layer", sparsity=0.5)
    with pytest.raises(ConfigError, match="no removable residual block"):
        prunekit.prune(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), _x(), granularity="layer",
                       sparsity=0.5)  # fmt: skip
    with pytest.raises(ConfigError, match="no removable residual block"):
        _layers(model, exclude=["blocks.*"])


def test_exclude_protects_blocks() -> None:
    for seed in range(4):
        estimator = prunekit.estimators.Random(seed=seed)
        result = _layers(_net(), estimator=estimator, sparsity=0.5, exclude=["blocks.0"])
        assert len(result.plan.blocks) == 1 and "blocks.0" not in result.plan.blocks


def test_torchvision_resnet18_loses_two_blocks(tmp_path: Path) -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    result = prunekit.prune(
        model, x, granularity="layer", sparsity=0.4, estimator="magnitude", metrics=False
    )
    assert isinstance(result, PruneResult) and result.verification is not None
    removed = list(result.plan.blocks)
    assert len(removed) == 2 and result.verification.complete
    gone = sum(p.numel() for name in removed for p in model.get_submodule(name).parameters())
    before = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in result.model.parameters()) == before - gone
    io.save(result.model, tmp_path / "r18", plan=result.plan.to_json())
    loaded = io.load(tmp_path / "r18", tvm.resnet18(weights=None), rebuild_hook=rebuild_hook)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), result.model(x))


def test_llama_decoder_layers_are_removed_and_verified() -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 50, (1, 6))
    result = prunekit.prune(model, ids, granularity="layer", sparsity=1 / 3, metrics=False)
    assert isinstance(result, PruneResult) and result.verification is not None
    (name,) = result.plan.blocks
    assert result.verification.verified == (name,)
    assert len(result.model.model.layers) == 3  # cache slots of the other layers do not move
    with torch.no_grad(), skipping(model.get_submodule(name)):
        want = model(ids).logits
        generated = model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
    torch.testing.assert_close(result.model(ids).logits, want, rtol=0, atol=0)
    cached = result.model.generate(ids, max_new_tokens=6, do_sample=False)  # with a KV cache
    assert torch.equal(cached, generated)


def test_layer_pruning_follows_recalibrate_like_channel_pruning() -> None:
    import warnings

    from prunekit.models import build_model

    torch.manual_seed(0)
    model = build_model("small-resnet", width=4, blocks=(2, 2, 2), in_size=8).eval()
    x = torch.randn(1, 1, 8, 8)
    options: dict[str, Any] = {"granularity": "layer", "sparsity": 0.5, "metrics": False}
    with pytest.warns(UserWarning, match="keep the dense model's running statistics"):
        prunekit.prune(model, x, **options)
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = prunekit.prune(model, x, recalibrate=False, **options).model
        redone = prunekit.prune(model, x, data=batches, **options).model
    assert torch.equal(kept.bn1.running_mean, model.bn1.running_mean)  # left as they were
    assert not torch.equal(redone.bn1.running_mean, model.bn1.running_mean)  # re-estimated
