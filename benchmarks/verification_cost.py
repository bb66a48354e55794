"""What verified structural pruning costs, against Torch-Pruning: time and peak extra memory.

Three arms on the same model (torchvision, ``weights=None``, seeded; an all-zero weight matrix,
torchvision ViT's head, is re-drawn so that verification is not vacuous), 1 CPU thread, a
1x3xSxS example input:

- ``prunekit``: the default structural call ``prunekit.prune(model, x, sparsity=...,
  granularity="channel")``: trace, score, select, surgery, fast verification, metrics;
- ``prunekit_exhaustive``: the same with ``verify_exhaustive=True`` (float64 copies);
- ``torch_pruning``: ``tp.pruner.MagnitudePruner(model, x, importance=MagnitudeImportance(p=1),
  pruning_ratio=..., ignored_layers=[final classifier])`` then ``step()``; for torchvision ViT,
  Torch-Pruning's documented handling (``round_to`` = the number of heads, then
  ``model.hidden_dim = model.conv_proj.out_channels``).

Every measurement runs in a fresh process (this script with ``--child``): both libraries are
warmed up on a tiny network, the model is built and run once on the example input (so the
memory its own forward pass needs is not counted), then only the pruning call is measured: wall
and CPU time, and peak extra memory = peak RSS during the call minus the RSS before it (the
kernel's peak counter, reset just before the call). Repeats are interleaved (every model and arm
once, then again) and medians are reported, with the ratios prunekit / Torch-Pruning.

Run: ``nice -n 5 python benchmarks/verification_cost.py benchmarks/configs/verification_cost.yaml``
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ARMS = ("prunekit", "prunekit_exhaustive", "torch_pruning")
MARK = "RESULT "


# --- the child: one measurement --------------------------------------------------------------


def _status(key: str) -> int:
    """A ``/proc/self/status`` value in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


class PeakRSS:
    """Peak RSS during a block: the kernel's high-water mark, reset before the block through
    ``/proc/self/clear_refs``; where that is refused, a thread samples RSS every millisecond."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status("VmRSS"))
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak = _status("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _status("VmRSS"))


def _build(name: str, size: int) -> tuple[Any, Any]:
    import torch

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2 and not bool(param.any()):
                param.normal_(0.0, 0.02)  # a zero-initialised head makes every output 0
    return model, torch.randn(1, 3, size, size)


def _final_layer(model: Any) -> Any:
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]


def _torch_pruning(model: Any, x: Any, sparsity: float) -> Callable[[], Any]:
    import torch_pruning as tp
    from torchvision.models.vision_transformer import VisionTransformer

    def run() -> Any:
        vit = isinstance(model, VisionTransformer)
        tp.pruner.MagnitudePruner(
            model, x, importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=sparsity, ignored_layers=[_final_layer(model)],
            round_to=model.encoder.layers[0].num_heads if vit else None,
        ).step()  # fmt: skip
        if vit:  # torchvision's forward reads this width (Torch-Pruning's example does this)
            model.hidden_dim = model.conv_proj.out_channels
        return model

    return run


def _prunekit(model: Any, x: Any, sparsity: float, exhaustive: bool) -> Callable[[], Any]:
    import prunekit

    options: dict[str, Any] = {"verify_exhaustive": True} if exhaustive else {}
    return lambda: prunekit.prune(model, x, sparsity=sparsity, granularity="channel", **options)


def _warm_up() -> None:
    """Pay both libraries' one-off costs (imports, first-call caches) before measuring."""
    import torch
    import torch_pruning as tp
    from torch import nn

    import prunekit

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(1, 3, 8, 8)
    prunekit.prune(net, x, sparsity=0.5, granularity="channel")
    prunekit.prune(net, x, sparsity=0.5, granularity="channel", verify_exhaustive=True)
    importance = tp.importance.MagnitudeImportance(p=1)
    tp.pruner.MagnitudePruner(net, x, importance=importance, pruning_ratio=0.5).step()


def measure_one(name: str, arm: str, sparsity: float, size: int) -> dict[str, Any]:
    """One measurement of ``arm`` on model ``name`` (in this process, which must be fresh)."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the BatchNorm recalibration hint, Torch-Pruning's notes
    _warm_up()
    model, x = _build(name, size)
    n_params = sum(p.numel() for p in model.parameters())
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with torch.no_grad():
        model(x)
    if arm == "torch_pruning":
        run = _torch_pruning(model, x, sparsity)
    else:
        run = _prunekit(model, x, sparsity, arm == "prunekit_exhaustive")
    gc.collect()
    before = _status("VmRSS")
    with PeakRSS() as peak:
        cpu, wall = time.process_time(), time.perf_counter()
        result = run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pruned = result if arm == "torch_pruning" else result.model
    row: dict[str, Any] = {
        "model": name, "arm": arm, "wall_s": wall, "cpu_s": cpu,
        "peak_extra_mb": (peak.peak - before) / 2**20, "model_mb": model_bytes / 2**20,
        "params_ratio": sum(p.numel() for p in pruned.parameters()) / n_params,
    }  # fmt: skip
    if arm != "torch_pruning" and result.verification is not None:
        row["verified_dtype"] = result.verification.dtype
        row["relative_diff"] = result.verification.relative_diff
    with torch.no_grad():
        row["runs"] = tuple(pruned(x).shape) == (1, 1000)
    return row


# --- the parent: interleaved repeats, medians, table -------------------------------------------


def _child(name: str, arm: str, config: Mapping[str, Any]) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", name, arm,
        str(config["sparsity"]), str(config.get("input_size", 224)),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=config.get("timeout_s", 900)
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} / {arm} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len(MARK) :]))


def summarise(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    """Medians per model and arm, with prunekit / Torch-Pruning ratios."""
    summary = []
    for name in models:
        medians: dict[str, dict[str, Any]] = {}
        for arm in ARMS:
            mine = [r for r in rows if r["model"] == name and r["arm"] == arm]
            if not mine:
                continue
            keys = ("wall_s", "cpu_s", "peak_extra_mb")
            medians[arm] = {k: statistics.median(r[k] for r in mine) for k in keys}
            medians[arm].update(model=name, arm=arm, repeats=len(mine))
            medians[arm]["model_mb"] = mine[0]["model_mb"]
            medians[arm]["params_ratio"] = mine[0]["params_ratio"]
            medians[arm]["extra_over_model"] = medians[arm]["peak_extra_mb"] / mine[0]["model_mb"]
        tp = medians.get("torch_pruning")
        for m in medians.values():
            for k in ("wall_s", "cpu_s", "peak_extra_mb"):
                m[f"{k}_ratio_to_tp"] = m[k] / tp[k] if tp and tp[k] > 0 else None
            summary.append(m)
    return summary


def _table(summary: Sequence[Mapping[str, Any]]) -> str:
    from common import markdown_table

    def ratio(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"

    header = [
        "model", "model MB", "arm", "wall s", "CPU s", "peak extra MB", "extra / model",
        "wall / TP", "CPU / TP", "memory / TP", "params after/before",
    ]  # fmt: skip
    rows = [
        [
            m["model"],
            round(m["model_mb"]),
            m["arm"],
            m["wall_s"],
            m["cpu_s"],
            round(m["peak_extra_mb"]),
            m["extra_over_model"],
            ratio(m["wall_s_ratio_to_tp"]),
            ratio(m["cpu_s_ratio_to_tp"]),
            ratio(m["peak_extra_mb_ratio_to_tp"]),
            m["params_ratio"],
        ]
        for m in summary
    ]
    return markdown_table(header, rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, name, arm, sparsity, size = sys.argv
        print(MARK + json.dumps(measure_one(name, arm, float(sparsity), int(size))))
        return
    from common import environment, parse_args, write_results

    config, out = parse_args(__doc__.splitlines()[0] if __doc__ else None)
    models, arms = list(config["models"]), list(config.get("arms", ARMS))
    rows = []
    for repeat in range(config.get("repeats", 3)):
        for name in models:
            for arm in arms:
                row = _child(name, arm, config)
                row["repeat"] = repeat
                rows.append(row)
                print(
                    f"[{repeat}] {name:12s} {arm:20s} wall {row['wall_s']:6.2f}s "
                    f"cpu {row['cpu_s']:6.2f}s extra {row['peak_extra_mb']:7.0f} MB",
                    flush=True,
                )
    summary = summarise(rows, models)
    results = {"config": config, "environment": environment(), "rows": rows, "summary": summary}
    write_results(out, results, _table(summary))


if __name__ == "__main__":
    main()
