"""Every registered unit estimator at every granularity: right shapes, finite scores, model
untouched (block scorers and layer-wise methods have tests of their own)."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, DataError, UnknownNameError
from prunekit.estimators import ESTIMATORS, UNITS, ScoringData, estimators_with, get_estimator
from prunekit.granularity import build_groups, get_granularity


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )


def data() -> ScoringData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 8, 8, generator=gen)
    y = torch.randint(0, 3, (32,), generator=gen)
    return ScoringData([(x[:16], y[:16]), (x[16:], y[16:])], progress=False)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("granularity", ["element", "4:8", "block:2x4", "channel"])
@pytest.mark.parametrize("name", estimators_with(UNITS))
def test_estimator_scores_every_unit_without_touching_the_model(
    name: str, granularity: str
) -> None:
    model = small_cnn()
    model.train()
    before = snapshot(model)
    groups = build_groups(
        model, get_granularity(granularity), exclude=["0"] if ":" in granularity[:2] else []
    )
    opts = {"sample": 5} if name == "oracle" and granularity != "channel" else {}
    estimator = get_estimator(name, **opts)
    if estimator.output_units_only and granularity != "channel":
        with pytest.raises(ConfigError, match="channel"):
            estimator.score(model, groups, data())
        return
    if estimator.structural_only:  # per-layer channel groups hold no BatchNorm
        with pytest.raises(ConfigError, match="no BatchNorm scale"):
            estimator.score(model, groups)
        return
    result = estimator.score(model, groups, data() if estimator.needs_data else None)
    assert set(result) == {g.name for g in groups}
    for g in groups:
        assert result[g.name].shape == (g.n_units,)
        assert result[g.name].dtype == torch.float32
        finite = torch.isfinite(result[g.name])
        assert finite.all() or (estimator.partial and finite.sum() >= 1)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())


DATA_DRIVEN = [n for n in estimators_with(UNITS) if ESTIMATORS.get(n).needs_data]


@pytest.mark.parametrize("name", DATA_DRIVEN)
def test_data_driven_estimators_without_data_say_so(name: str) -> None:
    model = small_cnn()
    with pytest.raises(DataError, match=f"'{name}' needs data"):
        get_estimator(name).score(model, build_groups(model, get_granularity("channel")), None)


def test_empty_loader_is_refused() -> None:
    with pytest.raises(DataError, match="no batches"):
        ScoringData.from_loader([])


def test_unknown_estimator_and_option_are_named() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'taylor'"):
        get_estimator("taylr")
    with pytest.raises(ConfigError, match="no option 'q'"):
        get_estimator("magnitude", q=3)
    with pytest.raises(ConfigError, match="reduction"):
        get_estimator("magnitude", reduction="median")


def test_scores_of_a_masked_model_see_the_masked_weights() -> None:
    from prunekit.masks import apply_masks

    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    apply_masks(model, {"0.weight": torch.tensor([[1.0, 0.0], [1.0, 1.0]])})
    groups = build_groups(model, get_granularity("element"))
    assert get_estimator("magnitude").score(model, groups)["0"].tolist() == [1.0, 0.0, 3.0, 4.0]


@pytest.mark.parametrize("name", ["gradient", "taylor", "fisher", "hessian", "oracle"])
def test_data_driven_estimators_score_an_already_masked_model(name: str) -> None:
    from prunekit.masks import apply_masks, masks_of

    model = small_cnn()
    mask = torch.ones(8, 4 * 6 * 6)
    mask[:, ::2] = 0
    apply_masks(model, {"4.weight": mask})
    before = masks_of(model)["4.weight"].clone()
    groups = build_groups(model, get_granularity("element"), include=["4"])
    opts = {"sample": 8} if name == "oracle" else {}
    scores = get_estimator(name, **opts).score(model, groups, data())["4"].reshape(8, -1)
    assert torch.equal(masks_of(model)["4.weight"], before)
    if name != "oracle":
        # a removed weight has no gradient through its mask: every masked position scores 0
        assert torch.all(scores[:, ::2] == 0)
        assert scores[:, 1::2].abs().sum() > 0


def test_vectorised_oracle_equals_unit_by_unit_and_falls_back_with_a_warning() -> None:
    model = small_cnn()
    groups = build_groups(model, get_granularity("channel"))
    one_by_one = get_estimator("oracle", batch_units=1).score(model, groups, data())
    batched = get_estimator("oracle", batch_units=5).score(model, groups, data())
    for name, s in one_by_one.items():
        torch.testing.assert_close(batched[name], s, atol=1e-5, rtol=1e-4)

    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum().item() > -1e9 else x

    wrapped = nn.Sequential(*model, DataDependent())
    groups = build_groups(wrapped, get_granularity("channel"))
    with pytest.warns(UserWarning, match="cannot be vectorised"):
        fallback = get_estimator("oracle", batch_units=4).score(wrapped, groups, data())
    reference = get_estimator("oracle", batch_units=1).score(wrapped, groups, data())
    for name, s in reference.items():
        torch.testing.assert_close(fallback[name], s)
