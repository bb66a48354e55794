import itertools

import torch
from torch import nn

from prunekit.masks import masks_of
from prunekit.schedules import Iterative, Polynomial, PruneSpec, Stepper, prune_further
from prunekit.train import train


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(5)
    ]


def _removed(model: nn.Module) -> int:
    return sum(int((m == 0).sum()) for m in masks_of(model).values())


def test_stepper_reaches_final_sparsity_exactly_and_never_regrows() -> None:
    model = _mlp()
    stepper = Stepper(Polynomial(0.83, begin_step=2, end=20, frequency=3))
    seen: list[dict[str, torch.Tensor]] = []

    def on_step(step: int, m: nn.Module) -> None:
        stepper(step, m)
        seen.append(masks_of(m))

    train(model, _data(), epochs=5, lr=1e-2, progress=False, on_step=on_step)
    total = 16 * 12 + 12 * 4
    assert _removed(model) == round(0.83 * total)
    assert stepper.done and stepper.applied == 0.83
    for before, after in itertools.pairwise(seen):
        for name, mask in before.items():
            assert bool((after[name] <= mask).all())  # removed units stay removed
    assert len({s for s, _ in stepper.history}) == len(stepper.history) > 3


def test_layer_scope_and_channel_granularity() -> None:
    model = _mlp()
    stepper = Stepper(
        Iterative(0.5, rounds=2, steps_per_round=2), PruneSpec(granularity="channel", scope="layer")
    )
    train(model, _data(), epochs=1, lr=1e-2, progress=False, on_step=stepper)
    masks = masks_of(model)
    assert int((masks["1.weight"].sum(dim=1) == 0).sum()) == 6
    assert int((masks["3.weight"].sum(dim=1) == 0).sum()) == 2


def test_prune_further_keeps_earlier_selection_with_random_estimator() -> None:
    model = _mlp()
    first = prune_further(model, 0.3, PruneSpec(estimator="random"))
    again = prune_further(model, 0.6, PruneSpec(estimator="random", estimator_options={"seed": 7}))
    for name, keep in again.selection.items():
        assert bool((keep <= first.selection[name]).all())
    assert _removed(model) == round(0.6 * (16 * 12 + 12 * 4))
