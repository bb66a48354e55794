"""Structural pruning sweep: prunekit and Torch-Pruning side by side on real architectures.

For every model of the config (torchvision constructors, timm, tiny Hugging Face configs) this
runs, in a fresh process per model (a crash or a hang cannot take the sweep down):

- prunekit: ``prunekit.prune(model, x, sparsity, granularity="channel")`` without verification
  (timed: trace + score + select + surgery), then :func:`prunekit.surgery.verify` (float64),
  params and MACs before / after, CPU latency before / after;
- Torch-Pruning: ``MagnitudePruner`` at the same ratio with the final layer ignored (timed:
  graph + pruning), whether the pruned model runs with outputs of the original shape, params
  and MACs (counted by the same prunekit counter).

``--speed`` instead times trace + group against Torch-Pruning's
``DependencyGraph().build_dependency`` + ``get_all_groups`` in one process, interleaved,
reporting medians of CPU time (``time.process_time``: the machine is shared) and of wall time.

    python benchmarks/structural_sweep.py benchmarks/configs/structural_sweep.yaml [--quick]
    python benchmarks/structural_sweep.py benchmarks/configs/structural_sweep.yaml --speed
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, markdown_table, read_config, write_results
from sweep_models import (
    build,
    call,
    model_names,
    n_params,
    output_leaves,
    prunekit_options,
    redraw_zero_weights,
    torch_pruning_prune,
)
from sweep_speed import speed


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run_prunekit(model: nn.Module, inputs: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    import prunekit
    from prunekit.measure import count_macs, measure_latency

    row: dict[str, Any] = {}
    kwargs = prunekit_options(config)
    _, row["time_s"] = _timed(lambda: prunekit.prune(model, inputs, **kwargs))
    kwargs["verify"] = True  # the same call with verification (what a user gets by default)
    result, total = _timed(lambda: prunekit.prune(model, inputs, **kwargs))
    row["verify_s"] = max(total - row["time_s"], 0.0)
    row["groups"] = len(result.groups)
    report = result.verification
    row["verified"] = "yes" if report.complete else f"{len(report.unverified)} unverified"
    if report.vacuous:
        row["verified"] = "vacuous (all outputs 0)"
    if result.kept_unverifiable:
        row["verified"] += f", {len(result.kept_unverifiable)} kept"
    row["max_rel_diff"] = report.max_abs_diff / report.scale if report.scale else 0.0
    row["fresh_inputs"], row["paths"] = report.fresh_inputs, report.paths
    pruned = result.model
    row["params_ratio"] = n_params(pruned) / n_params(model)
    row["macs_ratio"] = count_macs(pruned, inputs).total / max(count_macs(model, inputs).total, 1)
    lat = config["latency"]
    row["latency_before_ms"] = measure_latency(model, inputs, **lat).median_ms
    row["latency_after_ms"] = measure_latency(pruned, inputs, **lat).median_ms
    return row


def run_torch_pruning(model: nn.Module, inputs: Any, config: Mapping[str, Any]) -> dict[str, Any]:

    from prunekit.measure import count_macs

    row: dict[str, Any] = {}
    target = copy.deepcopy(model)
    want = [t.shape for t in output_leaves(call(model, inputs))]

    try:
        _, row["time_s"] = _timed(lambda: torch_pruning_prune(target, inputs, config))
        got = [t.shape for t in output_leaves(call(target, inputs))]
    except Exception as err:
        row["ok"] = f"fails: {type(err).__name__}: {str(err).splitlines()[0][:80]}"
        return row
    row["ok"] = "yes" if got == want else "output shape changed"
    row["params_ratio"] = n_params(target) / n_params(model)
    if n_params(target) == n_params(model):
        row["ok"] = "pruned nothing"
    row["macs_ratio"] = count_macs(target, inputs).total / max(count_macs(model, inputs).total, 1)
    return row


def warm_up() -> None:
    """Pay both libraries' one-off costs (imports, first-call caches) before any timing."""
    import torch_pruning as tp

    import prunekit

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(1, 3, 8, 8)
    prunekit.prune(
        net, x, sparsity=0.5, granularity="channel", verify=False, metrics=False, recalibrate=False
    )
    importance = tp.importance.MagnitudeImportance(p=1)
    tp.pruner.MagnitudePruner(copy.deepcopy(net), x, importance=importance).step()


def run_one(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    warm_up()
    model, inputs, _ = build(name, config)
    row: dict[str, Any] = {"model": name, "params": n_params(model)}
    row["redrawn"] = redraw_zero_weights(model)
    if n_params(model) > config["max_params"]:
        row["skipped"] = f"> {config['max_params'] / 1e6:.0f}M params"
        return row
    try:
        row["prunekit"] = run_prunekit(model, inputs, config)
        row["prunekit"]["ok"] = "yes"
    except Exception as err:
        from prunekit.errors import PrunekitError

        message = str(err).splitlines()[0][:300] if str(err) else ""
        row["prunekit"] = {"ok": f"fails: {type(err).__name__}: {message}"}
        row["prunekit"]["refused"] = isinstance(err, PrunekitError)
        row["traceback"] = traceback.format_exc()[-2000:]
    if config.get("torch_pruning"):
        signal.signal(signal.SIGALRM, _too_slow)
        signal.alarm(int(config.get("torch_pruning_timeout_s", 300)))
        try:
            row["torch_pruning"] = run_torch_pruning(model, inputs, config)
        except TimeoutError:
            row["torch_pruning"] = {"ok": "timeout"}
        except Exception as err:
            row["torch_pruning"] = {"ok": f"fails: {type(err).__name__}"}
        finally:
            signal.alarm(0)
    return row


def _too_slow(signum: int, frame: Any) -> None:
    raise TimeoutError("Torch-Pruning ran past its time limit")


# --- driver ---------------------------------------------------------------------------------------


def _cell(row: Mapping[str, Any], lib: str, key: str, fmt: str = "{:.2f}") -> str:
    value = row.get(lib, {}).get(key)
    return "" if value is None else fmt.format(value) if isinstance(value, float) else str(value)


def sweep_table(rows: list[dict[str, Any]]) -> str:
    header = [
        "model", "params (M)", "prunekit", "verified", "params", "MACs", "trace+prune (s)",
        "latency ms (before -> after)", "Torch-Pruning", "TP params", "TP MACs", "TP time (s)",
    ]  # fmt: skip
    body = []
    for r in rows:
        if "skipped" in r:
            body.append([r["model"], f"{r['params'] / 1e6:.1f}", "skipped: " + r["skipped"]])
            continue
        pk = r.get("prunekit", {})
        latency = (
            f"{pk['latency_before_ms']:.1f} -> {pk['latency_after_ms']:.1f}"
            if "latency_after_ms" in pk
            else ""
        )
        body.append([
            r["model"], f"{r['params'] / 1e6:.1f}", pk.get("ok", ""), pk.get("verified", ""),
            _cell(r, "prunekit", "params_ratio"), _cell(r, "prunekit", "macs_ratio"),
            _cell(r, "prunekit", "time_s"), latency,
            r.get("torch_pruning", {}).get("ok", ""), _cell(r, "torch_pruning", "params_ratio"),
            _cell(r, "torch_pruning", "macs_ratio"), _cell(r, "torch_pruning", "time_s"),
        ])  # fmt: skip
    return markdown_table(header, [[*b, *[""] * (len(header) - len(b))] for b in body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--speed", action="store_true", help="only the trace + group timing")
    parser.add_argument("--wide", action="store_true", help="the wide timm + HF list instead")
    parser.add_argument("--only", nargs="*", default=None, help="model names (source:name)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    config = read_config(args.config, args.quick)
    wide = config.pop("wide", {}) or {}
    if args.wide:
        config.update(wide, wide=True)
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, config)), flush=True)
        return
    out = args.out or ROOT.parent / "runs" / "bench" / (
        args.config.stem
        + ("-quick" if args.quick else "")
        + ("-speed" if args.speed else "")
        + ("-wide" if args.wide else "")
    )
    if args.speed:
        rows = speed(config)
        table = markdown_table(
            [
                "model",
                "trace+group: prunekit CPU s",
                "Torch-Pruning CPU s",
                "ratio (CPU)",
                "ratio (wall)",
                "whole prune: prunekit CPU s",
                "Torch-Pruning CPU s",
                "ratio (CPU)",
            ],
            [
                [
                    k,
                    r["prunekit_cpu_s"],
                    r["torch_pruning_cpu_s"],
                    r["ratio_cpu"],
                    r["ratio_wall"],
                    r["prune_prunekit_cpu_s"],
                    r["prune_torch_pruning_cpu_s"],
                    r["prune_ratio_cpu"],
                ]
                for k, r in rows.items()
            ],
        )
        write_results(out, {"environment": environment(), "speed": rows}, table)
        return
    names = args.only or model_names(config)
    results: list[dict[str, Any]] = []
    for name in names:
        command = [sys.executable, __file__, str(args.config), "--one", name]
        command += ["--quick"] if args.quick else []
        command += ["--wide"] if args.wide else []
        start = time.perf_counter()
        row: dict[str, Any]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=config["timeout_s"]
            )
            lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            row = (
                json.loads(lines[-1][7:])
                if lines
                else {"model": name, "params": 0, "prunekit": {"ok": "crashed"},
                      "stderr": done.stderr[-2000:]}
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            row = {"model": name, "params": 0, "prunekit": {"ok": "timeout"}}
        row["wall_s"] = time.perf_counter() - start
        results.append(row)
        print(name, row.get("prunekit", {}).get("ok"), row.get("torch_pruning", {}).get("ok"),
              f"{row['wall_s']:.0f}s", flush=True)  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        (out / "partial.json").write_text(json.dumps(results, indent=2))
    write_results(out, {"environment": environment(), "models": results}, sweep_table(results))


if __name__ == "__main__":
    main()
