"""One set of input statistics per distinct input of a LLaMA block (q/k/v, gate/up share)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from prunekit.estimators.stats import InputStats, record_inputs
from prunekit.llm import LLMPruneConfig, capture_block_inputs, find_blocks
from prunekit.llm.blocks import run_block
from prunekit.llm.sequential import block_stats, prune_block

P = "model.layers.0."


def test_llama_block_records_one_statistic_per_distinct_input(
    tiny_llama: nn.Module, windows: Tensor
) -> None:
    stack = find_blocks(tiny_llama, None)
    inputs = capture_block_inputs(tiny_llama, stack, windows)
    layers = {name: module for name, module, _ in stack.linears(0)}
    stats = block_stats(stack.blocks[0], layers, inputs, hessian=True)
    attn, mlp = P + "self_attn.", P + "mlp."
    assert stats[attn + "q_proj"] is stats[attn + "k_proj"] is stats[attn + "v_proj"]
    assert stats[mlp + "gate_proj"] is stats[mlp + "up_proj"]
    assert len({id(s) for s in stats.values()}) == 4  # q/k/v, o, gate/up, down
    with record_inputs(layers, hessian=True) as separate:
        for _ in run_block(stack.blocks[0], inputs):
            pass
    for name, one in separate.items():  # the same sums as one statistic per layer
        assert one.rows == stats[name].rows == 4 * 16
        assert torch.equal(one.hessian(), stats[name].hessian()), name


def test_reduce_sees_each_distinct_statistic_once(tiny_llama: nn.Module, windows: Tensor) -> None:
    stack = find_blocks(tiny_llama, None)
    inputs = capture_block_inputs(tiny_llama, stack, windows)
    seen: list[list[str]] = []

    def reduce(stats: Mapping[str, InputStats]) -> None:
        seen.append(sorted(stats))
        assert all(s.gram is not None for s in stats.values())  # before the float32 Hessian

    config = LLMPruneConfig(method="sparsegpt", bake=True)
    achieved = prune_block(tiny_llama, stack, 0, config, inputs, reduce=reduce)
    names = ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]
    assert seen == [sorted(P + n for n in names)]
    assert len(achieved) == 7 and all(abs(s - 0.5) < 0.01 for s in achieved.values())
