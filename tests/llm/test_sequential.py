"""Layer-by-layer pruning of tiny random LLaMA (GQA) and BERT models."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import DataError, UnsupportedLayerError
from prunekit.llm import (
    LLM_METHODS,
    LLMPruneConfig,
    capture_block_inputs,
    find_blocks,
    layer_names,
    prune_llm,
)
from prunekit.masks import masks_of
from prunekit.measure import count_nonzeros


def _direct_inputs(model: nn.Module, layers: list[str], windows: Tensor) -> dict[str, Tensor]:
    """Inputs of ``layers`` in an ordinary forward pass of the whole model, all windows."""
    seen: dict[str, list[Tensor]] = {name: [] for name in layers}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, a, o, name=name: seen[name].append(a[0].reshape(-1, a[0].shape[-1]))
        )
        for name in layers
    ]
    with torch.no_grad():
        for row in windows:
            model(row[None])
    for h in handles:
        h.remove()
    return {name: torch.cat(xs) for name, xs in seen.items()}


def _wanda_keep(weight: Tensor, x: Tensor, sparsity: float) -> Tensor:
    """Wanda written out directly: keep the top (1 - sparsity) of |W| * ||X_j|| in each row."""
    scores = weight.abs() * x.norm(dim=0)[None]
    n_keep = weight.shape[1] - round(sparsity * weight.shape[1])
    keep = torch.zeros_like(weight)
    keep.scatter_(1, scores.topk(n_keep, dim=1).indices, 1.0)
    return keep


@pytest.mark.parametrize("method", LLM_METHODS.names())
@pytest.mark.parametrize("pattern", [None, "2:4"])
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_bert"])
def test_every_method_prunes_every_block(
    method: str, pattern: str | None, arch: str, windows: Tensor, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = LLMPruneConfig(method=method, sparsity=0.5, pattern=pattern)
    result = prune_llm(model, windows, config, progress=False)
    names = layer_names(model)
    assert sorted(result.layer_sparsity) == sorted(names)
    assert all(v == pytest.approx(0.5) for v in result.layer_sparsity.values())
    masks = masks_of(result.model)
    assert sorted(masks) == sorted(f"{n}.weight" for n in names)
    if pattern == "2:4":
        for mask in masks.values():
            assert torch.all(mask.reshape(mask.shape[0], -1, 4).sum(-1) == 2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not inplace


def test_block_0_matches_a_direct_computation(tiny_llama: nn.Module, windows: Tensor) -> None:
    names = [n for n in layer_names(tiny_llama) if n.startswith("model.layers.0.")]
    direct = _direct_inputs(tiny_llama, names, windows)
    result = prune_llm(tiny_llama, windows, LLMPruneConfig(method="wanda"), progress=False)
    masks = masks_of(result.model)
    for name in names:
        weight = tiny_llama.get_submodule(name).weight
        assert torch.equal(masks[f"{name}.weight"], _wanda_keep(weight, direct[name], 0.5)), name


def test_block_1_sees_the_outputs_of_the_pruned_block_0(
    tiny_llama: nn.Module, windows: Tensor
) -> None:
    result = prune_llm(tiny_llama, windows, LLMPruneConfig(method="wanda"), progress=False)
    pruned, masks = result.model, masks_of(result.model)
    names = [n for n in layer_names(pruned) if n.startswith("model.layers.1.")]
    for name in names:  # undo block 1 only: the model is dense there, pruned in block 0
        parametrize.remove_parametrizations(pruned.get_submodule(name), "weight", False)
    direct = _direct_inputs(pruned, names, windows)
    for name in names:
        weight = pruned.get_submodule(name).weight
        assert torch.equal(masks[f"{name}.weight"], _wanda_keep(weight, direct[name], 0.5)), name


def test_sparsegpt_updates_kept_weights_and_bakes(tiny_llama: nn.Module, windows: Tensor) -> None:
    config = LLMPruneConfig(method="sparsegpt", sparsity=0.5, bake=True)
    result = prune_llm(tiny_llama, windows, config, progress=False)
    assert masks_of(result.model) == {}
    name = "model.layers.0.mlp.down_proj"
    old, new = tiny_llama.get_submodule(name).weight, result.model.get_submodule(name).weight
    kept = new != 0
    assert int((~kept).sum()) == old.numel() // 2
    assert not torch.allclose(old[kept], new[kept])  # OBS moved the kept weights
    assert count_nonzeros(result.model) < count_nonzeros(tiny_llama)


def test_capture_keeps_one_row_per_window(tiny_bert: nn.Module, windows: Tensor) -> None:
    stack = find_blocks(tiny_bert)
    assert stack.prefix == "encoder.layer"
    inputs = capture_block_inputs(tiny_bert, stack, windows)
    assert inputs.hidden.shape == (4, 16, 32)
    expected = tiny_bert.embeddings(windows[:1])
    assert torch.allclose(inputs.hidden[:1], expected)


def test_magnitude_needs_no_data_and_wanda_does(tiny_llama: nn.Module) -> None:
    result = prune_llm(tiny_llama, None, LLMPruneConfig(method="magnitude"), progress=False)
    assert result.sparsity == pytest.approx(0.5)
    with pytest.raises(DataError, match="needs calibration data"):
        prune_llm(tiny_llama, None, LLMPruneConfig(method="wanda"), progress=False)


def test_model_without_blocks_is_refused_by_name() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match="model Sequential has no list of"):
        prune_llm(model, None, LLMPruneConfig(method="magnitude"), progress=False)


def test_unknown_layer_in_a_block_is_refused_by_name() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4, 4))

    model = nn.Module()
    model.layers = nn.ModuleList([Odd()])
    with pytest.raises(UnsupportedLayerError, match=r"layer layers\.0 \(Odd\)"):
        prune_llm(model, None, LLMPruneConfig(method="magnitude"), progress=False)


def test_fewer_calibration_tokens_than_the_widest_input_warns(tiny_llama: nn.Module) -> None:
    from prunekit.llm import LLMPruneConfig, prune_llm

    few = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="32 calibration tokens is fewer than the widest"):
        prune_llm(tiny_llama, few, LLMPruneConfig(method="wanda", sparsity=0.5), progress=False)
    enough = torch.randint(0, 96, (4, 16), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        prune_llm(tiny_llama, enough, LLMPruneConfig(method="wanda", sparsity=0.5), progress=False)
