"""Trace a model into the coupling graph of its units.

The model runs once, eagerly, on the example inputs under a :class:`TorchDispatchMode`. Every ATen
operation that touches a labelled tensor is handed to its structural rule
(:mod:`prunekit.graph.structural`), which couples atoms and labels the outputs. Global module hooks
keep the module path of every op (for error messages and ``ignore``). Nothing of the model is
changed: it runs in eval mode under ``no_grad`` and its train/eval flags are restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils.weak import WeakIdKeyDictionary

from prunekit.errors import ConfigError, PrunekitError, UnsupportedLayerError, closest, exclude_hint
from prunekit.graph.aten_args import root, tensor_args, writes_first
from prunekit.graph.atoms import AtomGraph, Slots
from prunekit.graph.finite import check_finite
from prunekit.graph.function_mode import FunctionTracer
from prunekit.graph.meta import shortcut_for
from prunekit.graph.norms import NormSite, find_site
from prunekit.graph.running import (
    call_with,
    composite_attention,
    eval_mode,
    meta_state,
    run_model,
    to_meta,
)
from prunekit.graph.structural.attention import fixed_widths, makes_constants
from prunekit.graph.structural.zeros import output_clean, zero_kind
from prunekit.graph.trace_types import Compute, Family, KeptWhole, StructureTrace


class Tracer(TorchDispatchMode):
    """Runs structural rules on every ATen op (implements :class:`RuleContext`)."""

    def __init__(
        self, model: nn.Module, ignore: Sequence[str], swap: Mapping[str, Tensor] | None = None
    ) -> None:
        super().__init__()
        self.graph = AtomGraph()
        self.labels: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.names: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.families: list[Family] = []
        self.first_use: dict[str, int] = {}
        self.module_names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
        self.ignore = tuple(ignore)
        self.stack: list[str] = []
        self.module_stack: list[nn.Module] = []
        self.input_stack: list[tuple[Any, ...]] = []
        self.norm_sites: list[NormSite] = []
        self.n_ops = 0
        self.op_names: set[str] = set()
        self.dirty: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.zero_memo: dict[tuple[Any, ...], bool] = {}
        self.kept: dict[KeptWhole, None] = {}
        self.suspended = 0
        self._func: Any = None
        self.meta = swap is not None
        self.fake = False
        self._label_tensors(model, swap or {})

    # RuleContext -------------------------------------------------------------------------------
    @property
    def func(self) -> Any:
        return self._func

    def slots(self, t: Any) -> Slots:
        if not isinstance(t, Tensor):
            return ()
        found = self.labels.get(t)
        return found if found is not None else ()

    def set_slots(self, t: Any, slots: Slots) -> None:
        if isinstance(t, Tensor):
            self.labels[t] = tuple(slots)

    def modules(self) -> Sequence[nn.Module]:
        return self.module_stack

    def note(self, why: str, op: str | None = None) -> None:
        self.kept[KeptWhole(op or str(self._func), self.where() or "<top level>", why)] = None

    def is_clean(self, t: Any) -> bool:
        """True if ``t`` is zero wherever it carries a removable atom in the masked model
        (:mod:`prunekit.graph.structural.zeros`); unlabelled tensors are clean."""
        if not isinstance(t, Tensor) or not self.slots(t):
            return True
        return not self.dirty.get(root(t), False)

    def where(self) -> str:
        return self.stack[-1] if self.stack else "<top level>"

    # tracing -----------------------------------------------------------------------------------
    def _label_tensors(self, model: nn.Module, swap: Mapping[str, Tensor]) -> None:
        """Label every floating parameter and buffer (or its stand-in in ``swap``, by name)."""
        seen: dict[int, list[str]] = {}
        tensors: dict[int, tuple[Tensor, bool]] = {}
        named = [
            *((n, t, True) for n, t in model.named_parameters(remove_duplicate=False)),
            *((n, t, False) for n, t in model.named_buffers(remove_duplicate=False)),
        ]
        for name, t, is_param in named:
            if t is None or not t.is_floating_point():
                continue
            t = swap.get(name, t)
            seen.setdefault(id(t), []).append(name)
            tensors[id(t)] = (t, is_param)
        for key, names in seen.items():
            t, is_param = tensors[key]
            slots = []
            for d, n in enumerate(t.shape):
                if n <= 1:
                    continue
                atoms = self.graph.allocate(n)
                self.families.append(
                    Family(names[0], d, atoms.start, tuple(t.shape), is_param, tuple(names[1:]))
                )
                view = [1] * t.dim()
                view[d] = n
                slots.append(torch.arange(atoms.start, atoms.stop).reshape(view))
            self.names[t] = names[0]
            self.labels[t] = tuple(slots)

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        fast = shortcut_for(func, args, kwargs) if self.meta else None
        out = fast(args, kwargs) if fast is not None else func(*args, **kwargs)
        self.n_ops += 1
        if self.suspended:
            return out
        labelled = False
        for t in tensor_args(args, kwargs):
            name = self.names.get(t)
            if name is not None and name not in self.first_use:
                self.first_use[name] = len(self.first_use)
            labelled = labelled or bool(self.labels.get(t))
        if labelled:
            # rules compute on real slot tensors: step out of a FakeTensorMode below this one
            with _disable_current_modes() if self.fake else contextlib.nullcontext():
                self._apply(func, args, kwargs, out)
        return out

    def _apply(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
        from prunekit.graph.structural import rule_for_op

        rule = rule_for_op(func)
        self.op_names.add(str(func))
        if rule is None:
            if any(_matches(n, self.ignore) for n in self.stack):
                self._opaque(args, kwargs)
                return
            raise UnsupportedLayerError(_unsupported_message(func, self.where(), self.stack))
        self._func = func
        marked = len(self.graph.normalised)
        rule(self, args, kwargs, out)
        self._after_write(func, args)
        self._track_zeros(rule, func, args, kwargs, out)
        for slot in self.graph.normalised[marked:]:
            site = find_site(slot, str(func), self.stack, self.input_stack, self.slots)
            if str(func).startswith("aten.convolution"):  # standardised weights read them
                site = dataclasses.replace(site, through=False)
            self.norm_sites.append(site)

    def _after_write(self, func: Any, args: Sequence[Any]) -> None:
        """An in-place op that writes units into a view of a tensor without units (a buffer
        from ``new_empty``, filled piece by piece): the base never receives them, so whatever
        reads the base would see no units while the writer's units are removable. Those units
        are kept (a function rule such as circular ``F.pad`` maps such a call exactly)."""
        dst = args[0] if args else None
        if not isinstance(dst, Tensor) or dst._base is None or not writes_first(func):
            return
        if not self.slots(dst._base) and self.slots(dst):
            for s in self.slots(dst):
                self.graph.fix(s)
            self.note("writes units into a view of a tensor that carries none")

    def _track_zeros(
        self, rule: Any, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any
    ) -> None:
        """Record whether the output is clean (:mod:`prunekit.graph.structural.zeros`); an
        in-place op makes the tensor that owns the memory dirty if it writes non-zeros."""
        from prunekit.graph.structural import pointwise

        in_place = writes_first(func) and bool(args) and isinstance(args[0], Tensor)
        targets = (
            [args[0]] if in_place else [t for t in pytree.tree_leaves(out) if isinstance(t, Tensor)]
        )
        targets = [t for t in targets if self.slots(t)]
        if not targets:
            return
        moves = getattr(rule, "__module__", "").startswith("prunekit.graph.structural")
        kind = zero_kind(str(func), pointwise=rule is pointwise, moves=moves)
        clean = output_clean(kind, self, func, args, kwargs)
        for t in targets:
            owner = root(t)
            if in_place:
                self.dirty[owner] = self.dirty.get(owner, False) or not clean
            elif owner is t:
                self.dirty[t] = not clean

    def _opaque(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """An op without a rule inside an ignored module: its inputs keep their width."""
        self.fix_all((args, kwargs))

    def _fix_widths(self, module: nn.Module, widths: Sequence[tuple[str, int]]) -> None:
        for path, dim in widths:
            t: Any = module
            for attr in path.split("."):
                t = getattr(t, attr, None)
            if isinstance(t, Tensor):
                for s in self.slots(t):
                    if s.dim() > dim and s.shape[dim] > 1:
                        self.graph.fix(s)

    def fix_all(self, tree: Any) -> None:
        for t in pytree.tree_leaves(tree):
            for s in self.slots(t):
                self.graph.fix(s)

    @contextmanager
    def module_scope(self) -> Iterator[None]:
        def pre(module: nn.Module, inputs: Any) -> None:
            name = self.module_names.get(id(module))
            if name is not None:
                self.stack.append(name)
                self.module_stack.append(module)
                self.input_stack.append(tuple(inputs))
                widths = fixed_widths(module)
                if widths:
                    with _disable_current_modes():
                        self._fix_widths(module, widths)

        def post(module: nn.Module, inputs: Any, output: Any) -> None:
            name = self.module_names.get(id(module))
            if name is None:
                return
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
                self.module_stack.pop()
                self.input_stack.pop()
            if makes_constants(module):
                with _disable_current_modes():
                    self.fix_all([*module.parameters(), *module.buffers()])
                    for t in pytree.tree_leaves(output):
                        self.set_slots(t, ())
            elif name and self.ignore and _matches(name, self.ignore):
                with _disable_current_modes():
                    self.fix_all(output)

        from torch.nn.modules.module import (
            register_module_forward_hook,
            register_module_forward_pre_hook,
        )

        handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _unsupported_message(func: Any, where: str, stack: Sequence[str]) -> str:
    name = str(func)
    packet = name.rsplit(".", 1)[0] if name.count(".") >= 2 else name
    return (
        f"structural tracing cannot map units through the operation {name!r} called in module "
        f"{where!r} (module path: {' > '.join(stack) or '<top level>'}). Declare how it maps "
        f"units: prunekit.graph.structural.OP_RULES.register({packet!r}, rule) (for an elementwise "
        f"op, rule=prunekit.graph.structural.pointwise), {exclude_hint(where)}"
    )


def check_ignore(model: nn.Module, ignore: Sequence[str]) -> None:
    """Raise :class:`~prunekit.errors.ConfigError` for a pattern that matches no module of
    ``model``, with a did-you-mean over its module names. ``ignore`` is what the ``exclude``
    option becomes, in structural pruning and for masks alike, so the message says ``exclude``.
    """
    names = [n for n, _ in model.named_modules() if n]
    for pattern in ignore:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            hint = closest(pattern, names)
            raise ConfigError(f"exclude pattern {pattern!r} matches no module of the model{hint}")


def trace(
    model: nn.Module,
    example_inputs: Any,
    *,
    ignore: Sequence[str] = (),
    compute: Compute = "meta",
) -> StructureTrace:
    """Run ``model`` once and record how its units are coupled.

    The model's outputs keep their shape (so the final classifier's output units are never
    pruned); modules matching an ``ignore`` glob pattern keep the width of their outputs.

    Labels need shapes, not values, so by default the run computes nothing: parameters,
    buffers and inputs are replaced by ``meta`` tensors for the call
    (:func:`~prunekit.graph.running.call_with`; every tensor of the model is put back, aliased
    modules included), and every op only infers its output's shape. A model whose forward
    depends on values (``if x.sum() > 0``, ``x[mask]``) or makes CPU tensors of its own cannot
    run on meta tensors; it is traced again with real computation (``compute="real"`` forces
    that; ``"fake"`` uses a ``FakeTensorMode`` instead of meta tensors). Example inputs holding
    NaN or infinite values are refused (:class:`~prunekit.errors.DataError`) before anything runs.
    """
    if isinstance(ignore, str):
        ignore = (ignore,)
    if compute not in ("meta", "fake", "real"):
        raise ConfigError(f"compute must be 'meta', 'fake' or 'real', got {compute!r}")
    check_ignore(model, ignore)
    check_finite(example_inputs, "example inputs")
    if compute != "real":
        try:
            return _run_trace(model, example_inputs, ignore, compute)
        except PrunekitError:
            raise
        except Exception:  # value-dependent forward (data-dependent shapes, .item()): run it
            return _run_trace(model, example_inputs, ignore, "real")
    return _run_trace(model, example_inputs, ignore, "real")


def _run_trace(
    model: nn.Module, example_inputs: Any, ignore: Sequence[str], compute: Compute
) -> StructureTrace:
    swap = meta_state(model) if compute == "meta" else None
    tracer = Tracer(model, ignore, swap)
    tracer.fake = compute == "fake"
    compute_mode: Any = (
        FakeTensorMode(allow_non_fake_inputs=True)
        if compute == "fake"
        else contextlib.nullcontext()
    )
    with eval_mode(model), torch.no_grad(), composite_attention():
        with tracer.module_scope(), compute_mode, tracer, FunctionTracer(tracer):
            if swap is not None:
                output = call_with(model, swap, to_meta(example_inputs))
            else:
                output = run_model(model, example_inputs)
        tracer.fix_all(output)
    return StructureTrace(
        tracer.graph,
        tracer.families,
        tracer.first_use,
        tracer.n_ops,
        tracer.op_names,
        tracer.norm_sites,
        list(tracer.kept),
    )
