"""Property: after any ``prunekit.prune`` call, successful or refused, the user's model is
exactly as it was: values, object identities, devices, dtypes, ``requires_grad``, train/eval
flags and the number of hooks registered on every module. Failing calls are part of the
property: a bad sparsity, a model the tracer cannot follow, a branch on input values that
breaks surgery, NaN inputs or NaN scoring data, inputs of the wrong shape."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import prunekit
from prunekit.errors import PrunekitError

HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)  # fmt: skip


class Net(nn.Module):
    """Conv -> BN -> ReLU -> Conv -> pool -> Linear; ``kind`` adds what makes a call fail."""

    def __init__(self, width: int, kind: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, 3)
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(torch.relu(self.bn(self.conv1(x))))
        if self.kind == "untraceable":
            h = torch.fft.fft(h).real  # no rule maps units through an FFT
        if self.kind == "branch" and bool((x < -2).any()):
            h = h[:, :1].expand_as(h)  # reads channel 0 by position on another path
        return self.head(h.mean((2, 3)))


def hooks(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {
        name: tuple(len(getattr(m, d)) for d in HOOK_DICTS)
        for name, m in model.named_modules(remove_duplicate=False)
    }


def state(model: nn.Module) -> dict[str, Any]:
    tensors = {
        name: (id(t), str(t.device), t.dtype, t.requires_grad, t.detach().clone())
        for name, t in (
            *model.named_parameters(remove_duplicate=False),
            *model.named_buffers(remove_duplicate=False),
        )
    }
    flags = {n: m.training for n, m in model.named_modules(remove_duplicate=False)}
    return {"tensors": tensors, "flags": flags, "hooks": hooks(model)}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if (
        a["flags"] != b["flags"]
        or a["hooks"] != b["hooks"]
        or a["tensors"].keys() != b["tensors"].keys()
    ):
        return False
    for name, (ident, device, dtype, grad, values) in a["tensors"].items():
        other = b["tensors"][name]
        if (ident, device, dtype, grad) != other[:4] or not torch.equal(values, other[4]):
            return False
    return True


CASES = ("ok", "bad_sparsity", "untraceable", "branch", "nan_inputs", "nan_data")


@st.composite
def calls(draw: st.DrawFn) -> tuple[nn.Module, Tensor, dict[str, Any]]:
    case = draw(st.sampled_from(CASES))
    torch.manual_seed(draw(st.integers(0, 3)))
    net = Net(draw(st.integers(2, 5)), case)
    if draw(st.booleans()):
        net.double()
    dtype = next(net.parameters()).dtype
    for p in net.parameters():
        p.requires_grad_(draw(st.booleans()))
    for m in net.modules():
        m.training = draw(st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        net.conv1.register_forward_hook(lambda m, i, o: None)
        net.register_forward_pre_hook(lambda m, i: None)
    if draw(st.booleans()):
        net.bn.register_full_backward_hook(lambda m, gi, go: None)
    x = torch.rand(2, 3, 5, 5, dtype=dtype)  # in [0, 1): the branch is not taken on it
    options: dict[str, Any] = {
        "granularity": draw(st.sampled_from(["channel", "unstructured"])),
        "sparsity": draw(st.sampled_from([0.25, 0.5])),
    }
    if case == "bad_sparsity":
        options["sparsity"] = draw(st.sampled_from([1.0, -0.1, float("nan"), 2]))
    if case == "nan_inputs":
        x[0, 0, 0, 0] = float("nan")
    if case == "nan_data":
        batch = torch.rand(2, 3, 5, 5, dtype=dtype)
        batch[1, 2, 3, 4] = float("nan")
        options.update(estimator="taylor", data=[(batch, torch.tensor([0, 1]))])
    return net, x, options


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=calls())
def test_any_prune_call_leaves_the_users_model_as_it_was(
    call: tuple[nn.Module, Tensor, dict[str, Any]],
) -> None:
    net, x, options = call
    before = state(net)
    rng = torch.random.get_rng_state()
    with contextlib.suppress(PrunekitError):
        prunekit.prune(net, x, **options)
    assert same(state(net), before)
    assert torch.equal(torch.random.get_rng_state(), rng) or options.get("data") is not None


def test_inputs_of_the_wrong_shape_are_refused_and_leave_the_model() -> None:
    net = Net(3, "ok")
    net.conv1.register_forward_hook(lambda m, i, o: None)
    before = state(net)
    with pytest.raises(PrunekitError, match=r"expects \(N, 3, H, W\) float32, given"):
        prunekit.prune(net, torch.rand(2, 4, 5, 5), granularity="channel", sparsity=0.5)
    assert same(state(net), before)
