"""FLAP-style bias compensation after width pruning: exact on hand-made cases, saved and loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, DataError
from prunekit.llm import WidthPruneConfig, load_pruned, prune_width, save_pruned
from prunekit.llm.bias import compensate_bias, input_cuts, input_means
from prunekit.surgery.plan import Plan, TensorCut


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 3)
        self.down = nn.Linear(3, 2, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.down(self.embed(input_ids))


def test_the_removed_units_mean_contribution_goes_into_the_bias() -> None:
    dense = _Mlp()
    with torch.no_grad():
        dense.embed.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]] * 5 + [[3.0, 4.0, 5.0]] * 5))
        dense.down.weight.copy_(torch.tensor([[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]]))
    plan = Plan({"down.weight": TensorCut("down.weight", (2, 3), {1: [1]})})
    pruned = _Mlp()
    pruned.embed = nn.Embedding(10, 2)
    pruned.embed.weight.data = dense.embed.weight.data[:, [0, 2]].clone()
    pruned.down = nn.Linear(2, 2, bias=False)
    pruned.down.weight.data = dense.down.weight.data[:, [0, 2]].clone()
    windows = torch.tensor([[0, 9], [1, 8]])  # unit 1 takes 2, 4, 2, 4: mean 3
    result = compensate_bias(dense, pruned, plan, windows)
    assert torch.allclose(pruned.down.bias, torch.tensor([30.0, 60.0]))
    assert result.units == {"down": 1}
    # the mean output over the calibration tokens is the dense model's
    with torch.no_grad():
        assert torch.allclose(pruned(windows).mean((0, 1)), dense(windows).mean((0, 1)))


def test_width_pruned_llama_is_closer_to_dense_and_round_trips(
    tiny_llama: nn.Module, windows: torch.Tensor, tmp_path: Path
) -> None:
    config = WidthPruneConfig(sparsity=0.5, of="blocks", estimator="magnitude")
    width = prune_width(tiny_llama, windows, config)
    assert set(input_cuts(tiny_llama, width.plan)) == {
        f"model.layers.{i}.{p}" for i in range(2) for p in ("self_attn.o_proj", "mlp.down_proj")
    }
    before = width.model(input_ids=windows).logits.detach()
    result = compensate_bias(tiny_llama, width.model, width.plan, windows)
    with torch.no_grad():
        dense = tiny_llama(input_ids=windows).logits
        after = width.model(input_ids=windows).logits
    mean_gap = lambda x: float((x - dense).mean((0, 1)).norm())  # noqa: E731
    assert mean_gap(after) < mean_gap(before)
    assert width.model.config.attention_bias and width.model.config.mlp_bias
    save_pruned(width.model, tmp_path / "m", result.plan)
    loaded = load_pruned(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=windows).logits, after)


def test_bad_inputs_are_refused(tiny_llama: nn.Module, windows: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="removed no input unit"):
        compensate_bias(tiny_llama, tiny_llama, Plan({}), windows)
    with pytest.raises(DataError, match=r"token windows \[n, seq_len\]"):
        input_means(tiny_llama, ["model.layers.0.mlp.down_proj"], windows[0])
