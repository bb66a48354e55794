"""Remove whole residual blocks from a ResNet-20 trained on MNIST: angular vs oracle vs magnitude.

python examples/layer_pruning.py            # about 2.5 minutes on one CPU thread
python examples/layer_pruning.py --quick    # a smoke run (tests/test_examples.py)

Trains prunekit's small ResNet-20 (width 8, 3 stages x 3 blocks) on 8,000 MNIST digits, then for
each estimator removes 1, 2 and 3 of its 7 removable blocks (the first block of stages 2 and 3
downsamples and is not a candidate) with ``prunekit.prune(..., granularity="layer")`` and
reports test accuracy on 2,000 digits before and after BatchNorm recalibration (on the 4
scoring batches), with params and MACs after / before. Every pruned model is verified.
``--quick`` trains on 1,000 digits for one epoch, scores on 2 batches, tests on 500 and removes
1 and 2 blocks: the same code path in seconds, with accuracies that mean little.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

import prunekit
from prunekit.data import load_dataset, make_loader
from prunekit.graph.blocks import find_residual_blocks
from prunekit.masks import clone_model
from prunekit.models import build_model
from prunekit.recovery import recalibrate_batchnorm
from prunekit.result import PruneResult
from prunekit.surgery import rebuild
from prunekit.train import evaluate, seed_everything, train

ESTIMATORS = ("angular", "oracle", "magnitude")


@dataclass(frozen=True)
class Size:
    """How much data and how many removals a run uses."""

    train_images: int
    test_images: int
    epochs: int
    scoring_batches: int
    removals: tuple[int, ...]


FULL = Size(train_images=8000, test_images=2000, epochs=2, scoring_batches=4, removals=(1, 2, 3))
QUICK = Size(train_images=1000, test_images=500, epochs=1, scoring_batches=2, removals=(1, 2))


def main(size: Size = FULL) -> None:
    torch.set_num_threads(1)
    seed_everything(0)
    train_set, test_set = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    train_loader = make_loader(train_set, 128, shuffle=True, limit=size.train_images)
    test_loader = make_loader(test_set, 1000, limit=size.test_images)
    model = build_model("small-resnet", width=8, blocks=(3, 3, 3))
    train(model, train_loader, epochs=size.epochs, lr=3e-3, progress=False)
    model.eval()

    def accuracy(m: torch.nn.Module) -> float:
        return 100 * evaluate(m, test_loader).accuracy

    example = torch.zeros(1, 1, 28, 28)
    scoring = [b for _, b in zip(range(size.scoring_batches), train_loader, strict=False)]
    n_blocks = len(find_residual_blocks(model, example))
    recalibrated = clone_model(model)
    recalibrate_batchnorm(recalibrated, scoring, max_batches=None)
    print(
        f"dense: {accuracy(model):.2f}% test accuracy ({accuracy(recalibrated):.2f}% after the "
        f"same BatchNorm recalibration), {n_blocks} removable blocks\n"
    )
    print("| estimator | removed | blocks | params | MACs | accuracy | + BN recalibration |")
    print("|---|---|---|---|---|---|---|")
    for estimator in ESTIMATORS:
        for k in size.removals:
            result = prunekit.prune(
                model, example, granularity="layer", sparsity=k / n_blocks,
                estimator=estimator, data=scoring,
            )  # fmt: skip
            assert isinstance(result, PruneResult) and result.verification is not None
            assert result.params_ratio is not None and result.macs_ratio is not None
            plain = rebuild(model, result.plan)  # the same blocks, BatchNorm statistics as trained
            print(
                f"| {estimator} | {k} | {', '.join(result.plan.blocks)} | "
                f"{result.params_ratio:.2f} | {result.macs_ratio:.2f} | "
                f"{accuracy(plain):.2f}% | {accuracy(result.model):.2f}% |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    main(QUICK if parser.parse_args().quick else FULL)
