import itertools

import torch
from torch import nn

from prunekit.core.scores import normalize_scores
from prunekit.masks import apply_masks, masks_of
from prunekit.schedules import Iterative, Polynomial, Stepper, prune_further
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
        Iterative(0.5, rounds=2, steps_per_round=2), {"granularity": "channel", "scope": "layer"}
    )
    train(model, _data(), epochs=1, lr=1e-2, progress=False, on_step=stepper)
    masks = masks_of(model)
    assert int((masks["1.weight"].sum(dim=1) == 0).sum()) == 6
    assert int((masks["3.weight"].sum(dim=1) == 0).sum()) == 2


def test_prune_further_keeps_earlier_selection_with_random_estimator() -> None:
    model = _mlp()
    first = prune_further(model, 0.3, {"estimator": "random"})
    again = prune_further(model, 0.6, {"estimator": "random", "estimator_options": {"seed": 7}})
    for name, keep in again.selection.items():
        assert bool((keep <= first.selection[name]).all())
    assert _removed(model) == round(0.6 * (16 * 12 + 12 * 4))


def test_prune_further_normalises_over_the_units_still_present() -> None:
    """Regression: with ``normalize="mean"`` the zeros of masked rows once entered a layer's
    mean, inflating its remaining scores (2x here) so that the next step spared it whole."""
    model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.Linear(8, 8, bias=False))
    with torch.no_grad():
        first = torch.tensor([3.0, 3.0, 3.0, 3.0, 0.6, 0.8, 1.2, 1.4])  # rows 0-3 masked below
        model[0].weight.copy_(first[:, None] * torch.tensor([1.0, 0.0, 0.0, 0.0]))
        model[1].weight.copy_(torch.eye(8))  # every row of the second layer has norm 1
    keep = torch.ones(8, 4)
    keep[:4] = 0
    apply_masks(model, {"0.weight": keep})
    config = {"granularity": "channel", "scope": "global", "normalize": "mean"}
    result = prune_further(model, 6 / 16, config)
    # kept rows of layer 0 normalise to 0.6 / 0.8 / 1.2 / 1.4 (mean of the kept rows), layer 1's
    # to 1.0: the two new removals are layer 0's rows 4 and 5, not rows of layer 1
    assert result.selection["0"].tolist() == [False] * 6 + [True, True]
    assert bool(result.selection["1"].all())


def test_normalize_scores_exclude_matches_the_subset() -> None:
    scores = {"a": torch.tensor([0.0, 0.0, 2.0, 4.0]), "b": torch.tensor([1.0, 3.0])}
    exclude = {"a": torch.tensor([True, True, False, False])}
    for how in ("max", "sum", "l2", "mean"):
        out = normalize_scores(scores, how, exclude=exclude)
        subset = normalize_scores({"a": scores["a"][2:]}, how)["a"]
        assert torch.allclose(out["a"][2:], subset), how
        assert torch.equal(out["b"], normalize_scores({"b": scores["b"]}, how)["b"])
    everything = {"a": torch.ones(4, dtype=torch.bool)}
    assert torch.equal(normalize_scores(scores, "mean", exclude=everything)["a"], scores["a"])
