"""``prunekit.prune(model, example_inputs, granularity="channel")``: trace, score with any
estimator, select, surgery, verification, metrics, save / load with the plan."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import prunekit
from prunekit import io
from prunekit.errors import ConfigError, SaveFileError, UnsupportedLayerError
from prunekit.estimators import estimators_for
from prunekit.models import build_model
from prunekit.result import PruneResult
from prunekit.surgery import VerificationError, rebuild_hook


def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("small-resnet", in_channels=1, in_size=8).eval()


def example() -> torch.Tensor:
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def loader() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen))
        for _ in range(2)
    ]


def _same_state(a: dict[str, torch.Tensor], model: nn.Module) -> bool:
    state = model.state_dict()
    return set(a) == set(state) and all(torch.equal(a[k], state[k]) for k in a)


@pytest.mark.parametrize("estimator", estimators_for("channel"))
def test_every_estimator_prunes_structurally_and_verifies(estimator: str) -> None:
    model = small_resnet()
    before = copy.deepcopy(model.state_dict())
    options = {"sample": None, "max_units": 10_000} if estimator == "oracle" else {}
    result = prunekit.prune(
        model,
        example(),
        sparsity=0.5,
        granularity="channel",
        estimator=estimator,
        estimator_options=options,
        data=loader(),
        n_batches=1,
        scope="layer",
    )
    assert isinstance(result, PruneResult)
    assert _same_state(before, model)  # the user's model is untouched
    assert result.verification is not None and result.verification.complete
    assert result.removed_units == sum(round(0.5 * g.n_units) for g in result.groups)
    assert result.params_ratio is not None and result.params_ratio < 0.6
    assert result.macs_ratio is not None and result.macs_ratio < 0.6
    assert result.model(example()).shape == (2, 10)
    json.loads(result.plan.to_json())  # plain JSON


def test_activation_estimators_see_where_graph_units_appear() -> None:
    result = prunekit.prune(
        small_resnet(), example(), sparsity=0.5, granularity="channel", estimator="apoz",
        data=loader(), n_batches=1,
    )  # fmt: skip
    assert isinstance(result, PruneResult)
    assert all(g.output is not None for g in result.groups)


def test_inplace_prunes_the_users_model_object() -> None:
    model = small_resnet()
    copy_result = prunekit.prune(model, example(), sparsity=0.5, granularity="channel")
    result = prunekit.prune(model, example(), sparsity=0.5, granularity="channel", inplace=True)
    assert result.model is model
    assert isinstance(copy_result, PruneResult)
    assert torch.allclose(model(example()), copy_result.model(example()), atol=1e-6)
    assert sum(p.numel() for p in model.parameters()) == copy_result.after.params  # type: ignore[union-attr]


def test_a_failed_verification_leaves_the_model_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_resnet()
    before = copy.deepcopy(model.state_dict())

    def broken(*args: object, **kwargs: object) -> None:
        raise VerificationError("group 'stem' breaks")

    monkeypatch.setattr("prunekit.pruning.structural.verify", broken)
    with pytest.raises(VerificationError, match="stem"):
        prunekit.prune(model, example(), sparsity=0.5, granularity="channel", inplace=True)
    assert _same_state(before, model)


def test_unknown_op_names_op_and_module_and_leaves_the_model_whole() -> None:
    class Weird(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.special.i0(self.fc1(x)).cummax(-1).values)

    model = Weird()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UnsupportedLayerError, match="cummax"):
        prunekit.prune(model, torch.randn(2, 4), sparsity=0.5, granularity="channel", inplace=True)
    assert _same_state(before, model)


def test_round_to_min_keep_and_exclude() -> None:
    model = small_resnet()
    result = prunekit.prune(
        model, example(), sparsity=0.7, granularity="channel", scope="layer", round_to=4,
        exclude=["layer1.*"],
    )  # fmt: skip
    assert isinstance(result, PruneResult)
    for group in result.groups:
        if group.name in result.selection:
            kept = int(result.selection[group.name].sum())
            assert kept % 4 == 0 or kept == group.n_units
    assert not any(n.startswith("layer1.") for n in result.plan.groups)


def test_surgery_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="example_inputs"):
        prunekit.prune(small_resnet(), sparsity=0.5, granularity="channel", surgery=True)
    with pytest.raises(ConfigError, match="not structural"):
        prunekit.prune(small_resnet(), example(), sparsity=0.5, granularity="element", surgery=True)
    masked = prunekit.prune(small_resnet(), example(), sparsity=0.5, granularity="channel",
                            surgery=False)  # fmt: skip
    assert prunekit.masks_of(masked.model)
    with pytest.raises(ConfigError, match="without masks"):
        prunekit.prune(masked.model, example(), sparsity=0.5, granularity="channel")


def test_save_and_load_round_trip_with_the_plan(tmp_path: Path) -> None:
    model = small_resnet()
    result = prunekit.prune(model, example(), sparsity=0.5, granularity="channel")
    assert isinstance(result, PruneResult)
    pruned = result.model
    with torch.no_grad():  # make the saved weights differ from a plain slice of the original
        for p in pruned.parameters():
            p.add_(0.01)
    arch = {"model": "small-resnet", "kwargs": {"in_channels": 1, "in_size": 8}}
    io.save(pruned, tmp_path / "m", plan=result.plan.to_json(), arch=arch)
    fresh = small_resnet()
    loaded = io.load(tmp_path / "m", fresh, rebuild_hook=rebuild_hook)
    rebuilt = io.load(tmp_path / "m", rebuild_hook=rebuild_hook)
    for m in (loaded, rebuilt):
        m.eval()
        assert torch.equal(m(example()), pruned(example()))
    with pytest.raises(SaveFileError, match="rebuild_hook"):
        io.load(tmp_path / "m", small_resnet())


class WidthInCode(nn.Module):
    """The residual width is normalised (LayerNorm: unverifiable) and written in code."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.norm = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).reshape(x.shape[0], 8)  # the 8 is written here
        h = h + self.fc2(torch.relu(self.fc1(self.norm(h))))
        return self.head(h)


def test_an_unverifiable_group_that_breaks_the_model_is_kept_whole() -> None:
    torch.manual_seed(0)
    model = WidthInCode().eval()
    result = prunekit.prune(model, torch.randn(4, 3), sparsity=0.5, granularity="channel",
                            scope="layer")  # fmt: skip
    assert isinstance(result, PruneResult) and result.verification is not None
    assert result.kept_unverifiable == ("embed",)
    assert result.verification.complete  # the other groups (fc1's width) are verified
    pruned: Any = result.model
    assert pruned.fc1.out_features == 8 and pruned.embed.out_features == 8


def test_batchnorm_statistics_are_recalibrated_after_surgery_when_data_is_given() -> None:
    from torch import nn as _nn

    import prunekit as _pk

    torch.manual_seed(0)
    model = _nn.Sequential(
        _nn.Conv2d(1, 8, 3),
        _nn.BatchNorm2d(8),
        _nn.ReLU(),
        _nn.Conv2d(8, 8, 3),
        _nn.BatchNorm2d(8),
        _nn.ReLU(),
        _nn.Flatten(),
        _nn.Linear(8 * 4 * 4, 3),
    )
    x = torch.randn(16, 1, 8, 8)
    loader = [(x, torch.randint(0, 3, (16,))) for _ in range(2)]
    sliced = _pk.prune(model, x[:2], sparsity=0.5, granularity="channel", metrics=False)
    recal = _pk.prune(
        model,
        x[:2],
        sparsity=0.5,
        granularity="channel",
        estimator="taylor",
        data=loader,
        metrics=False,
    )
    # without data the statistics are the original ones, sliced; with data they are re-estimated
    assert set(sliced.model[4].running_mean.tolist()) <= set(model[4].running_mean.tolist())
    import copy as _copy

    with torch.no_grad():  # recalibration runs BatchNorm in train mode: batch statistics upstream
        h = _copy.deepcopy(recal.model)[:4].train()(x)
    torch.testing.assert_close(
        recal.model[4].running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-4
    )
