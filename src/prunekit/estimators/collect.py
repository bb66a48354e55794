"""Collectors: small context managers and generators that gather what data-driven estimators need
(gradients, Hessian-vector products, activations, losses) without changing the model.

Gradients are taken with ``torch.func.functional_call`` against detached copies of the scored
tensors, so the model's parameters, their ``.grad`` fields and BatchNorm statistics are untouched;
every module runs in eval mode and gets its own train/eval flag back afterwards. For a masked
parameter the gradient is taken with respect to the effective (masked) tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from prunekit.core.groups import get_tensor
from prunekit.core.modes import eval_mode
from prunekit.estimators.data import Batch, ScoringData


def progress(data: ScoringData, desc: str) -> Iterator[Batch]:
    """Iterate the batches with a progress bar (hidden when not a terminal or disabled)."""
    yield from tqdm(data.batches, desc=desc, leave=False, disable=None if data.progress else True)


def substitution_name(model: nn.Module, name: str) -> str:
    """The name under which ``functional_call`` substitutes tensor ``name``.

    For a masked (parametrised) tensor that is its original, ``x.parametrizations.weight.original``:
    the mask then still applies to the substitute, and gradients flow through it (a removed weight
    gets zero gradient). Plain tensors are substituted under their own name.
    """
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    if parametrize.is_parametrized(module, attr):
        return f"{module_name}.parametrizations.{attr}.original".lstrip(".")
    return name


class _Bound:
    """Calls ``model`` with some tensors replaced, through ``functional_call``."""

    def __init__(self, model: nn.Module, tensors: Mapping[str, Tensor]) -> None:
        self.model = model
        self.tensors = {substitution_name(model, n): t for n, t in tensors.items()}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.model, self.tensors, args, kwargs)


def batch_loss(
    model: nn.Module, data: ScoringData, batch: Batch, tensors: Mapping[str, Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, outputs, targets)`` of one batch with ``tensors`` substituted into the model."""
    outputs, targets = data.forward(_Bound(model, tensors), batch)  # type: ignore[arg-type]
    return data.loss_fn(outputs, targets), outputs, targets


def leaves(model: nn.Module, names: Sequence[str]) -> dict[str, Tensor]:
    """Detached copies of the named tensors that require grad (the model is not touched)."""
    return {n: get_tensor(model, n).detach().clone().requires_grad_(True) for n in names}


@dataclass(frozen=True)
class BatchGrads:
    """Values and loss gradients of the scored tensors for one batch."""

    loss: float
    values: dict[str, Tensor]
    grads: dict[str, Tensor]


def batch_gradients(
    model: nn.Module, data: ScoringData, names: Sequence[str], desc: str
) -> Iterator[BatchGrads]:
    """Yield the gradient of the loss with respect to ``names`` for every batch."""
    with eval_mode(model):
        for batch in progress(data, desc):
            values = leaves(model, names)
            loss, _, _ = batch_loss(model, data, batch, values)
            grads = torch.autograd.grad(loss, list(values.values()), allow_unused=True)
            yield BatchGrads(
                float(loss.detach()),
                {n: v.detach() for n, v in values.items()},
                {n: _zero_if_none(g, values[n]) for n, g in zip(values, grads, strict=True)},
            )


def _zero_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad.detach()


def hessian_diagonal(
    model: nn.Module,
    data: ScoringData,
    names: Sequence[str],
    *,
    samples: int,
    generator: torch.Generator,
    desc: str,
) -> dict[str, Tensor]:
    """Hutchinson's estimate of the Hessian diagonal, ``E[z * (H z)]`` with Rademacher ``z``
    (Bekas, Kokiopoulou & Saad 2007; used for pruning by Yao et al. 2020, "PyHessian"),
    averaged over batches and ``samples`` probes per batch."""
    totals = {n: torch.zeros_like(get_tensor(model, n), dtype=torch.float32) for n in names}
    count = 0
    with eval_mode(model):
        for batch in progress(data, desc):
            values = leaves(model, names)
            loss, _, _ = batch_loss(model, data, batch, values)
            grads = torch.autograd.grad(loss, list(values.values()), create_graph=True)
            for _ in range(samples):
                probes = [
                    torch.randint(0, 2, v.shape, generator=generator).to(v) * 2 - 1
                    for v in values.values()
                ]
                hvps = torch.autograd.grad(
                    grads,
                    list(values.values()),
                    grad_outputs=probes,
                    retain_graph=True,
                    allow_unused=True,
                )
                for n, z, hz in zip(values, probes, hvps, strict=True):
                    if hz is not None:
                        totals[n] += (z * hz).detach().float()
                count += 1
    return {n: t / count for n, t in totals.items()}


@dataclass(frozen=True)
class ChannelStats:
    """Per-sample, per-channel summaries of one module output over all batches.

    Each tensor is ``[samples, channels]``: the mean absolute value, the mean, and the fraction
    of non-positive entries over every position other than the channel.
    """

    abs_mean: Tensor
    mean: Tensor
    nonpositive: Tensor


def _summarise(output: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    x = output.detach().float().movedim(dim, 1)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    return x.abs().mean(-1), x.mean(-1), (x <= 0).float().mean(-1)


def channel_statistics(
    model: nn.Module,
    data: ScoringData,
    outputs: Mapping[str, tuple[str, int]],
    desc: str,
) -> tuple[dict[str, ChannelStats], Tensor, Tensor]:
    """Summaries of the named module outputs (key -> ``(module name, channel dim)``), plus the
    model's predictions and the targets for every sample. A module called several times in one
    forward contributes every call."""
    records: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {k: [] for k in outputs}
    hooks = []

    def hook_for(key: str, dim: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            records[key].append(_summarise(out[0] if isinstance(out, tuple) else out, dim))

        return hook

    predictions, targets = [], []
    try:
        for key, (module_name, dim) in outputs.items():
            module = model.get_submodule(module_name)
            hooks.append(module.register_forward_hook(hook_for(key, dim)))
        with eval_mode(model), torch.no_grad():
            for batch in progress(data, desc):
                out, target = data.forward(model, batch)
                predictions.append(out.detach().reshape(-1, out.shape[-1]).argmax(-1))
                targets.append(torch.as_tensor(target).detach().reshape(-1))
    finally:
        for handle in hooks:
            handle.remove()
    stats = {
        k: ChannelStats(*(torch.cat([r[i] for r in rec]) for i in range(3)))
        for k, rec in records.items()
    }
    return stats, torch.cat(predictions), torch.cat(targets)


def mean_loss(model: nn.Module, data: ScoringData, tensors: Mapping[str, Tensor]) -> float:
    """Mean loss over all batches with ``tensors`` substituted (no gradients, eval mode)."""
    total = 0.0
    with eval_mode(model), torch.no_grad():
        for batch in data.batches:
            loss, _, _ = batch_loss(model, data, batch, tensors)
            total += float(loss)
    return total / len(data.batches)


def mean_losses(model: nn.Module, data: ScoringData, stacked: Mapping[str, Tensor]) -> Tensor:
    """Mean loss over all batches for ``k`` variants of the model at once.

    ``stacked`` maps tensor names to ``[k, *shape]`` stacks; variant ``i`` substitutes slice ``i``
    of every stack. The variants run in one vectorised pass per batch (``torch.func.vmap``), which
    is much faster than ``k`` separate passes for small layers. Raises whatever ``vmap`` raises on
    models it cannot vectorise (data-dependent control flow, in-place updates of inputs).
    """

    def loss_of(tensors: dict[str, Tensor], batch: Batch) -> Tensor:
        loss, _, _ = batch_loss(model, data, batch, tensors)
        return loss

    total: Tensor | None = None
    with eval_mode(model), torch.no_grad():
        for batch in data.batches:
            losses = vmap(loss_of, in_dims=(0, None), randomness="same")(dict(stacked), batch)
            total = losses if total is None else total + losses
    assert total is not None
    return total / len(data.batches)
