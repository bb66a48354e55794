import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import masks_of
from prunekit.methods import DSTConfig, DynamicSparse, erk_densities, keep_counts, original_tensor
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


# --- Erdős–Rényi-Kernel distribution (Evci et al. 2020, Sec. 3), worked by hand ----------------


def test_erk_two_linear_layers_by_hand() -> None:
    # a: 4x4 -> (4 + 4) / 16 = 1/2; b: 8x8 -> 16 / 64 = 1/4. Keep 12 of 80 (sparsity 0.85):
    # eps * (1/2 * 16 + 1/4 * 64) = eps * 24 = 12 -> eps = 1/2 -> densities 1/4 and 1/8.
    shapes = {"a": (4, 4), "b": (8, 8)}
    assert erk_densities(shapes, 0.85) == pytest.approx({"a": 0.25, "b": 0.125})
    assert keep_counts(shapes, 0.85, "erk") == {"a": 4, "b": 8}


def test_erk_counts_kernel_sides_of_a_convolution() -> None:
    # conv 2->2, 2x2 kernel: (2 + 2 + 2 + 2) / 16 = 1/2, the same as the 4x4 linear layer above.
    shapes = {"conv": (2, 2, 2, 2), "fc": (8, 8)}
    assert erk_densities(shapes, 0.85) == pytest.approx({"conv": 0.25, "fc": 0.125})


def test_erk_caps_layers_at_dense_and_rescales_the_rest() -> None:
    # a: 2x2 -> 4 / 4 = 1; b: 16x16 -> 32 / 256 = 1/8. Keep 130 of 260: eps = 130 / (4 + 32)
    # = 3.61 would give a a density of 3.61 -> a is kept dense (4), b keeps the other 126.
    shapes = {"a": (2, 2), "b": (16, 16)}
    assert erk_densities(shapes, 0.5) == pytest.approx({"a": 1.0, "b": 126 / 256})
    assert keep_counts(shapes, 0.5, "erk") == {"a": 4, "b": 126}


def test_erk_rounds_by_largest_remainder_to_the_exact_global_count() -> None:
    # a: 20x10 -> 30/200, b: 3x20 -> 23/60; keep 52 of 260: eps = 52 / (30 + 23) = 52/53,
    # so a wants 30 * 52/53 = 29.43 and b 23 * 52/53 = 22.57 -> 29 and 23 (b's remainder is larger).
    assert keep_counts({"a": (20, 10), "b": (3, 20)}, 0.8, "erk") == {"a": 29, "b": 23}


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 40), min_size=2, max_size=4), min_size=1, max_size=5),
    sparsity=st.floats(0.0, 0.99),
)
def test_erk_keeps_exactly_the_global_count(shapes: list[list[int]], sparsity: float) -> None:
    named = {f"l{i}": tuple(s) for i, s in enumerate(shapes)}
    sizes = {n: math.prod(s) for n, s in named.items()}
    counts = keep_counts(named, sparsity, "erk")
    total = sum(sizes.values())
    assert sum(counts.values()) == total - round(sparsity * total)
    assert all(0 <= counts[n] <= sizes[n] for n in named)
    densities = erk_densities(named, sparsity)
    assert all(0.0 <= d <= 1.0 for d in densities.values())


def test_dynamic_sparse_erk_masks_and_keeps_layer_counts() -> None:
    # 0.weight 20x10, 2.weight 3x20 at sparsity 0.8: the hand-worked 29 and 23 above.
    model = _mlp()
    config = DSTConfig(sparsity=0.8, method="set", distribution="erk", update_every=1)
    dst = DynamicSparse(model, config)
    counts = {n: int(m.sum()) for n, m in masks_of(model).items()}
    assert counts == {"0.weight": 29, "2.weight": 23}
    dst.update(model, 0.5)
    assert {n: int(m.sum()) for n, m in masks_of(model).items()} == counts


def test_unknown_distribution_is_refused() -> None:
    with pytest.raises(ConfigError, match="distribution"):
        DSTConfig(distribution="er")  # type: ignore[arg-type]
