import copy

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import apply_masks, bake_masks, is_masked, masks_of, remove_masks


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


MASK = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])


def test_masked_weights_stay_zero_through_training() -> None:
    m = model()
    apply_masks(m, {"0.weight": MASK})
    opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    for _ in range(5):
        opt.zero_grad()
        m(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    assert torch.all(m[0].weight[MASK == 0] == 0)
    assert torch.all(m[0].weight[MASK == 1] != 0)


def test_bake_makes_zeros_permanent_and_remove_restores_originals() -> None:
    m = model()
    original = m[0].weight.detach().clone()
    baked = copy.deepcopy(m)
    apply_masks(baked, {"0.weight": MASK})
    bake_masks(baked)
    assert masks_of(baked) == {}
    assert isinstance(baked[0].weight, nn.Parameter)
    assert torch.equal(baked[0].weight.detach(), original * MASK)
    apply_masks(m, {"0.weight": MASK})
    remove_masks(m)
    assert masks_of(m) == {} and torch.equal(m[0].weight.detach(), original)


def test_re_masking_is_idempotent_and_masks_combine() -> None:
    m = model()
    apply_masks(m, {"0.weight": MASK})
    once = m[0].weight.detach().clone()
    apply_masks(m, {"0.weight": MASK})
    assert torch.equal(m[0].weight.detach(), once)
    assert len(m[0].parametrizations["weight"]) == 1
    other = torch.ones(3, 4)
    other[0, 0] = 0
    apply_masks(m, {"0.weight": other})
    assert torch.equal(masks_of(m)["0.weight"], MASK * other)
    assert is_masked(m, "0.weight") and not is_masked(m, "2.weight")


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ({"0.weight": MASK, "2.weight": torch.ones(5, 5)}, r"'2.weight'.*shape"),
        ({"0.weight": MASK, "9.weight": torch.ones(1)}, "no module '9'"),
        ({"0.weight": MASK, "0.scale": torch.ones(1)}, "no tensor 'scale'"),
        ({"0.weight": MASK * float("nan")}, "NaN"),
    ],
)
def test_bad_masks_are_refused_before_anything_changes(masks: dict, message: str) -> None:
    m = model()
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ConfigError, match=message):
        apply_masks(m, masks)
    assert masks_of(m) == {}
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_clone_of_a_masked_model_can_be_baked_without_breaking_the_original() -> None:
    from prunekit.masks import clone_model

    m = model()
    apply_masks(m, {"0.weight": MASK})
    copy_ = clone_model(m)
    bake_masks(copy_)
    assert masks_of(copy_) == {} and set(masks_of(m)) == {"0.weight"}
    assert torch.equal(m[0].weight.detach(), copy_[0].weight.detach())
    remove_masks(m)
    assert masks_of(m) == {}
