"""The data-driven split of a width target between head units and MLP neurons (split="data"):
the candidates by hand, the calibration loss by hand, and the choice on a tiny LLaMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, DataError, ScoreError
from prunekit.llm import UnitKind, WidthPruneConfig, prune_width
from prunekit.llm.width import candidate_splits
from prunekit.llm.width_scores import FixedScores, calibration_loss, reference_outputs

from .conftest import VOCAB, build_tiny_llama

transformers = pytest.importorskip("transformers")

HEADS = UnitKind("heads", ("*.q",), layers=2, units=3, unit_params=100)
MLP = UnitKind("mlp", ("*.up",), layers=2, units=16, unit_params=10, step=4)


def test_candidate_splits_land_within_half_an_mlp_step() -> None:
    # MLP removals 0, 4, 8, 12 neurons = 0, 40, 80, 120 parameters; half a step is 20
    low = candidate_splits(92, HEADS, MLP)  # h=0: 80 (12 off); h=1: 100 (8 off); h=2: 200
    assert [(a.heads_removed, a.mlp_removed, a.planned_params) for a in low] == [
        (0, 8, 80),
        (1, 0, 100),
    ]
    half = candidate_splits(230, HEADS, MLP)  # h=0: 120 (110 off); h=1: 220; h=2: 240
    assert [(a.heads_removed, a.mlp_removed, a.planned_params) for a in half] == [
        (1, 12, 220),
        (2, 4, 240),
    ]


def test_calibration_loss_of_uniform_logits_is_log_vocab(windows: torch.Tensor) -> None:
    model = build_tiny_llama(tie=False)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: cross-entropy log(96) at every position
    loss = calibration_loss(model, windows, batch_size=3)
    assert loss == pytest.approx(math.log(VOCAB), rel=1e-6)


def test_encoder_loss_is_the_relative_output_error(
    tiny_bert: nn.Module, windows: torch.Tensor
) -> None:
    own = reference_outputs(tiny_bert, windows, batch_size=2)
    assert calibration_loss(tiny_bert, windows, batch_size=2, reference=own) == 0.0
    doubled = [2 * t for t in own]  # ||y - 2y||^2 / ||2y||^2 = 1/4 per batch, 2 batches
    loss = calibration_loss(tiny_bert, windows, batch_size=2, reference=doubled)
    assert loss == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ConfigError, match="reference="):
        calibration_loss(tiny_bert, windows)


def test_fixed_scores_name_a_missing_group(tiny_llama: nn.Module) -> None:
    from prunekit.graph import build_structural_groups

    groups = build_structural_groups(tiny_llama, {"input_ids": torch.zeros(1, 8, dtype=torch.long)})
    scores = {g.name: torch.arange(float(g.n_units)) for g in groups[:1]}
    assert torch.equal(
        FixedScores(scores=scores).score(tiny_llama, groups[:1])[groups[0].name],
        torch.arange(float(groups[0].n_units)),
    )
    with pytest.raises(ScoreError, match="no precomputed score"):
        FixedScores(scores=scores).score(tiny_llama, groups[:2])


def test_data_split_keeps_the_candidate_with_the_lowest_calibration_loss(
    tiny_llama: nn.Module, windows: torch.Tensor
) -> None:
    # blocks hold 18,560 parameters; 20% = 3,712: 16 of 64 neurons (3,072) or 1 of 2 head
    # units (3,072): the rule takes neurons only, the data split rates both
    rule = prune_width(tiny_llama, windows, WidthPruneConfig(sparsity=0.2, of="blocks"))
    assert (rule.allocation.heads_removed, rule.allocation.mlp_removed) == (0, 16)
    assert rule.split_losses == {}
    data = prune_width(
        tiny_llama, windows, WidthPruneConfig(sparsity=0.2, of="blocks", split="data")
    )
    losses = data.split_losses
    assert sorted(losses) == ["heads=0 mlp=16", "heads=1 mlp=0"]
    chosen = f"heads={data.allocation.heads_removed} mlp={data.allocation.mlp_removed}"
    assert losses[chosen] == min(losses.values())
    assert data.verification is not None and data.verification.complete
    # the returned model is the rated candidate, and the rule's candidate is rated as the rule
    # model does
    assert calibration_loss(data.model, windows) == pytest.approx(losses[chosen], rel=1e-5)
    assert calibration_loss(rule.model, windows) == pytest.approx(
        losses["heads=0 mlp=16"], rel=1e-5
    )


def test_split_options_are_checked(tiny_llama: nn.Module) -> None:
    with pytest.raises(ConfigError, match="split must be 'rule' or 'data'"):
        WidthPruneConfig(sparsity=0.2, split="best")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="split='data'"):
        prune_width(
            tiny_llama, None, WidthPruneConfig(sparsity=0.2, estimator="magnitude", split="data")
        )
