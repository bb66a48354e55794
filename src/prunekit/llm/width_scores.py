"""Scoring heads and MLP neurons of a language model from calibration windows.

Two pieces that :func:`prunekit.llm.prune_width` hands to the structural pruner:

- :class:`UnitActivation`, the ``activation`` estimator of width pruning: a unit's importance is
  the squared L2 norm, over every calibration token, of its activations *where they enter the
  layer that consumes them* — the input columns of ``o_proj`` (BERT: ``attention.output.dense``)
  that belong to a head, and the input column of ``down_proj`` (BERT: ``output.dense``) that
  belongs to an MLP neuron. This is the mean-activation criterion of Molchanov et al. 2017
  ("Pruning Convolutional Neural Networks for Resource Efficient Inference") measured on what a
  unit actually passes on: for a gated MLP that is ``silu(gate) * up``, not the gate alone, and a
  head (or, with grouped-query attention, a key/value head with its query heads) has no output
  of its own layer to measure at all, so the registry's ``activation`` (a layer's output
  channels) cannot score heads.
- :func:`lm_scoring_data`: the windows as :class:`~prunekit.estimators.ScoringData`, with the
  causal-LM loss (labels = the input ids shifted by one) that gradient estimators such as
  ``taylor`` differentiate. An encoder has no such loss; gradient estimators then stop with an
  error naming the model, before anything is changed.

For ``split="data"`` (:func:`prunekit.llm.width.prune_width`), :class:`FixedScores` hands the
scores of one scoring pass to every candidate split, and :func:`calibration_loss` rates each
candidate on the calibration windows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.adapters import is_causal_lm
from prunekit.core.groups import Group, Member, Scores
from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError, DataError, ScoreError
from prunekit.estimators import Estimator, ScoringData
from prunekit.estimators.data import ForwardFn, LossFn
from prunekit.llm.blocks import _forward_options
from prunekit.llm.stats import record_inputs


def consumer_member(model: nn.Module, group: Group) -> tuple[str, Member]:
    """The Linear that takes the group's units as input features, and its member.

    Raises ScoreError naming the group when no member is the input side (dim 1) of a Linear."""
    for member in group.members:
        module_name, _, attr = member.tensor.rpartition(".")
        dim = getattr(member.view, "dim", None)
        if attr != "weight" or dim != 1:
            continue
        if isinstance(model.get_submodule(module_name), nn.Linear):
            return module_name, member
    raise ScoreError(
        f"group {group.name!r}: the 'activation' estimator of width pruning needs a Linear "
        f"that takes the group's units as input features; its tensors are {group.tensor_names()}"
    )


@dataclass(frozen=True)
class UnitActivation(Estimator):
    """Squared L2 norm of a unit's activations where they enter the Linear that consumes them,
    summed over every calibration token and every feature of the unit (see the module
    docstring). Higher means keep."""

    name: ClassVar[str] = "activation"
    summary: ClassVar[str] = "||activations entering the consuming Linear||^2 of a head / neuron"
    needs_data: ClassVar[bool] = True

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        consumers = {g.name: consumer_member(model, g) for g in groups}
        layers = {name: model.get_submodule(name) for name, _ in consumers.values()}
        with record_inputs(layers) as stats, eval_mode(model), torch.no_grad():
            for batch in data.batches:
                data.forward(model, batch)
        scores: Scores = {}
        for group in groups:
            layer, member = consumers[group.name]
            row_shape = (1, member.view.shape[1])  # one row of the consumer's [out, in] weight
            row_view = dataclasses.replace(member.view, shape=row_shape)  # type: ignore[type-var]
            values = stats[layer].sq_norms.float().reshape(row_shape)
            scores[group.name] = row_view.reduce(values, self.reduction)
        return scores


def next_token_loss(logits: Tensor, ids: Tensor) -> Tensor:
    """Mean cross-entropy of predicting token ``t + 1`` from positions ``<= t``."""
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), ids[:, 1:].reshape(-1))


def _encoder_loss(model_name: str) -> LossFn:
    def refuse(outputs: Tensor, targets: Tensor) -> Tensor:
        raise ConfigError(
            f"{model_name} is not a causal language model, so the calibration windows give no "
            "loss to differentiate: use estimator 'activation' or 'magnitude' for encoders"
        )

    return refuse


def _lm_forward(options: dict[str, Any]) -> ForwardFn:
    """``forward(model, batch) -> (logits or hidden states, input ids)``; ``model`` may be the
    estimators' stand-in that substitutes tensors, so everything it needs is bound here."""

    def forward(model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        ids = batch[0]
        out = model(input_ids=ids, **options)
        for attr in ("logits", "last_hidden_state"):
            value = getattr(out, attr, None)
            if isinstance(value, Tensor):
                return value, ids
        if isinstance(out, Tensor):
            return out, ids
        raise DataError(f"the model returned {type(out).__name__}, not logits or hidden states")

    return forward


def lm_scoring_data(model: nn.Module, windows: Tensor, *, batch_size: int = 1) -> ScoringData:
    """``[n, seq_len]`` token windows as scoring batches of ``batch_size`` windows.

    The loss is :func:`next_token_loss` for a causal LM; for other models (encoders) a gradient
    estimator's first loss raises ConfigError. Only one batch is in memory at a time."""
    if windows.dim() != 2 or windows.shape[0] == 0 or windows.is_floating_point():
        raise DataError(
            "calibration windows must be a non-empty [n, seq_len] tensor of token ids, got "
            f"{windows.dtype} of shape {tuple(windows.shape)}"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    batches = [(chunk, chunk) for chunk in windows.long().to(device).split(batch_size)]
    loss = next_token_loss if is_causal_lm(model) else _encoder_loss(type(model).__name__)
    forward = _lm_forward(_forward_options(model))
    return ScoringData(batches, loss_fn=loss, forward=forward, progress=False)


@dataclass(frozen=True, eq=False)
class FixedScores(Estimator):
    """Scores computed once and reused: returns ``scores[group.name]`` for every group (the
    groups of another trace of the same model have the same names)."""

    name: ClassVar[str] = "fixed"
    summary: ClassVar[str] = "precomputed unit scores, looked up by group name"
    scores: Mapping[str, Tensor] = dataclasses.field(default_factory=dict)

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        missing = [g.name for g in groups if g.name not in self.scores]
        if missing:
            raise ScoreError(f"no precomputed score for group {missing[0]!r}")
        return {g.name: self.scores[g.name] for g in groups}


def _outputs(model: nn.Module, ids: Tensor) -> Tensor:
    forward = _lm_forward(_forward_options(model))
    return forward(model, (ids,))[0]


def calibration_loss(
    model: nn.Module,
    windows: Tensor,
    *,
    batch_size: int = 1,
    reference: Sequence[Tensor] | None = None,
) -> float:
    """How well ``model`` does on the windows: the mean next-token cross-entropy for a causal
    LM; for other models (encoders) the relative squared error of the outputs against
    ``reference`` (the dense model's, from :func:`reference_outputs`), summed over batches."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for i, chunk in enumerate(windows.long().to(device).split(batch_size)):
            out = _outputs(model, chunk)
            if is_causal_lm(model):
                tokens = chunk.shape[0] * (chunk.shape[1] - 1)
                total += float(next_token_loss(out, chunk)) * tokens
                count += tokens
            else:
                if reference is None:
                    raise ConfigError(
                        f"{type(model).__name__} is not a causal LM: rating a split needs the "
                        "dense model's outputs (reference=)"
                    )
                dense = reference[i].to(out.device).float()
                total += float((out.float() - dense).pow(2).sum() / dense.pow(2).sum())
                count += 1
    return total / max(count, 1)


def reference_outputs(model: nn.Module, windows: Tensor, *, batch_size: int = 1) -> list[Tensor]:
    """The model's outputs (logits or hidden states) on the windows, ``batch_size`` at a time."""
    device = next(model.parameters()).device
    with eval_mode(model), torch.no_grad():
        return [_outputs(model, c).cpu() for c in windows.long().to(device).split(batch_size)]
