"""Per-layer sensitivity analysis and a non-uniform sparsity allocation that meets a global target.

Each layer of a LeNet-300-100 trained on scikit-learn digits is pruned alone at several sparsities;
the curves then decide how much each layer can lose so that 85% of all weights go with the smallest
accuracy drop. Compared with the same 85% removed uniformly from every layer.

    python examples/sensitivity_allocation.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

import prunekit
from prunekit.analysis import allocate, allocation_overrides, sensitivity
from prunekit.data import load_digits, make_loader
from prunekit.models import build_model
from prunekit.report.plots import plot_metric_vs_sparsity
from prunekit.train import evaluate, seed_everything, train

TARGET = 0.85


def main() -> None:
    seed_everything(0)
    train_loader = make_loader(load_digits("train"), 64, shuffle=True)
    test_loader = make_loader(load_digits("test"), 512)
    model = build_model("lenet-300-100", in_size=8)
    train(model, train_loader, epochs=10, lr=1e-3, progress=False)

    def accuracy(m: torch.nn.Module) -> float:
        return 100 * evaluate(m, test_loader).accuracy

    scored = prunekit.score(model, granularity="element", estimator="magnitude")
    result = sensitivity(
        model,
        scored.groups,
        scored.scores,
        accuracy,
        sparsities=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
        higher_is_better=True,
        progress=False,
    )
    console = Console(width=120)
    console.print(result.table())
    plan = allocate(result, scored.groups, TARGET, weight="params")
    console.print({name: round(s, 3) for name, s in plan.items()})
    overrides = allocation_overrides(plan, scored.groups)
    allocated = prunekit.prune(model, overrides=overrides, granularity="element")
    uniform = prunekit.prune(model, sparsity=TARGET, scope="layer", granularity="element")
    for name, pruned in (("allocated", allocated), ("uniform", uniform)):
        weights = [m.weight for m in pruned.model.modules() if isinstance(m, torch.nn.Linear)]
        removed = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        print(f"{name}: {removed:.1%} of weights removed, accuracy {accuracy(pruned.model):.2f}%")
    out = Path("runs/examples")
    curves = {name: [(0.0, result.baseline), *curve] for name, curve in result.curves.items()}
    path = plot_metric_vs_sparsity(
        curves,
        out / "sensitivity.png",
        metric_name="accuracy (%)",
        title="Sensitivity of each layer pruned alone",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
