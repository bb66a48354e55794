"""Pruning during training in your own loop, and recovering a channel-pruned CNN by distillation.

python examples/training_time_pruning.py            # about 3 minutes on one CPU thread
python examples/training_time_pruning.py --quick    # a smoke run (tests/test_examples.py)

Part 1, your loop: LeNet-300-100 learns MNIST in a plain PyTorch loop while a ``Stepper`` raises
its weight sparsity from 0 to 90% on the cubic schedule of Zhu & Gupta 2017 (``Polynomial``);
the only prunekit line in the loop is ``stepper(step, model)``. Compared with the same loop
without pruning.

Part 2, prunekit's loop: a small VGG trained on Fashion-MNIST loses 30% of its channels by
magnitude (``prunekit.prune`` with surgery: the model really gets smaller), its BatchNorm
statistics are re-estimated, and ``finetune`` distils it from the dense model
(``teacher=``, KL on softened logits). Each stage's test accuracy, params and MACs are printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import prunekit
from prunekit.data import load_dataset, make_loader
from prunekit.masks import clone_model
from prunekit.measure import count_macs, count_params, layer_sparsity
from prunekit.models import build_model
from prunekit.recovery import DistillConfig, FinetuneConfig, finetune, recalibrate_batchnorm
from prunekit.result import PruneResult
from prunekit.schedules import Polynomial, Stepper
from prunekit.train import evaluate, seed_everything, train


@dataclass(frozen=True)
class Size:
    """How much data and training a run uses."""

    train_images: int
    test_images: int
    epochs: int


FULL = Size(train_images=20000, test_images=5000, epochs=2)
QUICK = Size(train_images=1000, test_images=500, epochs=1)


def accuracy(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return 100 * evaluate(model, loader).accuracy


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zero entries over the weights of the model's prunable layers (masks applied)."""
    stats = layer_sparsity(model).values()
    return 1 - sum(s.nonzeros for s in stats) / sum(s.params for s in stats)


def your_loop(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epochs: int,
    stepper: Stepper | None,
) -> None:
    """An ordinary training loop; pruning is one call after each optimizer step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    step = 0
    for _ in range(epochs):
        for images, labels in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            step += 1
            if stepper is not None:
                stepper(step, model)


def part_one(size: Size) -> None:
    train_loader = make_loader(
        load_dataset("mnist", "train"), 128, shuffle=True, limit=size.train_images
    )
    test_loader = make_loader(load_dataset("mnist", "test"), 1000, limit=size.test_images)
    steps = size.epochs * len(train_loader)
    print("Part 1: gradual magnitude pruning in a plain PyTorch loop (LeNet-300-100, MNIST)\n")
    print("| run | weight sparsity | test accuracy |")
    print("|---|---|---|")
    for label, final in (("dense", None), ("gradual to 90%", 0.9)):
        seed_everything(0)
        model = build_model("lenet-300-100")
        stepper = None
        if final is not None:
            # the target rises every 10% of the run and is reached at 70%; the rest heals
            schedule = Polynomial(final, end=int(0.7 * steps), frequency=max(steps // 10, 1))
            stepper = Stepper(schedule, {"granularity": "element", "estimator": "magnitude"})
        your_loop(model, train_loader, size.epochs, stepper)
        print(f"| {label} | {weight_sparsity(model):.1%} | {accuracy(model, test_loader):.2f}% |")


def part_two(size: Size) -> None:
    train_set = load_dataset("fashion-mnist", "train")
    train_loader = make_loader(train_set, 128, shuffle=True, limit=size.train_images)
    test_loader = make_loader(load_dataset("fashion-mnist", "test"), 1000, limit=size.test_images)
    example = torch.zeros(1, 1, 28, 28)
    seed_everything(0)
    dense = build_model("small-vgg")
    train(dense, train_loader, epochs=size.epochs, lr=2e-3, progress=False)
    dense.eval()
    result = prunekit.prune(
        dense, example, granularity="channel", sparsity=0.3, normalize="mean", recalibrate=False
    )  # BatchNorm recalibration is shown as its own step below
    assert isinstance(result, PruneResult)
    pruned = result.model
    before_bn = clone_model(pruned)
    recalibrate_batchnorm(pruned, train_loader, max_batches=20)
    print(
        "\nPart 2: 30% of the channels removed, BN recalibration, distillation "
        "(small VGG, Fashion-MNIST)\n"
    )
    print("| stage | params | MACs | test accuracy |")
    print("|---|---|---|---|")

    def row(stage: str, model: nn.Module) -> None:
        params = count_params(model)
        macs = count_macs(model, example).total
        print(
            f"| {stage} | {params:,} | {macs / 1e6:.2f} M | {accuracy(model, test_loader):.2f}% |"
        )

    row("dense", dense)
    row("pruned", before_bn)
    row("+ BN recalibration", pruned)
    settings = FinetuneConfig(epochs=1, lr=1e-3, keep_best=False, progress=False)
    finetune(
        pruned,
        train_loader,
        None,
        settings,
        teacher=dense,
        distill=DistillConfig(alpha=0.5, temperature=2.0),
    )
    row("+ 1 epoch of distillation", pruned)


def main(size: Size = FULL) -> None:
    torch.set_num_threads(1)
    part_one(size)
    part_two(size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    main(QUICK if parser.parse_args().quick else FULL)
