"""Prune a small CNN on real handwritten digits to 90% sparsity, then fine-tune it on two
processes with DistributedDataParallel; the masks stay in place.

    python examples/ddp_finetune.py                      # starts two local processes itself
    torchrun --nproc_per_node=2 examples/ddp_finetune.py # or under torchrun (Gloo / NCCL)

Every rank builds, trains and prunes the same model from the same seed (a few seconds on
digits), so the replicas start identical; ``finetune_ddp`` then splits every global batch of
64 between the ranks. Rank 0 saves the checkpoint and reports.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

import prunekit
from prunekit.data import load_digits, make_loader
from prunekit.distributed import DDPConfig, finetune_ddp, init_from_env, run_processes
from prunekit.masks import masks_of
from prunekit.models import build_model
from prunekit.recovery import load_checkpoint
from prunekit.train import evaluate, seed_everything, train


def run(save_path: str) -> dict[str, Any]:
    """What every rank does; returns rank 0's report (the other ranks return an empty dict)."""
    seed_everything(0)
    train_set, test_loader = load_digits("train"), make_loader(load_digits("test"), 512)
    model = build_model("lenet-5", in_size=8)
    train(model, make_loader(train_set, 64, shuffle=True), epochs=8, lr=3e-3, progress=False)
    dense = evaluate(model, test_loader).accuracy
    pruned = prunekit.prune(model, sparsity=0.9).model
    before = evaluate(pruned, test_loader).accuracy
    config = DDPConfig(batch_size=64, epochs=3, optimizer="adam", lr=1e-3, save_path=save_path)
    result = finetune_ddp(pruned, train_set, config)
    if torch.distributed.get_rank() != 0:
        return {}
    kept = sum(int(m.sum()) for m in masks_of(result.model).values())
    total = sum(m.numel() for m in masks_of(result.model).values())
    return {
        "world_size": result.world_size,
        "steps": result.steps,
        "dense": dense,
        "pruned": before,
        "finetuned": evaluate(result.model, test_loader).accuracy,
        "sparsity": 1 - kept / total,
        "saved_steps": load_checkpoint(save_path)["steps"],
    }


def report(out: dict[str, Any]) -> None:
    print(f"ranks: {out['world_size']}, steps of a 64-sample global batch: {out['steps']}")
    print(f"masked sparsity after fine-tuning: {100 * out['sparsity']:.1f}%")
    print(
        f"accuracy: dense {100 * out['dense']:.2f}%, pruned {100 * out['pruned']:.2f}%, "
        f"fine-tuned {100 * out['finetuned']:.2f}%"
    )
    print(f"rank 0 saved a checkpoint of step {out['saved_steps']}")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        save_path = str(Path(folder) / "finetuned.pt")
        if "RANK" in os.environ:  # under torchrun
            init_from_env()
            out = run(save_path)
            if out:
                report(out)
            torch.distributed.destroy_process_group()
        else:
            report(run_processes(run, 2, save_path)[0])


if __name__ == "__main__":
    main()
