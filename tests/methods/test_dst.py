import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import masks_of
from prunekit.methods import DSTConfig, DynamicSparse, original_tensor
from prunekit.train import train

DATA = [
    (torch.randn(16, 10, generator=torch.Generator().manual_seed(i)), torch.arange(16) % 3)
    for i in range(4)
]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_sparsity_constant_across_updates(method: str) -> None:
    model = _mlp()
    dst = DynamicSparse(
        model,
        DSTConfig(sparsity=0.8, method=method, update_every=2, drop_fraction=0.3, end_step=50),
        data=DATA,
    )
    counts = {n: int(m.sum()) for n, m in masks_of(model).items()}
    assert counts == {"0.weight": 40, "2.weight": 12}
    history = [masks_of(model)]

    def on_step(step: int, m: nn.Module) -> None:
        if dst(step, m):
            history.append(masks_of(m))

    train(model, DATA, epochs=3, lr=1e-2, progress=False, on_step=on_step)
    assert dst.updates == 6
    for masks in history:
        assert {n: int(m.sum()) for n, m in masks.items()} == counts
    assert not torch.equal(history[0]["0.weight"], history[-1]["0.weight"])


def test_rigl_grows_where_gradient_is_largest_and_zero_initialises() -> None:
    model = _mlp()
    dst = DynamicSparse(model, DSTConfig(sparsity=0.5, method="rigl"), data=DATA[:1])
    before = masks_of(model)["0.weight"].bool()
    dst.update(model, 0.25)
    after = masks_of(model)["0.weight"].bool()
    grown = after & ~before
    assert int(grown.sum()) > 0
    assert bool((original_tensor(model, "0.weight")[grown] == 0).all())


def test_rigl_needs_data() -> None:
    with pytest.raises(ConfigError, match="needs data"):
        DynamicSparse(_mlp(), DSTConfig(method="rigl"))
