"""Latency-aware widths: MACs targets with fixed rounding vs the measured fastest step vs a
latency target, timed in onnxruntime or OpenVINO at batch 1 on one thread.

For each torchvision model (``weights=None``, one 1x3x224x224 input) and ``--runtime`` R:

1. ``step = prunekit.budget.latency.fastest_step(model, x, RuntimeTimer(R))``: the width step
   the runtime runs fastest, measured on the model's heaviest layer of each kind;
2. ``prunekit.prune(model, x, granularity="channel", target={"macs": 0.5}, round_to=W)`` for
   W in 1, 8 and ``step``, and ``target={"latency": 0.5, "runtime": R}`` with ``round_to=step``
   (magnitude scores, surgery, ``--exclude`` patterns kept whole), each timed (wall seconds of
   the prune call);
3. dense and every pruned model timed together in R (one thread, interleaved, order rotated,
   ``--repeats`` rounds after 5 warm-up rounds, medians of the calling thread's CPU time, see
   :class:`~prunekit.budget.latency.RuntimeTimer`): latency ratio to dense.

    OMP_NUM_THREADS=1 python benchmarks/latency_widths.py --model resnet50
        [--runtime onnxruntime|openvino] [--exclude conv_proj] [--repeats 40]
        [--out runs/bench/latency_widths]

A vision transformer is pruned in its heads and MLP neurons with ``--exclude conv_proj``
(torchvision's ``VisionTransformer`` reshapes by its ``hidden_dim`` attribute, so the residual
width must stay whole).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch


def _run(
    name: str, runtime: str, exclude: list[str], repeats: int, statistic: str
) -> dict[str, Any]:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    import prunekit
    from prunekit.budget.latency import RuntimeTimer, fastest_step
    from prunekit.measure import count_macs

    torch.manual_seed(0)
    dense = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    timer = RuntimeTimer(runtime)
    start = time.perf_counter()
    step = fastest_step(dense, x, timer)
    row: dict[str, Any] = {"model": name, "runtime": runtime, "step": step,
                           "statistic": statistic, "exclude": exclude,
                           "step_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    variants = {
        "macs=0.5 round_to=1": ({"macs": 0.5}, 1),
        "macs=0.5 round_to=8": ({"macs": 0.5}, 8),
        f"macs=0.5 round_to={step} (auto)": ({"macs": 0.5}, step),
        f"latency=0.5 round_to={step} (auto)": ({"latency": 0.5, "runtime": runtime}, step),
    }
    models = {"dense": dense}
    dense_macs = count_macs(dense, x).total
    row["variants"] = {}
    for label, (target, round_to) in variants.items():
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = prunekit.prune(dense, x, granularity="channel", target=target,
                                    round_to=round_to, metrics=False,
                                    exclude=exclude)  # fmt: skip
        models[label] = result.model.eval()
        row["variants"][label] = {
            "prune_seconds": round(time.perf_counter() - start, 1),
            "macs_ratio": round(count_macs(result.model, x).total / dense_macs, 4),
            "warnings": [str(w.message)[:200] for w in caught if "target" in str(w.message)],
        }
        print(label, row["variants"][label], flush=True)
    final = RuntimeTimer(runtime, warmup=5, repeats=repeats, statistic=statistic).time(models, x)
    row["dense_ms"] = round(final["dense"], 3)
    for label in variants:
        row["variants"][label]["ms"] = round(final[label], 3)
        row["variants"][label]["latency_ratio"] = round(final[label] / final["dense"], 4)
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | runtime | variant | MACs ratio | ms (b1, 1 thread) | latency ratio | prune s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        where = f"| {row['model']} | {row.get('runtime', 'onnxruntime')} |"
        lines.append(f"{where} dense | 1.0 | {row['dense_ms']:.2f} | 1.0 | |")
        for label, v in row["variants"].items():
            lines.append(
                f"{where} {label} | {v['macs_ratio']:.3f} | {v['ms']:.2f} | "
                f"{v['latency_ratio']:.3f} | {v['prune_seconds']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/latency_widths"))
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--runtime", choices=("onnxruntime", "openvino"), default="onnxruntime")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--statistic", choices=("median", "min"), default="median")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    for name in args.model or ["mobilenet_v2", "resnet50"]:
        key = (name, args.runtime)
        rows = [r for r in rows if (r["model"], r.get("runtime", "onnxruntime")) != key]
        rows.append(_run(name, args.runtime, args.exclude, args.repeats, args.statistic))
        path.write_text(json.dumps(rows, indent=1))
        (args.out / "results.md").write_text(_table(rows) + "\n")
    print(_table(rows))


if __name__ == "__main__":
    main()
