"""Sparse execution where a measurement says it pays: :func:`sparsify`.

Dense kernels multiply by zeros as fast as by anything else, so masked weights save no time. A
sparse kernel skips them but pays for indexing; whether it wins depends on the sparsity, its
pattern, the batch, the shapes, the thread count and the machine. So nothing is assumed:
each sparse ``nn.Linear`` is timed, on the input it receives from the example, against a dense
``nn.Linear`` with the same (masked, baked) weight, in interleaved rounds
(:mod:`prunekit.sparse.timing`), and replaced only when the median over rounds of dense time /
sparse time reaches ``min_speedup`` for its fastest candidate, whose outputs must also match.

Candidates: CSR (``torch.sparse_csr``) always; block CSR when the zeros come in square tiles
(a tile size whose nonzero tiles hold at most 1.5x the nonzero weights); on CUDA, for a 2:4
weight, ``torch.sparse.to_sparse_semi_structured``. On CPU there is no 2:4 kernel: a 2:4 layer
is reported as such, never assumed faster.

``nn.Conv2d`` (``groups=1``, numeric zero padding) is timed the same way against
``F.conv2d``, with :class:`~prunekit.sparse.conv.SparseConv2d` as the candidate: the weight as a
CSR / block-CSR matrix times the input's patches (the input itself for a 1x1 convolution). Other
convolutions (grouped or depthwise, Conv1d, Conv3d, string padding) are reported, with the
reason, and kept dense.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError
from prunekit.formats.encodings import tile_occupancy
from prunekit.measure.inputs import ExampleInputs, call_model, forward
from prunekit.sparse.conv import SparseConv2d, conv_unsupported
from prunekit.sparse.modules import SemiStructuredLinear, SparseLinear, is_two_of_four
from prunekit.sparse.report import DENSE, LayerDecision, SparsifyReport
from prunekit.sparse.timing import interleaved_times, paired_speedup, torch_threads

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SEMI_STRUCTURED = "2:4"


def _check(
    min_speedup: float,
    min_sparsity: float,
    threads: int | None,
    tolerance: float,
    counts: tuple[int, int],
) -> None:
    if counts[0] < 0 or counts[1] < 1:
        raise ConfigError(f"sparsify: needs warmup >= 0 and repeats >= 1, got {counts}")
    if not min_speedup > 0:
        raise ConfigError(f"sparsify: min_speedup must be > 0, got {min_speedup!r}")
    if not 0.0 <= min_sparsity <= 1.0:
        raise ConfigError(f"sparsify: min_sparsity must be in [0, 1], got {min_sparsity!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"sparsify: threads must be >= 1 or None, got {threads!r}")
    if not tolerance > 0:
        raise ConfigError(f"sparsify: tolerance must be > 0, got {tolerance!r}")


def _capture(model: nn.Module, example_inputs: ExampleInputs) -> tuple[dict[str, Tensor], Any]:
    """The first input tensor of every Linear and convolution on the example, and the output."""
    seen: dict[str, Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, *_CONV)):

            def hook(_: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                if name not in seen and args and isinstance(args[0], Tensor):
                    seen[name] = args[0].detach()

            hooks.append(module.register_forward_pre_hook(hook))
    try:
        output = call_model(model, example_inputs, purpose="sparsify")
    finally:
        for handle in hooks:
            handle.remove()
    return seen, output


def _bsr_blocksize(weight: Tensor) -> tuple[int, int] | None:
    """The largest square tile whose nonzero tiles hold at most 1.5x the nonzero weights."""
    nonzero = weight.detach().cpu() != 0
    nnz = int(nonzero.sum())
    fits = [
        (br, bc)
        for (br, bc), tiles in tile_occupancy(nonzero).items()
        if br == bc and br >= 4 and int(tiles.sum()) * br * bc <= 1.5 * nnz
    ]
    return max(fits, default=None)


Builders = dict[str, Callable[[], nn.Module]]


def _conv_builders(conv: nn.Conv2d) -> Builders:
    builders: Builders = {"csr": lambda: SparseConv2d(conv)}
    blocksize = _bsr_blocksize(conv.weight.detach().reshape(conv.weight.shape[0], -1))
    if blocksize is not None:
        tag = f"bsr{blocksize[0]}x{blocksize[1]}"
        builders[tag] = lambda: SparseConv2d(conv, "bsr", blocksize)
    return builders


def _build(builders: Builders, notes: list[str]) -> dict[str, nn.Module]:
    found: dict[str, nn.Module] = {}
    for label, build in builders.items():
        try:
            with torch.inference_mode(False):  # normal tensors: the module outlives the timing
                found[label] = build()
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
            notes.append(f"{label} unavailable ({type(err).__name__}: {str(err)[:80]})")
    return found


def _candidates(weight: Tensor, bias: Tensor | None) -> tuple[dict[str, nn.Module], list[str]]:
    """The sparse modules to time for this weight, and notes on what could not be built."""
    notes: list[str] = []
    builders: Builders = {"csr": lambda: SparseLinear(weight, bias)}
    blocksize = _bsr_blocksize(weight)
    if blocksize is not None:
        builders[f"bsr{blocksize[0]}x{blocksize[1]}"] = lambda: SparseLinear(
            weight, bias, "bsr", blocksize
        )
    if is_two_of_four(weight):
        if weight.is_cuda:
            builders[SEMI_STRUCTURED] = lambda: SemiStructuredLinear(weight, bias)
        else:
            notes.append("2:4 pattern: semi-structured kernels need CUDA, none on CPU")
    return _build(builders, notes), notes


def _agrees(out: Tensor, reference: Tensor, options: _Options) -> bool:
    eps = torch.finfo(reference.dtype).eps if reference.is_floating_point() else 0.0
    scale = max(float(reference.abs().max()), 1.0)
    limit = max(options.tolerance, 16 * eps) * scale
    return bool((out.float() - reference.float()).abs().max() <= limit)


def _problem(module: nn.Module, x: Tensor, reference: Tensor, options: _Options) -> str:
    """Why a candidate cannot stand in for the dense layer ("" when it can)."""
    try:
        out = module(x)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
        return f"failed on the input ({type(err).__name__}: {str(err)[:80]})"
    return "" if _agrees(out, reference, options) else "outputs differ beyond tolerance"


@dataclass(frozen=True)
class _Options:
    min_speedup: float
    min_sparsity: float
    warmup: int
    repeats: int
    tolerance: float


def _sparsity(weight: Tensor) -> float:
    return 1.0 - int(torch.count_nonzero(weight)) / max(weight.numel(), 1)


def _verdict(best: str, speedup: float, chosen: str, options: _Options) -> str:
    if chosen != DENSE:
        return f"{best} {speedup:.2f}x faster"
    return f"fastest sparse ({best}) {speedup:.2f}x < min_speedup {options.min_speedup}"


def _decide_linear(
    name: str, module: nn.Linear, x: Tensor, options: _Options
) -> tuple[LayerDecision, nn.Module | None]:
    weight = module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    decision = LayerDecision(name, "Linear", tuple(weight.shape), _sparsity(weight))
    if decision.sparsity < options.min_sparsity:
        note = f"sparsity {decision.sparsity:.6f} < min_sparsity {options.min_sparsity}: not timed"
        return replace(decision, note=note), None
    candidates, notes = _candidates(weight, bias)
    return _time(decision, partial(F.linear, x, weight, bias), candidates, notes, x, options)


def _decide_conv(
    name: str, module: nn.Conv2d, x: Tensor, options: _Options
) -> tuple[LayerDecision, nn.Module | None]:
    weight = module.weight.detach()
    decision = LayerDecision(name, "Conv2d", tuple(weight.shape), _sparsity(weight))
    if decision.sparsity < options.min_sparsity:
        note = f"sparsity {decision.sparsity:.6f} < min_sparsity {options.min_sparsity}: not timed"
        return replace(decision, note=note), None
    problem = conv_unsupported(module)
    if problem:
        return replace(decision, note=f"{problem}, kept dense"), None
    bias = None if module.bias is None else module.bias.detach()
    dense_call = partial(
        F.conv2d,
        x,
        weight,
        bias,
        module.stride,
        module.padding,
        module.dilation,
        module.groups,
    )
    notes: list[str] = []
    plain = _plain_conv(module)
    candidates = _build(_conv_builders(plain), notes)
    return _time(decision, dense_call, candidates, notes, x, options)


def _plain_conv(module: nn.Conv2d) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with ``module``'s (masked, baked) weight and settings."""
    weight = module.weight.detach()
    with torch.inference_mode(False), torch.no_grad():  # normal tensors: it outlives the timing
        plain = nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            module.kernel_size,  # type: ignore[arg-type]
            module.stride,  # type: ignore[arg-type]
            module.padding,  # type: ignore[arg-type]
            module.dilation,  # type: ignore[arg-type]
            bias=module.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        plain.weight.copy_(weight.clone())
        if module.bias is not None and plain.bias is not None:
            plain.bias.copy_(module.bias.detach().clone())
    return plain


def _time(
    decision: LayerDecision,
    dense_call: Callable[[], Tensor],
    candidates: dict[str, nn.Module],
    notes: list[str],
    x: Tensor,
    options: _Options,
) -> tuple[LayerDecision, nn.Module | None]:
    """Check the candidates' outputs against ``dense_call``, time them interleaved with it, and
    choose the fastest if it reaches ``min_speedup``."""
    reference = dense_call()
    for label, candidate in list(candidates.items()):
        problem = _problem(candidate, x, reference, options)
        if problem:
            notes.append(f"{label} {problem}: not used")
            del candidates[label]
    calls: dict[str, Callable[[], object]] = {DENSE: dense_call}
    calls.update({label: partial(m, x) for label, m in candidates.items()})
    rounds = interleaved_times(
        calls, warmup=options.warmup, repeats=options.repeats, cuda=x.is_cuda
    )
    dense = rounds.pop(DENSE)
    times = {label: statistics.median(values) for label, values in rounds.items()}
    speedups = {label: paired_speedup(dense, values) for label, values in rounds.items()}
    decision = replace(
        decision, dense_ms=statistics.median(dense), kernels_ms=times, speedups=speedups
    )
    if not times:
        return replace(decision, note="; ".join(notes)), None
    best = max(speedups, key=lambda k: speedups[k])
    speedup = speedups[best]
    chosen = best if speedup >= options.min_speedup else DENSE
    note = "; ".join([_verdict(best, speedup, chosen, options), *notes])
    decision = replace(decision, chosen=chosen, note=note)
    return decision, (candidates[best] if chosen != DENSE else None)


def _decide(
    name: str, module: nn.Module, x: Tensor, options: _Options
) -> tuple[LayerDecision, nn.Module | None]:
    if isinstance(module, nn.Linear):
        return _decide_linear(name, module, x, options)
    if isinstance(module, nn.Conv2d):
        return _decide_conv(name, module, x, options)
    weight = getattr(module, "weight")  # noqa: B009 (a convolution's weight)
    note = f"{type(module).__name__.removeprefix('Parametrized')}: no sparse kernel, kept dense"
    kind = type(module).__name__.removeprefix("Parametrized")
    return LayerDecision(name, kind, tuple(weight.shape), _sparsity(weight), note=note), None


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``model`` holds ``old`` (a module may be registered twice)."""
    for parent in model.modules():
        for key, child in list(parent._modules.items()):
            if child is old:
                parent._modules[key] = new


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _max_abs_diff(before: Any, after: Any) -> float:
    pairs = zip(_tensors(before), _tensors(after), strict=False)
    return max((float((a.float() - b.float()).abs().max()) for a, b in pairs), default=0.0)


def sparsify(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    min_speedup: float = 1.1,
    min_sparsity: float = 0.5,
    threads: int | None = 1,
    warmup: int = 3,
    repeats: int = 15,
    tolerance: float = 1e-4,
) -> SparsifyReport:
    """Replace, in place, each sparse ``nn.Linear`` of ``model`` whose sparse kernel measures at
    least ``min_speedup`` times faster than dense on ``example_inputs``; return every decision.

    Args:
        model: the model (masked or with zeros in its weights); changed in place. A masked
            layer is replaced by a sparse one holding its masked weight (the mask is dropped).
        example_inputs: inputs as for :func:`prunekit.measure.measure_latency` (a tensor, a
            tuple of arguments or a mapping of keyword arguments), at the batch size that matters.
        min_speedup: dense median time / sparse median time needed to replace a layer.
        min_sparsity: layers less sparse than this are not timed.
        threads: CPU threads while timing (process-wide, restored after); None keeps them.
        warmup, repeats: untimed calls, then interleaved timed rounds (medians are compared).
        tolerance: outputs of a sparse kernel may differ from dense by this times the largest
            output magnitude (at least 1), or 16 machine epsilons for low precision.

    The replacements are inference modules: train the dense model, sparsify for deployment.
    """
    _check(min_speedup, min_sparsity, threads, tolerance, (warmup, repeats))
    options = _Options(min_speedup, min_sparsity, warmup, repeats, tolerance)
    decisions: list[LayerDecision] = []
    with eval_mode(model), torch.inference_mode(), torch_threads(threads):
        inputs, before = _capture(model, example_inputs)
        modules = dict(model.named_modules())
        replacements: list[tuple[nn.Module, nn.Module]] = []
        for name, x in inputs.items():
            decision, new = _decide(name, modules[name], x, options)
            decisions.append(decision)
            if new is not None:
                replacements.append((modules[name], new))
        for old, new in replacements:
            _replace(model, old, new)
        after = forward(model, example_inputs)
    device = next((str(x.device) for x in inputs.values()), "cpu")
    return SparsifyReport(tuple(decisions), device, threads, _max_abs_diff(before, after))


def densify(model: nn.Module) -> list[str]:
    """Undo :func:`sparsify`: replace, in place, every :class:`SparseLinear` and
    :class:`SparseConv2d` of ``model`` by the equivalent dense layer; return the names
    replaced. (A 2:4 :class:`SemiStructuredLinear` is left as it is.)"""
    found = [
        (n, m) for n, m in model.named_modules() if isinstance(m, (SparseLinear, SparseConv2d))
    ]
    for _, module in found:
        dense = module.to_linear() if isinstance(module, SparseLinear) else module.to_conv()
        _replace(model, module, dense)
    return [name for name, _ in found]
