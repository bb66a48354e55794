"""Which importance estimator can you trust on your model? Grade them all against the true loss
change (the oracle) on a LeNet-5 trained on scikit-learn digits.

    python examples/grade_estimators.py
"""

from __future__ import annotations

from rich.console import Console

from prunekit.analysis import grade_model
from prunekit.data import load_digits, make_loader
from prunekit.models import build_model
from prunekit.train import seed_everything, train


def main() -> None:
    seed_everything(0)
    loader = make_loader(load_digits("train"), 128, shuffle=True)
    model = build_model("lenet-5", in_size=8)
    train(model, loader, epochs=8, lr=3e-3, progress=False)
    result = grade_model(
        model, data=loader, granularity="channel", n_batches=2, exclude=["fc3"], progress=False
    )
    Console(width=140).print(result.table())


if __name__ == "__main__":
    main()
