"""Pruning and INT8 together: dense FP32 vs pruned FP32 vs pruned INT8 in onnxruntime.

1. The shipped Fashion-MNIST small VGG (``src/prunekit/recipes/models/small-vgg-fashion-mnist``):
   ``prunekit.prune(model, x, granularity="channel", target={"macs": 0.5})`` (magnitude scores),
   fine-tuned ``--finetune-steps`` Adam steps on the training split; dense and pruned exported to
   ONNX (parity-checked), the pruned one quantised by :func:`prunekit.export.quantize.quantize_onnx`
   (QDQ, per-channel weights, min-max calibration on 512 training images); test-set accuracy
   (10,000 images) of all three in onnxruntime, and latency at batch 1 and 32 (one thread,
   interleaved, medians).
2. torchvision ``resnet50`` (``weights=None``, no data: latency only), the same three variants at
   batch 1 (and 8 with ``--resnet-batch``), calibrated on random normal inputs (the ranges, hence
   the accuracy, mean nothing here; the kernels and their speed do).

    OMP_NUM_THREADS=1 python benchmarks/prune_quantize.py [--out runs/bench/prune_quantize]
        [--repeats 30] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.export import export_model, interleaved_latency, runtime_runner
from prunekit.export.quantize import QuantizeReport, compare_int8, quantize_onnx

ROOT = Path(__file__).resolve().parent.parent


def _latencies(files: dict[str, Path], example: torch.Tensor, batch: int, repeats: int) -> dict:
    from contextlib import ExitStack

    with ExitStack() as stack:
        calls = {
            name: stack.enter_context(runtime_runner(path, example, "onnxruntime", batch=batch))
            for name, path in files.items()
        }
        timed = interleaved_latency(calls, warmup=5, repeats=repeats)
    return {name: round(t.median_ms, 3) for name, t in timed.items()}


def _vgg(out: Path, repeats: int, steps: int) -> dict[str, Any]:
    import prunekit
    from prunekit.data import load_dataset, make_loader
    from prunekit.models import build_model
    from prunekit.persist import load
    from prunekit.train import train

    dense = load(
        ROOT / "src/prunekit/recipes/models/small-vgg-fashion-mnist", build_model("small-vgg")
    )
    x = dense.example_input()
    train_loader = make_loader(load_dataset("fashion-mnist", "train"), 64, shuffle=True, seed=0)
    test_loader = make_loader(load_dataset("fashion-mnist", "test"), 256)
    result = prunekit.prune(copy.deepcopy(dense), x, granularity="channel", target={"macs": 0.5})
    pruned = result.model
    train(pruned, train_loader, max_steps=steps, lr=1e-3, progress=False)
    files = {
        "dense fp32": export_model(dense.eval(), x, out / "vgg_dense.onnx").path,
        "pruned fp32": export_model(pruned.eval(), x, out / "vgg_pruned.onnx").path,
    }
    calibration = make_loader(load_dataset("fashion-mnist", "train"), 64, limit=512)
    report: QuantizeReport = quantize_onnx(
        files["pruned fp32"], out / "vgg_pruned.int8.onnx", calibration=calibration,
        evaluation=test_loader,
    )  # fmt: skip
    files["pruned int8"] = report.path
    dense_vs = compare_int8(files["dense fp32"], files["pruned fp32"], test_loader)
    return {
        "model": "small-vgg fashion-mnist",
        "macs_ratio": result.macs_ratio,
        "finetune_steps": steps,
        "accuracy": {
            "dense fp32": dense_vs.fp32_accuracy,
            "pruned fp32": report.fp32_accuracy,
            "pruned int8": report.int8_accuracy,
        },
        "int8_vs_fp32": {"max_abs_diff": report.max_abs_diff, "agreement": report.agreement},
        "bytes": {name: path.stat().st_size for name, path in files.items()},
        "latency_ms_b1": _latencies(files, x[:1], 1, repeats),
        "latency_ms_b32": _latencies(files, x[:1], 32, repeats),
    }


def _resnet50(out: Path, repeats: int) -> dict[str, Any]:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    import prunekit

    torch.manual_seed(0)
    dense: nn.Module = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    result = prunekit.prune(copy.deepcopy(dense), x, granularity="channel", target={"macs": 0.5})
    files = {
        "dense fp32": export_model(dense, x, out / "resnet50_dense.onnx").path,
        "pruned fp32": export_model(result.model.eval(), x, out / "resnet50_pruned.onnx").path,
    }
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.randn(4, 3, 224, 224, generator=generator) for _ in range(4)]
    report = quantize_onnx(files["pruned fp32"], out / "resnet50_pruned.int8.onnx",
                           calibration=calibration)  # fmt: skip
    files["pruned int8"] = report.path
    return {
        "model": "resnet50 (weights=None)",
        "int8_vs_fp32": {"max_abs_diff": report.max_abs_diff, "agreement": report.agreement},
        "bytes": {name: path.stat().st_size for name, path in files.items()},
        "latency_ms_b1": _latencies(files, x, 1, repeats),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | variant | accuracy | MB | ms b1 | ms b32 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for variant, size in row["bytes"].items():
            acc = (row.get("accuracy") or {}).get(variant)
            b32 = row.get("latency_ms_b32", {}).get(variant)
            lines.append(
                f"| {row['model']} | {variant} | "
                f"{'' if acc is None else f'{100 * acc:.2f}%'} | {size / 1e6:.2f} | "
                f"{row['latency_ms_b1'][variant]:.2f} | {'' if b32 is None else f'{b32:.2f}'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/prune_quantize"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows = [_vgg(args.out, args.repeats, args.finetune_steps)]
    print(json.dumps(rows[-1], indent=1), flush=True)
    if not args.skip_resnet:
        rows.append(_resnet50(args.out, args.repeats))
        print(json.dumps(rows[-1], indent=1), flush=True)
    (args.out / "results.json").write_text(
        json.dumps({"rows": rows, "seconds": round(time.time() - start, 1)}, indent=1)
    )
    (args.out / "results.md").write_text(_table(rows) + "\n")
    print(_table(rows))


if __name__ == "__main__":
    main()
