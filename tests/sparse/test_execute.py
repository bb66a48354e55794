"""sparsify: replaces only measured winners, keeps outputs, reports every decision honestly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks.parametrize import apply_masks
from prunekit.sparse import SparseLinear, densify, save_compressed, sparsify


def close(a: Tensor, b: Tensor, tol: float = 1e-5) -> bool:
    """Equal up to floating-point rounding: ``|a - b| <= tol * (1 + |b|)`` everywhere."""
    return a.shape == b.shape and bool(((a.float() - b.float()).abs() <= tol * (1 + b.abs())).all())


def _random_masked_mlp(width: int, sparsity: float) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 16))
    g = torch.Generator().manual_seed(0)
    apply_masks(
        model,
        {
            "0.weight": (torch.rand(width, width, generator=g) >= sparsity).float(),
            "2.weight": (torch.rand(16, width, generator=g) >= sparsity).float(),
        },
    )
    return model


def test_replaced_model_gives_the_dense_outputs() -> None:
    model = _random_masked_mlp(128, 0.9)
    x = torch.randn(8, 128)
    expected = model(x).detach()
    # any measured time passes a tiny min_speedup, so every candidate layer is replaced
    report = sparsify(model, x, min_speedup=1e-9, repeats=3, warmup=1)
    assert report.replaced == ["0", "2"]
    assert isinstance(model[0], SparseLinear) and isinstance(model[2], SparseLinear)
    assert close(model(x), expected)
    assert report.max_abs_diff < 1e-4
    first = report.layers[0]
    assert first.shape == (128, 128) and first.sparsity == pytest.approx(0.9, abs=0.01)
    assert first.dense_ms is not None and set(first.kernels_ms) == {"csr"}
    assert first.speedup == first.speedups["csr"] > 0


def test_nothing_is_replaced_when_the_measurement_does_not_say_so() -> None:
    model = _random_masked_mlp(64, 0.9)
    report = sparsify(model, torch.randn(2, 64), min_speedup=1e9, repeats=3, warmup=1)
    assert report.replaced == []
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))
    assert all("< min_speedup 1000000000.0" in d.note for d in report.layers)
    assert all(d.speedup is None for d in report.layers)


def test_dense_layers_are_not_timed() -> None:
    model = nn.Sequential(nn.Linear(32, 32))
    report = sparsify(model, torch.randn(2, 32), repeats=2)
    (decision,) = report.layers
    assert decision.chosen == "dense" and decision.dense_ms is None
    assert decision.note == "sparsity 0.000000 < min_sparsity 0.5: not timed"


def _two_of_four(rows: int, cols: int) -> Tensor:
    g = torch.Generator().manual_seed(1)
    order = torch.rand(rows, cols // 4, 4, generator=g).argsort(-1)
    keep = torch.zeros(rows, cols // 4, 4, dtype=torch.bool).scatter(-1, order[..., :2], True)
    return torch.where(keep.reshape(rows, cols), torch.randn(rows, cols, generator=g), 0.0)


def test_two_of_four_on_cpu_is_reported_without_a_speed_claim() -> None:
    layer = nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight.copy_(_two_of_four(64, 64))
    report = sparsify(nn.Sequential(layer), torch.randn(4, 64), repeats=2, warmup=1)
    (decision,) = report.layers
    assert "2:4 pattern: semi-structured kernels need CUDA, none on CPU" in decision.note
    assert "2:4" not in decision.kernels_ms


def test_block_sparse_weights_get_a_block_csr_candidate() -> None:
    g = torch.Generator().manual_seed(2)
    keep = (torch.rand(16, 16, generator=g) < 0.2).repeat_interleave(8, 0).repeat_interleave(8, 1)
    layer = nn.Linear(128, 128)
    with torch.no_grad():
        layer.weight.copy_(torch.where(keep, torch.randn(128, 128, generator=g), 0.0))
    model = nn.Sequential(layer)
    x = torch.randn(4, 128)
    expected = model(x).detach()
    report = sparsify(model, x, min_speedup=1e-9, repeats=2, warmup=1)
    assert set(report.layers[0].kernels_ms) == {"csr", "bsr8x8"}
    assert close(model(x), expected)


def test_dense_convolutions_are_reported_and_not_timed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    report = sparsify(model, torch.randn(1, 3, 8, 8), repeats=2)
    conv = report.layers[0]
    assert (conv.name, conv.kind, conv.chosen) == ("0", "Conv2d", "dense")
    assert conv.note.endswith("< min_sparsity 0.5: not timed")
    assert isinstance(model[0], nn.Conv2d)


def test_report_table_and_plain_data() -> None:
    model = _random_masked_mlp(64, 0.9)
    report = sparsify(model, torch.randn(2, 64), min_speedup=1e9, repeats=2, warmup=1)
    lines = report.table().splitlines()
    assert lines[0].split()[:3] == ["layer", "sparsity", "dense"]
    assert len(lines) == 3
    data = report.to_dict()
    assert data["threads"] == 1 and data["device"] == "cpu"
    assert [layer["name"] for layer in data["layers"]] == ["0", "2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_speedup": 0}, "min_speedup must be > 0"),
        ({"min_sparsity": 1.5}, r"min_sparsity must be in \[0, 1\]"),
        ({"threads": 0}, "threads must be >= 1 or None"),
        ({"repeats": 0}, "repeats >= 1"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sparsify(nn.Linear(2, 2), torch.randn(1, 2), **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_ninety_percent_4096_mlp_at_batch_8_is_at_least_twice_as_fast() -> None:
    model = _random_masked_mlp(4096, 0.9)
    report = sparsify(model, torch.randn(8, 4096), repeats=9)
    first = report.layers[0]
    assert first.chosen == "csr"
    assert first.speedup is not None and first.speedup >= 2.0


@pytest.mark.gpu
def test_two_of_four_on_cuda_is_a_timed_candidate() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    layer = nn.Linear(1024, 1024).half().cuda()
    with torch.no_grad():
        layer.weight.copy_(_two_of_four(1024, 1024).half())
    x = torch.randn(256, 1024, device="cuda", dtype=torch.float16)
    report = sparsify(nn.Sequential(layer), x, min_speedup=1e-9, repeats=5)
    assert "2:4" in report.layers[0].kernels_ms
    assert report.max_abs_diff < 0.05


def test_densify_undoes_sparsify_and_a_sparsified_model_is_not_saved(tmp_path: Path) -> None:
    model = _random_masked_mlp(64, 0.9)
    x = torch.randn(2, 64)
    expected = model(x).detach()
    sparsify(model, x, min_speedup=1e-9, repeats=2, warmup=1)
    with pytest.raises(ConfigError, match="has layout torch.sparse_csr; save the model before"):
        save_compressed(model, tmp_path / "m.safetensors")
    assert densify(model) == ["0", "2"]
    assert isinstance(model[0], nn.Linear) and not isinstance(model[0], SparseLinear)
    assert close(model(x), expected)


def test_a_kernel_that_fails_on_the_input_is_reported_and_skipped() -> None:
    layer = nn.Linear(64, 64).to(torch.bfloat16)  # CPU CSR matmul has no bfloat16 kernel
    with torch.no_grad():
        layer.weight.copy_(torch.where(torch.rand(64, 64) < 0.9, 0.0, layer.weight.float()))
    model = nn.Sequential(layer)
    report = sparsify(model, torch.randn(2, 64, dtype=torch.bfloat16), min_speedup=1e-9, repeats=2)
    (decision,) = report.layers
    assert decision.chosen == "dense" and decision.kernels_ms == {}
    assert decision.note.startswith("csr failed on the input (NotImplementedError")
    assert model[0] is layer
