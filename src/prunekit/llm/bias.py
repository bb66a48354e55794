"""Bias compensation for removed units (FLAP: An et al. 2024, *Fluctuation-based Adaptive
Structured Pruning for Large Language Models*, AAAI).

A Linear whose input unit ``j`` is removed loses ``W[:, j] * x_j`` from every output. Replacing
``x_j`` by its mean over calibration data instead of by zero keeps the output's mean: the
removed units' mean contribution ``W[:, removed] @ E[x_removed]`` is added to the Linear's bias.
After width pruning of a decoder these are the attention output projections (removed heads)
and the MLP down projections (removed neurons).

Architectures whose Linears have no bias (LLaMA, Qwen, Mistral) get one. For the model to load
back, :func:`compensate_bias` gives every Linear next to a compensated one a zero bias, sets
the config's flag for it (``attention_bias`` / ``mlp_bias``), and returns the plan extended
with the cuts of the new biases, so :func:`prunekit.llm.save_pruned` / ``load_pruned`` and
``from_pretrained`` rebuild the same model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.surgery.plan import Plan, TensorCut

CONFIG_FLAGS: tuple[tuple[str, str], ...] = (("mlp", "mlp_bias"), ("self_attn", "attention_bias"))
"""``(module-name suffix, config flag)``: the config flag that gives every Linear of such a
module a bias (Hugging Face LLaMA-family configs)."""


@dataclass(frozen=True)
class BiasCompensation:
    """What :func:`compensate_bias` added: the extended plan and, per Linear, the norm of the
    bias it added and how many input units it stood in for."""

    plan: Plan
    added_norm: dict[str, float]
    units: dict[str, int]


def input_cuts(model: nn.Module, plan: Plan) -> dict[str, TensorCut]:
    """``linear name -> cut`` for every Linear of ``model`` (dense) whose inputs the plan cut."""
    modules = dict(model.named_modules())
    cuts = {}
    for tensor, cut in plan.tensors.items():
        name = tensor.removesuffix(".weight")
        linear = tensor.endswith(".weight") and isinstance(modules.get(name), nn.Linear)
        if linear and cut.removed.get(1):
            cuts[name] = cut
    return cuts


@contextmanager
def _recording_means(
    modules: Mapping[str, nn.Module], sums: dict[str, Tensor], counts: dict[str, int]
) -> Iterator[None]:
    def hook(name: str):  # type: ignore[no-untyped-def]
        def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0].detach().double().reshape(-1, args[0].shape[-1])
            sums[name] = sums.get(name, torch.zeros(x.shape[-1], dtype=torch.float64)) + x.sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def input_means(
    model: nn.Module, names: list[str], windows: Tensor, *, batch_size: int = 4
) -> dict[str, Tensor]:
    """The mean input vector of each named Linear over every token of ``windows``."""
    if windows.dim() != 2 or windows.shape[0] == 0:
        raise DataError(
            f"bias compensation needs token windows [n, seq_len], got {tuple(windows.shape)}"
        )
    modules = dict(model.named_modules())
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    with _recording_means({n: modules[n] for n in names}, sums, counts), torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            model(input_ids=windows[start : start + batch_size])
    means = {n: sums[n] / counts[n] for n in names if n in sums}
    missing = sorted(set(names) - set(means))
    if missing:
        raise DataError(
            f"bias compensation: {missing[0]!r} saw no input on the calibration windows"
        )
    bad = [n for n, m in means.items() if not torch.isfinite(m).all()]
    if bad:
        raise DataError(f"bias compensation: the mean input of {bad[0]!r} is not finite")
    return means


def _ensure_bias(linear: nn.Linear) -> Tensor:
    if linear.bias is None:
        zeros = torch.zeros(
            linear.out_features, dtype=linear.weight.dtype, device=linear.weight.device
        )
        linear.bias = nn.Parameter(zeros)
    return linear.bias


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _siblings_get_biases(
    pruned: nn.Module, dense: nn.Module, compensated: list[str], plan: Plan
) -> dict[str, TensorCut]:
    """Zero biases for the Linears next to compensated ones, the config flags that declare
    them, and the plan cuts of every new bias (rows cut like its weight's)."""
    config = getattr(pruned, "config", None)
    pruned_modules = dict(pruned.named_modules())
    dense_modules = dict(dense.named_modules())
    new_cuts: dict[str, TensorCut] = {}
    for parent in sorted({_parent(n) for n in compensated}):
        flag = next((f for suffix, f in CONFIG_FLAGS if parent.endswith(suffix)), None)
        if config is not None and flag is not None and hasattr(config, flag):
            setattr(config, flag, True)
        for child, module in pruned_modules[parent].named_children():
            name = f"{parent}.{child}" if parent else child
            if not isinstance(module, nn.Linear) or dense_modules[name].bias is not None:
                continue  # a bias the dense model had is cut by the plan already
            _ensure_bias(module)
            weight_cut = plan.tensors.get(f"{name}.weight")
            rows = weight_cut.removed.get(0, []) if weight_cut is not None else []
            if rows:
                shape = (dense_modules[name].out_features,)
                new_cuts[f"{name}.bias"] = TensorCut(f"{name}.bias", shape, {0: list(rows)})
    return new_cuts


def compensate_bias(
    dense: nn.Module, pruned: nn.Module, plan: Plan, windows: Tensor, *, batch_size: int = 4
) -> BiasCompensation:
    """Add the mean contribution of every removed input unit to the bias of its Linear in
    ``pruned`` (modified in place), measured on the ``dense`` model over ``windows``.

    ``plan`` is the surgery plan that made ``pruned`` from ``dense`` (e.g.
    ``prune_width(...).plan``). Returns the plan extended with the new biases and what was added.
    """
    cuts = input_cuts(dense, plan)
    if not cuts:
        raise ConfigError("bias compensation: the plan removed no input unit of any Linear")
    pruned_modules = dict(pruned.named_modules())
    missing = [n for n in cuts if not isinstance(pruned_modules.get(n), nn.Linear)]
    if missing:
        raise ConfigError(f"bias compensation: {missing[0]!r} is not a Linear of the pruned model")
    means = input_means(dense, list(cuts), windows, batch_size=batch_size)
    dense_modules = dict(dense.named_modules())
    new_cuts = _siblings_get_biases(pruned, dense, list(cuts), plan)
    added, units = {}, {}
    with torch.no_grad():
        for name, cut in cuts.items():
            removed = torch.as_tensor(cut.removed[1], dtype=torch.long)
            weight = dense_modules[name].weight.detach().double()
            delta = weight[:, removed] @ means[name][removed]
            if cut.removed.get(0):
                delta = delta[cut.kept_index(0)]
            bias = _ensure_bias(pruned_modules[name])
            bias.add_(delta.to(bias.dtype))
            added[name] = float(delta.norm())
            units[name] = len(removed)
    extended = Plan(
        tensors={**plan.tensors, **new_cuts},
        groups=plan.groups,
        modules=plan.modules,
        convert=plan.convert,
        blocks=plan.blocks,
    )
    return BiasCompensation(extended, added, units)
