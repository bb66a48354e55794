"""Lottery tickets on MNIST: IMP with rewinding vs one-shot magnitude vs random re-init.

    python benchmarks/training_lottery.py benchmarks/configs/training_lottery.yaml [--quick]

Every method of a seed starts from the same dense run (same initialisation, same batches), so
that run is trained once per seed and replayed for the other methods (see :class:`DenseRuns`).
Writes ``results.json``, ``results.md`` (medians, min-max, the issue's targets) and
``curve.png`` after every method, so a stopped run keeps what it finished
(``lottery_report``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from common import environment, parse_args, write_results
from lottery_report import Points, markdown, plot, summarise, verdicts
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.data import load_dataset, make_loader
from prunekit.masks import clone_model
from prunekit.methods import TicketConfig, find_ticket
from prunekit.models import build_model
from prunekit.schedules import Iterative, prune_further
from prunekit.train import StepCallback, evaluate, seed_everything, train

EVAL_BATCH = 128
"""Test-set batch size (LeNet-5 evaluates faster per image at 128 than at 1000 on one thread)."""

Fit = Callable[[nn.Module, StepCallback | None], None]


class ShuffledBatches:
    """The batches of ``make_loader(dataset, batch_size, shuffle=True, seed=seed)``, in the same
    order, taken by indexing whole batches instead of collating one sample at a time (about a
    tenth of the loading time; LeNet-300-100 steps are short enough for that to matter)."""

    def __init__(self, dataset: TensorDataset, batch_size: int, seed: int) -> None:
        self.tensors = dataset.tensors
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        # DataLoader draws its workers' base seed from the generator before shuffling
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.randperm(len(self.tensors[0]), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)
        # and RandomSampler draws (and drops) one more permutation when asked past the end
        torch.randperm(len(order), generator=self.generator)


@dataclass
class Data:
    train: TensorDataset
    test: DataLoader[Any]


def load_data(config: Mapping[str, Any]) -> Data:
    train_set = load_dataset(config["dataset"], "train")
    if config.get("train_limit"):
        train_set = TensorDataset(*(t[: config["train_limit"]] for t in train_set.tensors))
    test = make_loader(
        load_dataset(config["dataset"], "test"), 1000, limit=config.get("test_limit")
    )
    return Data(train_set, test)


def accuracy(model: nn.Module, loader: DataLoader[Any]) -> float:
    return 100.0 * evaluate(model, loader).accuracy


@dataclass
class DenseRun:
    """One seed's dense training: weights after ``rewind_step`` steps and at the end, and the
    shuffle generator's state after it."""

    rewind: dict[str, Tensor]
    final: dict[str, Tensor]
    loader_state: Tensor


@dataclass
class DenseRuns:
    """Round 0 of every method is the same dense run for a given seed; train it once, replay
    it after. A replay loads the final weights and advances the shuffle generator as the run
    did; ``on_step`` (``find_ticket``'s late-rewind capture, which reads only step
    ``rewind_step``) is called once, at that step, on the weights the run had there."""

    rewind_step: int
    runs: dict[int, DenseRun] = field(default_factory=dict)

    def train(
        self,
        seed: int,
        model: nn.Module,
        batches: ShuffledBatches,
        on_step: StepCallback | None,
        fit: Fit,
    ) -> None:
        cached = self.runs.get(seed)
        if cached is not None:
            if on_step is not None and cached.rewind:  # else find_ticket says it was not reached
                model.load_state_dict(cached.rewind)
                on_step(self.rewind_step, model)
            model.load_state_dict(cached.final)
            batches.generator.set_state(cached.loader_state)
            return
        rewind: dict[str, Tensor] = {}

        def record(step: int, m: nn.Module) -> None:
            if step == self.rewind_step:
                rewind.update({k: v.detach().clone() for k, v in m.state_dict().items()})
            if on_step is not None:
                on_step(step, m)

        fit(model, record)
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.runs[seed] = DenseRun(rewind, final, batches.generator.get_state())


def run_seed(
    config: Mapping[str, Any], data: Data, dense: DenseRuns, method: str, seed: int
) -> Points:
    """(fraction of weights left, test accuracy) after every training run."""
    batches = ShuffledBatches(data.train, config["batch_size"], seed)
    seed_everything(seed)
    model = build_model(config["model"]["name"], **config["model"].get("kwargs", {}))
    epochs, lr = config["epochs"], config["lr"]

    def fit(m: nn.Module, on_step: StepCallback | None) -> None:
        # fused Adam: the same update as torch's default Adam, in a fraction of the CPU time
        optimizer = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr, fused=True)
        train(m, batches, epochs=epochs, optimizer=optimizer, progress=False, on_step=on_step)

    def train_round(m: nn.Module, k: int, on_step: StepCallback | None) -> None:
        seed_everything(seed * 1000 + k)
        if k == 0:
            dense.train(seed, m, batches, on_step, fit)
        else:
            fit(m, on_step)

    if method == "one-shot":
        train_round(model, 0, None)
        points = [(1.0, accuracy(model, data.test))]
        for level in Iterative(config["final_sparsity"], config["rounds"]).levels():
            pruned = clone_model(model)
            prune_further(pruned, level)
            train_round(pruned, 1, None)
            points.append((1.0 - level, accuracy(pruned, data.test)))
            del pruned
        return points
    ticket = TicketConfig(
        final_sparsity=config["final_sparsity"],
        rounds=config["rounds"],
        rewind_step=config["late_rewind_step"] if method == "imp-late" else 0,
        reinit=method == "reinit",
        reinit_seed=seed + 777,
    )
    result = find_ticket(model, train_round, ticket, metric=lambda m: accuracy(m, data.test))
    return [(1.0 - r.sparsity, r.metric) for r in result.rounds]


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    data = load_data(config)
    dense = DenseRuns(config["late_rewind_step"])
    raw: dict[str, list[Points]] = {}
    start = time.perf_counter()
    for method in config["methods"]:
        raw[method] = []
        for seed in config["seeds"]:
            raw[method].append(run_seed(config, data, dense, method, seed))
            accs = " ".join(f"{a:.2f}" for _, a in raw[method][-1])
            print(f"{method} seed {seed}: {accs} ({time.perf_counter() - start:.0f} s)", flush=True)
        summary = summarise(raw)
        checks = verdicts(summary)
        results = {
            "config": config,
            "env": environment(),
            "summary": summary,
            "verdicts": checks,
            "raw": raw,
            "seconds": time.perf_counter() - start,
        }
        write_results(out, results, markdown(summary, checks))
        plot(summary, out / "curve.png")


if __name__ == "__main__":
    main()
