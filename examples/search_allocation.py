"""Search each layer's sparsity of a small CNN under a 4x MACs budget, on real data
(scikit-learn digits), compare searchers, and replay the best allocation with prunekit.prune;
then search one keep ratio per stage under 85% of the PyTorch-eager latency (a per-layer latency
table measured once; on 8x8 inputs eager overhead leaves little to gain) and half the size on
disk.

    python examples/search_allocation.py [--quick]
"""

from __future__ import annotations

import sys

import torch
from rich.console import Console

import prunekit
from prunekit.data import load_dataset, make_loader
from prunekit.measure import count_macs
from prunekit.models import build_model
from prunekit.search import search
from prunekit.train import evaluate, seed_everything, train


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    seed_everything(0)
    train_loader = make_loader(load_dataset("digits", "train"), 64, shuffle=True, seed=0)
    test_loader = make_loader(load_dataset("digits", "test"), 500)
    model = build_model("small-vgg", in_channels=1, in_size=8)
    train(model, train_loader, epochs=2 if quick else 8, lr=3e-3, progress=False)
    model.eval()
    example = torch.zeros(1, 1, 8, 8)
    console = Console(width=110)
    console.print(f"dense test accuracy {100 * evaluate(model, test_loader).accuracy:.1f}%")
    for searcher in ("random", "amc") if quick else ("random", "tpe", "amc", "nsga2"):
        result = search(
            model, example, data=train_loader, target={"macs": 0.25}, searcher=searcher,
            trials=4 if quick else 24, storage=":memory:", n_batches=4, progress=False,
        )  # fmt: skip
        console.print(result.table())
        pruned = prunekit.prune(
            model, example, config=result.prune_config(), data=train_loader, metrics=False
        ).model
        macs = count_macs(pruned, example).total / count_macs(model, example).total
        accuracy = 100 * evaluate(pruned, test_loader).accuracy
        console.print(
            f"{searcher}: replayed best trial {result.best.number}: MACs kept {macs:.3f}, "
            f"test accuracy without fine-tuning {accuracy:.1f}%"
        )
    for target in ({"latency": 0.85, "runtime": "torch"}, {"size": 0.5}):
        result = search(
            model, example, data=train_loader, target=target, searcher="tpe", space="stage",
            trials=4 if quick else 16, storage=":memory:", n_batches=4, progress=False,
        )  # fmt: skip
        console.print(result.table())


if __name__ == "__main__":
    main("--quick" in sys.argv)
