"""Finding removable residual blocks: hand-built nets with hand-worked answers, torchvision,
Hugging Face; block groups; skipping."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import UnsupportedLayerError
from prunekit.graph.blocks import block_groups, find_residual_blocks, hidden_output, skipping


class Residual(nn.Module):
    """``x + fc2(relu(fc1(x)))``."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class Plain(nn.Module):
    """Same shape in and out, no residual: never a candidate."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(x))


class AddsParameter(nn.Module):
    """``x + bias``: an add of the input, but the other operand is not computed from it."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.ones(4))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class Outer(nn.Module):
    """A residual block around a stack of two residual blocks: only ``Outer`` is a candidate."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(Residual(), Residual())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.inner(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.res = Residual()
        self.plain = Plain()
        self.bias = AddsParameter()
        self.outer = Outer()
        self.stage = nn.Sequential(Residual(), Residual())  # a stack, not a block
        self.wrapped = nn.Sequential(Residual())  # a wrapper: its block is the candidate
        self.widen = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for module in (self.res, self.plain, self.bias, self.outer, self.stage, self.wrapped):
            h = module(h)
        return self.head(self.widen(h))


class Shared(nn.Module):
    """The same residual block called twice is not a candidate."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Residual()

    def forward(self, x: Tensor) -> Tensor:
        return self.block(self.block(x))


def test_hand_built_candidates() -> None:
    torch.manual_seed(0)
    blocks = find_residual_blocks(Net(), torch.randn(2, 3))
    names = [b.name for b in blocks]
    assert names == ["res", "outer", "stage.0", "stage.1", "wrapped.0"]
    assert all(b.shape == (2, 4) and b.tuple_length == 0 for b in blocks)
    assert blocks[1].type == "Outer"


def test_include_exclude_and_shared_blocks() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3)
    names = [b.name for b in find_residual_blocks(Net(), x, exclude=["stage.*"])]
    assert names == ["res", "outer", "wrapped.0"]
    names = [b.name for b in find_residual_blocks(Net(), x, include=["stage.*"])]
    assert names == ["stage.0", "stage.1"]
    assert find_residual_blocks(Shared(), torch.randn(2, 4)) == []


def test_the_model_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    net = Net().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    find_residual_blocks(net, torch.randn(2, 3))
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_block_groups_have_one_unit_covering_every_parameter() -> None:
    torch.manual_seed(0)
    net = Net()
    blocks = find_residual_blocks(net, torch.randn(2, 3))
    groups = block_groups(net, blocks)
    assert [g.name for g in groups] == [b.name for b in blocks]
    outer = groups[1]
    assert outer.n_units == 1 and outer.layer == "outer"
    assert len(outer.members) == 8  # two inner blocks x (2 weights + 2 biases)
    values = {m.tensor: net.get_parameter(m.tensor).detach().abs() for m in outer.members}
    expected = sum(float(p.detach().abs().sum()) for p in net.outer.parameters())
    assert float(outer.reduce(values, "sum")) == pytest.approx(expected, rel=1e-6)


def test_skipping_passes_the_input_through_and_cleans_up() -> None:
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3)
    with skipping(net.res, net.outer):
        skipped = net(x)
    h = net.stem(x)
    h = net.wrapped(net.stage(net.bias(net.plain(h))))
    torch.testing.assert_close(skipped, net.head(net.widen(h)), rtol=0, atol=0)
    assert not net.res._forward_hooks


def test_skipping_refuses_an_output_without_hidden_states() -> None:
    class Dict(nn.Module):
        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"y": x}

    block = Dict()
    with skipping(block), pytest.raises(UnsupportedLayerError, match="Dict returned dict"):
        block(torch.ones(1))
    assert hidden_output({"y": torch.ones(1)}) == (None, 0)


def test_torchvision_resnet18_candidates() -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    tvm = pytest.importorskip("torchvision.models")
    blocks = find_residual_blocks(tvm.resnet18(weights=None), torch.randn(1, 3, 64, 64))
    # the first block of stages 2-4 has a downsampling shortcut: not the identity
    assert [b.name for b in blocks] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_hugging_face_layers_are_the_candidates(arch: str) -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if arch == "bert":
        config = transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32,
        )  # fmt: skip
        model, prefix, kind = transformers.BertModel(config), "encoder.layer", "BertLayer"
    else:
        config = transformers.LlamaConfig(
            vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1,
        )  # fmt: skip
        model, prefix, kind = (
            transformers.LlamaForCausalLM(config),
            "model.layers",
            "LlamaDecoderLayer",
        )
    blocks = find_residual_blocks(model.eval(), torch.randint(0, 50, (1, 6)))
    # BertAttention is residual too, but nested in BertLayer; the encoder is a stack
    assert [b.name for b in blocks] == [f"{prefix}.0", f"{prefix}.1"]
    assert {b.type for b in blocks} == {kind}
