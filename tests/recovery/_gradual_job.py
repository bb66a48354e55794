"""A gradual-pruning job that checkpoints; run as a script by test_resume (and killed)."""

import sys
import time

import torch
from torch import nn

from prunekit.data import load_dataset, make_loader
from prunekit.recovery import train_resumable
from prunekit.schedules import Polynomial, Stepper

STEPS = 60


def run(checkpoint_dir: str, delay: float = 0.0) -> nn.Module:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10)
    )
    loader = make_loader(load_dataset("digits", "train"), 64, shuffle=True, seed=3, limit=640)
    stepper = Stepper(Polynomial(0.8, begin_step=5, end=45, frequency=5))

    def on_step(step: int, m: nn.Module) -> None:
        stepper(step, m)
        time.sleep(delay)

    on_step.state_dict = stepper.state_dict  # type: ignore[attr-defined]
    on_step.load_state_dict = stepper.load_state_dict  # type: ignore[attr-defined]
    train_resumable(
        model,
        loader,
        steps=STEPS,
        checkpoint_dir=checkpoint_dir,
        every=7,
        make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=3e-3),
        on_step=on_step,
    )  # type: ignore[arg-type]
    return model


if __name__ == "__main__":
    model = run(sys.argv[1], float(sys.argv[2]))
    from prunekit.io import save

    save(model, sys.argv[3], keep_originals=True)
