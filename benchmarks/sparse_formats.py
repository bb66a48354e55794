"""Sparse weights that pay? File sizes and CPU latency of a magnitude-pruned MLP.

For a 2-layer MLP (``width`` -> ``width`` -> ``width``, fp32) pruned by weight magnitude to 50,
90 and 95 % unstructured sparsity, 2:4, and 90 % in 16x16 blocks:

- sizes on disk: plain safetensors of the (masked) weights, ``prunekit.io.save`` (the save
  directory: weights in their smallest encoding, implied masks left out, + JSON),
  ``prunekit.sparse.save_compressed``, and the size ``prunekit.measure.sparse_size_bytes``
  reports;
- latency at batch 1 and 8: the dense model (masks baked), every Linear forced to CSR, and the
  model after ``prunekit.sparse.sparsify`` (which keeps a layer dense unless its sparse kernel
  measured >= 1.1x faster); whole-model forward passes, one thread, interleaved, medians;
- the same latency for two small CNNs with 90 % unstructured convolution weights (``--part
  conv``): a ResNet basic block's two 3x3 convolutions and a MobileNetV2 expansion/projection
  pair of 1x1 convolutions.

Run (single-threaded, as documented): ``OMP_NUM_THREADS=1 python benchmarks/sparse_formats.py``
(``--quick``: width 1024; ``--part sizes|mlp|conv``: one part only). Writes
``runs/bench/sparse_formats/results.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from common import ROOT, environment, markdown_table, write_results
from torch import Tensor, nn

from prunekit.io import save
from prunekit.masks import apply_masks
from prunekit.measure import effective_state_dict, sparse_size_bytes
from prunekit.sparse import SparseConv2d, SparseLinear, load_compressed, save_compressed, sparsify
from prunekit.sparse.timing import interleaved_times, paired_speedup

PATTERNS = ("unstructured 50%", "unstructured 90%", "unstructured 95%", "2:4", "blocks 16x16 90%")


def magnitude_mask(weight: Tensor, pattern: str) -> Tensor:
    """Keep the largest weights: globally in the layer, per 4 inputs (2:4) or per 16x16 tile."""
    score = weight.abs()
    if pattern == "2:4":
        groups = score.reshape(score.shape[0], -1, 4)
        top = groups.topk(2, dim=-1).indices
        return torch.zeros_like(groups).scatter(-1, top, 1.0).reshape(weight.shape)
    sparsity = int(pattern.split()[-1].rstrip("%")) / 100
    if pattern.startswith("blocks"):
        rows, cols = weight.shape
        tiles = score.reshape(rows // 16, 16, cols // 16, 16).sum(dim=(1, 3))
        keep = tiles >= tiles.flatten().kthvalue(int(sparsity * tiles.numel()) + 1).values
        return keep.repeat_interleave(16, 0).repeat_interleave(16, 1).float()
    threshold = score.flatten().kthvalue(int(sparsity * score.numel()) + 1).values
    return (score >= threshold).float()


def masked_mlp(width: int, pattern: str) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
    masks = {f"{i}.weight": magnitude_mask(model[i].weight.detach(), pattern) for i in (0, 2)}
    apply_masks(model, masks)
    return model


def baked(model: nn.Module, width: int) -> nn.Sequential:
    """A plain copy of the masked model (the masked weights, no parametrization)."""
    plain = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
    plain.load_state_dict(effective_state_dict(model))
    return plain


def forced_csr(plain: nn.Sequential) -> nn.Sequential:
    csr = copy.deepcopy(plain)
    for i in (0, 2):
        csr[i] = SparseLinear(plain[i].weight, plain[i].bias)
    return csr


def sizes(model: nn.Module, folder: Path) -> dict[str, int]:
    dense = folder / "dense.safetensors"
    safetensors.torch.save_file(effective_state_dict(model), dense)
    start = time.perf_counter()
    saved = save(model, folder / "io_save")
    io_save_ms = int((time.perf_counter() - start) * 1e3)
    start = time.perf_counter()
    compressed = save_compressed(model, folder / "compressed.safetensors")
    saved_ms = int((time.perf_counter() - start) * 1e3)
    start = time.perf_counter()
    load_compressed(compressed)
    return {
        "dense": dense.stat().st_size,
        "io_save": sum(p.stat().st_size for p in saved.iterdir()),
        "compressed": compressed.stat().st_size,
        "measure_sparse_size": sparse_size_bytes(model),
        "save_compressed_ms": saved_ms,
        "io_save_ms": io_save_ms,
        "load_compressed_ms": int((time.perf_counter() - start) * 1e3),
    }


def latency(plain: nn.Sequential, csr: nn.Sequential, x: Tensor, repeats: int) -> dict[str, Any]:
    """Whole-model times of the dense model, a control copy, ``csr`` (every layer forced
    sparse) and the model after ``sparsify``, interleaved; ratios to dense."""
    chosen = copy.deepcopy(plain)
    report = sparsify(chosen, x, threads=1, repeats=repeats)
    models = {
        "dense": plain,
        "dense again": copy.deepcopy(plain),  # a control: its ratio to dense shows the noise
        "csr": csr,
        "sparsify": chosen,
    }
    with torch.inference_mode():
        calls: dict[str, Callable[[], object]] = {k: (lambda m=m: m(x)) for k, m in models.items()}
        rounds = interleaved_times(calls, warmup=3, repeats=repeats)
        diff = float((models["sparsify"](x) - plain(x)).abs().max())
    return {
        "ms": {k: statistics.median(v) for k, v in rounds.items()},
        "ratio_to_dense": {k: 1 / paired_speedup(rounds["dense"], v) for k, v in rounds.items()},
        "replaced": report.replaced,
        "decisions": [d.note for d in report.layers],
        "max_abs_diff": diff,
    }


def conv_nets() -> dict[str, tuple[nn.Sequential, tuple[int, int, int]]]:
    """Two CNN pieces with 90 % of each convolution's weights (smallest magnitude) zeroed, and
    the input shape (channels, height, width) of each."""
    torch.manual_seed(0)
    nets = {
        "resnet block 64ch 3x3 @28x28": (
            nn.Sequential(
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1)
            ),
            (64, 28, 28),
        ),
        "mobilenet 1x1 32-192-32 @28x28": (
            nn.Sequential(nn.Conv2d(32, 192, 1), nn.ReLU6(), nn.Conv2d(192, 32, 1)),
            (32, 28, 28),
        ),
        "mobilenet 1x1 160-960-160 @7x7": (
            nn.Sequential(nn.Conv2d(160, 960, 1), nn.ReLU6(), nn.Conv2d(960, 160, 1)),
            (160, 7, 7),
        ),
    }
    for net, _ in nets.values():
        for conv in (net[0], net[2]):
            weight = conv.weight.detach()
            with torch.no_grad():
                conv.weight.mul_(
                    magnitude_mask(weight.reshape(weight.shape[0], -1), "unstructured 90%").reshape(
                        weight.shape
                    )
                )
    return nets


def forced_csr_conv(net: nn.Sequential) -> nn.Sequential:
    csr = copy.deepcopy(net)
    for i in (0, 2):
        csr[i] = SparseConv2d(net[i])
    return csr


def run(width: int, repeats: int, parts: tuple[str, ...]) -> dict[str, Any]:
    torch.set_num_threads(1)
    results: dict[str, Any] = {"environment": environment(), "width": width, "patterns": {}}
    for pattern in PATTERNS if {"sizes", "mlp"} & set(parts) else ():
        model = masked_mlp(width, pattern)
        entry: dict[str, Any] = {}
        if "sizes" in parts:
            with tempfile.TemporaryDirectory() as folder:
                entry["sizes"] = sizes(model, Path(folder))
        if "mlp" in parts:
            plain = baked(model, width)
            entry["latency"] = {
                f"batch {b}": latency(plain, forced_csr(plain), torch.randn(b, width), repeats)
                for b in (1, 8)
            }
        results["patterns"][pattern] = entry
        print(pattern, entry, flush=True)
    if "conv" in parts:
        results["conv"] = {
            name: {
                f"batch {b}": latency(net, forced_csr_conv(net), torch.randn(b, *shape), repeats)
                for b in (1, 8)
            }
            for name, (net, shape) in conv_nets().items()
        }
        print(results["conv"], flush=True)
    results["load"] = [round(v, 1) for v in os.getloadavg()]
    return results


LATENCY_COLUMNS = (
    "batch",
    "dense ms",
    "dense again x dense",
    "csr ms",
    "csr x dense",
    "sparsify ms",
    "sparsify x dense",
    "layers replaced",
)


def markdown(results: dict[str, Any]) -> str:
    size_rows, speed_rows = [], []
    for pattern, entry in results["patterns"].items():
        s = entry.get("sizes")
        mb = 1e6
        if s:
            size_rows.append(
                [
                    pattern,
                    s["dense"] / mb,
                    s["io_save"] / mb,
                    s["compressed"] / mb,
                    s["io_save"] / s["dense"],
                    s["compressed"] / s["dense"],
                    s["measure_sparse_size"] / s["dense"],
                    s["io_save_ms"],
                ]
            )
        for batch, speed in entry.get("latency", {}).items():
            ms, ratio = speed["ms"], speed["ratio_to_dense"]
            speed_rows.append(
                [
                    pattern,
                    batch,
                    ms["dense"],
                    ratio["dense again"],
                    ms["csr"],
                    ratio["csr"],
                    ms["sparsify"],
                    ratio["sparsify"],
                    ", ".join(speed["replaced"]) or "none",
                ]
            )
    width = results["width"]
    conv_rows = [
        [
            name,
            batch,
            speed["ms"]["dense"],
            speed["ratio_to_dense"]["dense again"],
            speed["ms"]["csr"],
            speed["ratio_to_dense"]["csr"],
            speed["ms"]["sparsify"],
            speed["ratio_to_dense"]["sparsify"],
            ", ".join(speed["replaced"]) or "none",
        ]
        for name, by_batch in results.get("conv", {}).items()
        for batch, speed in by_batch.items()
    ]
    return "\n\n".join(
        [
            f"MLP {width}-{width}-{width} fp32, magnitude masks; sizes in MB",
            markdown_table(
                [
                    "pattern",
                    "dense",
                    "io.save",
                    "compressed",
                    "io.save/dense",
                    "compressed/dense",
                    "measure sparse/dense",
                    "io.save ms",
                ],
                size_rows,
            ),
            "latency in ms (1 thread, interleaved rounds, medians); x dense = median over rounds "
            "of time / dense time of the same round; 'dense again' is a second dense copy (a "
            f"control: its distance from 1.00 is the noise); load average {results['load']}",
            markdown_table(["pattern", *LATENCY_COLUMNS], speed_rows),
            "CNN pieces, 90 % unstructured convolution weights (magnitude), fp32; latency as above",
            markdown_table(["network", *LATENCY_COLUMNS], conv_rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 1024 instead of 4096")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--part", choices=("sizes", "mlp", "conv"), action="append", help="default: all three"
    )
    args = parser.parse_args()
    width = 1024 if args.quick else 4096
    out = (
        args.out
        or ROOT.parent / "runs" / "bench" / f"sparse_formats{'-quick' if args.quick else ''}"
    )
    results = run(width, args.repeats, tuple(args.part or ("sizes", "mlp", "conv")))
    write_results(out, results, markdown(results))


if __name__ == "__main__":
    main()
