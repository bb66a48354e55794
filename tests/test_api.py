import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import prunekit
from prunekit.errors import ConfigError, DataError, ScoreError, UnknownNameError
from prunekit.estimators import Magnitude


def lenet_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.98])
def test_element_magnitude_matches_torch_global_unstructured(sparsity: float) -> None:
    model = lenet_like()
    ours = prunekit.prune(
        model, sparsity=sparsity, granularity="element", estimator="magnitude", min_keep=0
    )
    reference = copy.deepcopy(model)
    layers = [(m, "weight") for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=sparsity)
    for name, module in reference.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.equal(ours.model.get_submodule(name).weight == 0, module.weight_mask == 0)


def test_prune_leaves_the_users_model_untouched_unless_inplace() -> None:
    model = lenet_like()
    before = copy.deepcopy(model.state_dict())
    result = prunekit.prune(model, sparsity=0.5)
    assert prunekit.masks_of(model) == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(prunekit.masks_of(result.model)) == {
        f"{n}.weight" for n in ("0", "3", "7", "9", "11")
    }
    inplace = prunekit.prune(model, sparsity=0.5, inplace=True)
    assert inplace.model is model and prunekit.masks_of(model)


class NaNEstimator(Magnitude):
    def compute(self, model, groups, data):  # type: ignore[no-untyped-def]
        scores = super().compute(model, groups, data)
        scores[groups[-1].name][3] = float("nan")
        return scores


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sparsity": -0.1}, ConfigError, "sparsity"),
        ({"sparsity": 1.0}, ConfigError, r"\[0, 1\)"),
        ({"sparsity": 0.5, "estimator": "magnitud"}, UnknownNameError, "did you mean 'magnitude'"),
        ({"sparsity": 0.5, "granularity": "elemnt"}, UnknownNameError, "did you mean 'element'"),
        ({"granularity": "4:2"}, ConfigError, "N:M"),
        ({"granularity": "2:4"}, ConfigError, "not divisible by M=4"),
        ({"sparsity": 0.5, "estimator": "taylor"}, DataError, "needs data"),
        ({"sparsity": 0.5, "estimator": NaNEstimator()}, ScoreError, "'11'.*unit 3"),
        ({}, ConfigError, "needs sparsity"),
    ],
)
def test_bad_input_is_refused_and_the_model_is_untouched(
    kwargs: dict, error: type, message: str
) -> None:
    model = lenet_like()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=message):
        prunekit.prune(model, inplace=True, **kwargs)
    assert prunekit.masks_of(model) == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_n_m_prunes_exactly_n_of_every_m_along_inputs() -> None:
    model = lenet_like()
    result = prunekit.prune(model, granularity="2:4", exclude=["0", "3", "11"])
    w = result.model.get_submodule("7").weight.detach()
    assert ((w != 0).reshape(120, -1, 4).sum(-1) == 2).all()


def test_data_driven_prune_with_a_loader() -> None:
    model = lenet_like()
    gen = torch.Generator().manual_seed(0)
    loader = [
        (torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen))
        for _ in range(3)
    ]
    result = prunekit.prune(
        model, sparsity=0.5, granularity="channel", estimator="taylor", data=loader, exclude=["11"]
    )
    assert result.removed_units == round(0.5 * (6 + 16 + 120 + 84))


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 0.95), st.sampled_from(["element", "block:2x2", "channel"]))
def test_achieved_sparsity_is_exact_and_masks_match_selection(
    sparsity: float, granularity: str
) -> None:
    model = lenet_like()
    # one global ranking without floors: the count removed is exact
    exact = {"scope": "global", "min_keep": 0, "min_keep_fraction": 0.0}
    result = prunekit.prune(model, sparsity=sparsity, granularity=granularity, **exact)
    assert result.removed_units == round(sparsity * result.total_units)
    again = prunekit.prune(result.model, sparsity=sparsity, granularity=granularity, **exact)
    # pruning the pruned model again at the same sparsity removes the same (already zero) units
    assert all(torch.equal(again.masks[k], v) for k, v in result.masks.items())
