"""Prune a small CNN on real handwritten digits (scikit-learn), three ways, and measure each.

python examples/quickstart.py
"""

from __future__ import annotations

import torch

import prunekit
from prunekit.data import load_digits, make_loader
from prunekit.measure import measure
from prunekit.models import build_model
from prunekit.report.tables import before_after_table, render
from prunekit.train import evaluate, seed_everything, train


def main() -> None:
    seed_everything(0)
    train_loader = make_loader(load_digits("train"), 64, shuffle=True)
    test_loader = make_loader(load_digits("test"), 512)
    model = build_model("lenet-5", in_size=8)
    train(model, train_loader, epochs=8, lr=3e-3, progress=False)

    def eval_fn(m: torch.nn.Module) -> dict[str, float]:
        return {"accuracy": 100 * evaluate(m, test_loader).accuracy}

    example = torch.zeros(1, 1, 8, 8)
    dense = measure(model, example, eval_fn=eval_fn, latency=False)
    runs = {
        "80% of weights, global magnitude": dict(sparsity=0.8),
        "2:4 pattern (fc layers)": dict(granularity="2:4", include=["fc1", "fc2"]),
        "50% of channels, Taylor": dict(
            sparsity=0.5,
            granularity="channel",
            estimator="taylor",
            data=train_loader,
            exclude=["fc3"],
        ),
    }
    for title, kwargs in runs.items():
        result = prunekit.prune(model, **kwargs)  # type: ignore[arg-type]
        after = measure(result.model, example, eval_fn=eval_fn, latency=False)
        print(render(before_after_table(dense, after, title=title)))


if __name__ == "__main__":
    main()
