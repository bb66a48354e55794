"""Export and runtime latency: torchvision classifiers, dense and channel-pruned to half the MACs,
exported to ONNX, checked in onnxruntime, and timed there.

For each model (``weights=None``, one 1x3x224x224 input), in a fresh single-threaded process per
model with a time limit:

1. ``prunekit.prune(model, x, granularity="channel", target={"macs": 0.5}, metrics=False)``
   on a copy of the dense model (magnitude scores, structural surgery, verified), and again
   with ``round_to=8`` (kept channels per group a multiple of 8);
2. :func:`prunekit.export.export_model` of the dense and of the pruned model to ONNX (dynamic
   batch; the parity check runs onnxruntime at batch 1 and 3 against PyTorch, atol 1e-4 scaled
   by ``max(1, max |output|)``), recording the exporter that worked and the largest relative
   difference;
3. latency at batch 1 with one thread: onnxruntime dense, pruned and pruned with ``round_to=8``,
   and PyTorch eager dense and pruned, interleaved (:func:`prunekit.export.interleaved_latency`:
   one call of each per round, order rotated), 5 warm-up rounds, medians over ``--repeats``
   rounds.

Rows are appended to ``<out>/results.json`` as each model finishes (a rerun skips models already
there); ``<out>/results.md`` holds the table.

    OMP_NUM_THREADS=1 python benchmarks/export_sweep.py [--out runs/bench/export_sweep]
        [--only resnet18 vit_b_16] [--timeout 1200] [--repeats 30]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from common import run_per_model

ROOT = Path(__file__).resolve().parent
MODELS = (
    "resnet18",
    "mobilenet_v3_small",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "mnasnet1_0",
    "efficientnet_b0",
    "regnet_y_400mf",
    "resnet50",
    "densenet121",
    "convnext_tiny",
    "vgg11_bn",
    "swin_t",
    "vit_b_16",
)


def _build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    return model, torch.randn(1, 3, 224, 224)


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{type(err).__name__}: {text}"


def run_one(name: str, repeats: int) -> dict[str, Any]:
    """Prune, export both models, check them and time them; a failing stage is recorded."""
    import prunekit
    from prunekit.export import export_model, interleaved_latency, runtime_runner
    from prunekit.measure import count_macs, count_params

    torch.set_num_threads(1)
    dense, x = _build(name)
    row: dict[str, Any] = {"model": name, "params": count_params(dense)}
    stage = "prune"
    try:
        start = time.perf_counter()
        result = prunekit.prune(
            copy.deepcopy(dense), x, granularity="channel", target={"macs": 0.5}, metrics=False
        )
        row["prune_s"] = time.perf_counter() - start
        pruned = result.model
        row["macs_ratio"] = count_macs(pruned, x).total / count_macs(dense, x).total
        row["params_ratio"] = count_params(pruned) / row["params"]
        stage = "prune round_to=8"
        rounded = prunekit.prune(
            copy.deepcopy(dense), x, granularity="channel", target={"macs": 0.5},
            round_to=8, metrics=False,
        ).model  # fmt: skip
        row["macs_ratio_r8"] = count_macs(rounded, x).total / count_macs(dense, x).total
        with tempfile.TemporaryDirectory(prefix="export-sweep-") as folder:
            paths = {}
            for kind, model in (("dense", dense), ("pruned", pruned), ("pruned_r8", rounded)):
                stage = f"export {kind}"
                report = export_model(model, x, Path(folder) / f"{kind}.onnx")
                paths[kind] = report.path
                row[kind] = {
                    "exporter": report.exporter,
                    "max_abs_diff": report.max_abs_diff,
                    "max_rel_diff": report.max_rel_diff,
                    "export_s": report.seconds,
                    "onnx_mb": report.path.stat().st_size / 1e6,
                }
            stage = "latency"
            with (
                runtime_runner(paths["dense"], x, "onnxruntime") as ort_dense,
                runtime_runner(paths["pruned"], x, "onnxruntime") as ort_pruned,
                runtime_runner(paths["pruned_r8"], x, "onnxruntime") as ort_r8,
                runtime_runner(dense, x, "torch") as torch_dense,
                runtime_runner(pruned, x, "torch") as torch_pruned,
            ):
                times = interleaved_latency(
                    {"ort_dense": ort_dense, "ort_pruned": ort_pruned, "ort_pruned_r8": ort_r8,
                     "torch_dense": torch_dense, "torch_pruned": torch_pruned},
                    warmup=5, repeats=repeats,
                )  # fmt: skip
        row["latency_ms"] = {k: v.median_ms for k, v in times.items()}
        row["latency_p10_p90_ms"] = {k: [v.p10_ms, v.p90_ms] for k, v in times.items()}
    except Exception as err:
        row["failed"] = f"{stage}: {_reason(err)}"
        row["traceback"] = traceback.format_exc()[-1500:]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | params (M) | MACs ratio (r8) | exporter | max rel diff dense / pruned "
        "| ORT dense (ms) | ORT pruned (ms) | ORT speed-up | ORT speed-up, round_to=8 "
        "| torch dense (ms) | torch pruned (ms) | torch speed-up |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    failed = []
    for r in rows:
        if "failed" in r:
            failed.append(f"- `{r['model']}`: {r['failed']}")
            continue
        ms = r["latency_ms"]
        kinds = ("dense", "pruned", "pruned_r8")
        exporters = sorted({r[k]["exporter"] for k in kinds})
        rel = max(r["pruned"]["max_rel_diff"], r["pruned_r8"]["max_rel_diff"])
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.1f} | {r['macs_ratio']:.3f} "
            f"({r['macs_ratio_r8']:.3f}) | {' / '.join(exporters)} | "
            f"{r['dense']['max_rel_diff']:.1e} / {rel:.1e} | "
            f"{ms['ort_dense']:.2f} | {ms['ort_pruned']:.2f} | "
            f"{ms['ort_dense'] / ms['ort_pruned']:.2f}x | "
            f"{ms['ort_dense'] / ms['ort_pruned_r8']:.2f}x | "
            f"{ms['torch_dense']:.2f} | {ms['torch_pruned']:.2f} | "
            f"{ms['torch_dense'] / ms['torch_pruned']:.2f}x |"
        )
    out = "\n".join(lines)
    if failed:
        out += "\n\nNot exported or not timed:\n\n" + "\n".join(failed)
    return out + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT.parent / "runs/bench/export_sweep")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per model")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per model")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.repeats)), flush=True)
        return
    run_per_model(
        __file__, args.only or MODELS, args.out, timeout=args.timeout, table=table,
        extra_args=["--repeats", str(args.repeats)],
    )  # fmt: skip


if __name__ == "__main__":
    main()
