"""Functions the multi-process tests run on every rank (module level, so spawned children can
import them by name; the tests put this folder on ``sys.path``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

VOCAB = 96


def tiny_llama(layers: int = 2) -> nn.Module:
    """The LLaMA (grouped-query attention) of ``tests/llm/conftest.py``."""
    ensure_torchvision_ops()
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return transformers.LlamaForCausalLM(config).eval()


def windows(n: int = 6, seq: int = 16) -> Tensor:
    return torch.randint(0, VOCAB, (n, seq), generator=torch.Generator().manual_seed(1))


def prune_tiny_llama(
    method: str, pattern: str | None, n: int, split: bool = True
) -> dict[str, Any]:
    """Prune the tiny LLaMA with the windows split over the group; masks and weights out."""
    from prunekit.distributed import prune_llm_distributed
    from prunekit.llm import LLMPruneConfig
    from prunekit.masks import masks_of

    config = LLMPruneConfig(method=method, sparsity=0.5, pattern=pattern)
    result = prune_llm_distributed(tiny_llama(), windows(n), config, split_solves=split)
    return {
        "masks": {k: v.clone() for k, v in masks_of(result.model).items()},
        "state": {k: v.clone() for k, v in result.model.state_dict().items()},
    }


def digits_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def digits(n: int = 256) -> torch.utils.data.TensorDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.utils.data.TensorDataset(
        torch.tensor(x[:n], dtype=torch.float32) / 16.0, torch.tensor(y[:n], dtype=torch.long)
    )


def many(calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """Several calls of this module's functions in one group (one spawn for many checks)."""
    return [globals()[name](*args) for name, args in calls]


def reduce_hand_stats() -> dict[str, Any]:
    """Rank ``r`` records the rows ``[[r + 1, 2], [0, r + 1]]`` and all ranks sum."""
    import torch.distributed as dist

    from prunekit.distributed import all_reduce_stats
    from prunekit.estimators.stats import InputStats

    r = dist.get_rank()
    stats = {"a": InputStats(2, hessian_wanted=True), "b": InputStats(2)}
    for s in stats.values():
        s.add(torch.tensor([[r + 1.0, 2.0], [0.0, r + 1.0]]))
    all_reduce_stats(stats)
    return {n: (s.rows, s.sq_norms.clone(), s.gram) for n, s in stats.items()}


def finetune_digits(options: dict[str, Any], masked: bool) -> dict[str, Any]:
    """Fine-tune the digits MLP (half of its first layer masked when ``masked``) with DDP."""
    from prunekit.distributed import DDPConfig, finetune_ddp
    from prunekit.masks import apply_masks, masks_of

    model = digits_mlp()
    if masked:
        keep = (torch.arange(64 * 32).reshape(32, 64) % 2 == 0).float()
        apply_masks(model, {"0.weight": keep})
    result = finetune_ddp(model, digits(), DDPConfig(**options))
    return {
        "state": {k: v.clone() for k, v in result.model.state_dict().items()},
        "losses": list(result.losses),
        "masks": {k: v.clone() for k, v in masks_of(result.model).items()},
        "steps": result.steps,
    }


def smollm2_windows(n: int, seq_len: int) -> tuple[nn.Module, Tensor]:
    """SmolLM2-135M cut to its first 4 blocks, and ``n`` WikiText-2 windows."""
    from prunekit.llm import calibration_windows, load_model

    model, tokenizer = load_model("smollm2")
    model.model.layers = model.model.layers[:4]
    model.config.num_hidden_layers = 4
    text = "/work/shared/data/wikitext-2/valid.txt"
    return model, calibration_windows(tokenizer, text, n_samples=n, seq_len=seq_len)


def prune_smollm2(method: str, n: int, seq_len: int) -> dict[str, Tensor]:
    """The keep masks (bool) of SmolLM2's first 4 blocks, windows split over the group."""
    from prunekit.distributed import prune_llm_distributed
    from prunekit.llm import LLMPruneConfig
    from prunekit.masks import masks_of

    model, windows = smollm2_windows(n, seq_len)
    result = prune_llm_distributed(model, windows, LLMPruneConfig(method=method, sparsity=0.5))
    return {k: v.bool() for k, v in masks_of(result.model).items()}


def solved_here(method: str) -> list[str]:
    """The layers this rank solved itself while the tiny LLaMA was pruned with split solves."""
    from prunekit.distributed import SplitSolver, all_reduce_stats
    from prunekit.distributed.process import shard_range
    from prunekit.llm import LLMPruneConfig, prune_llm

    solved: list[str] = []
    splitter = SplitSolver(hessian=method == "sparsegpt")

    def solver(weights: Any, solve: Any) -> Any:
        def counted(name: str) -> Any:
            solved.append(name)
            return solve(name)

        return splitter(weights, counted)

    import torch.distributed as dist

    share = shard_range(5, dist.get_rank(), dist.get_world_size())
    prune_llm(
        tiny_llama(),
        windows(5)[share.start : share.stop],
        LLMPruneConfig(method=method, sparsity=0.5),
        progress=False,
        reduce=all_reduce_stats,
        solver=solver,
    )
    return solved


def return_a_module() -> nn.Module:
    return nn.Linear(2, 2)
