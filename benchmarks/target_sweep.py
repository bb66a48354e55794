"""Budgets on every torchvision classification model: does ``select_to_target`` hit the target?

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (built with
``weights=None``), in a fresh single-threaded process per model with a time limit:

1. ``nn.MultiheadAttention`` made head-prunable (as structural pruning does), then the traced
   groups of :func:`prunekit.graph.build_structural_groups`;
2. magnitude scores (``prunekit.get_estimator("magnitude")``);
3. for each target (``macs=0.5``, ``params=0.5``): :func:`prunekit.budget.select_to_target`
   with the default :class:`~prunekit.core.SelectionConfig` (global, floor 10% per group),
   timed; then real surgery (:func:`prunekit.surgery.apply_surgery`) and the measured ratio
   (:func:`prunekit.measure.count_macs` / :func:`prunekit.measure.count_params`), and the
   narrowest kept fraction of any group.

Results are appended to ``<out>/results.json`` as each model finishes (a rerun skips models
already there); ``<out>/results.md`` holds the table. Models prunekit cannot trace or prune are
listed with the reason.

    OMP_NUM_THREADS=1 python benchmarks/target_sweep.py [--out runs/bench/target_sweep]
        [--only resnet18 vit_b_16] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from common import run_per_model

ROOT = Path(__file__).resolve().parent
TARGETS = ("macs=0.5", "params=0.5")
LAST = ("vit_h_14", "regnet_y_128gf", "vit_l_16", "vit_l_32", "regnet_y_32gf", "regnet_x_32gf")
"""The largest models, run last so that the rest of the table fills first."""


def _torchvision() -> Any:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    return torchvision


def model_names() -> list[str]:
    names = sorted(_torchvision().models.list_models(module=_torchvision().models))
    return [n for n in names if n not in LAST] + [n for n in LAST if n in names]


def _build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {}
    size = 224
    if name in ("inception_v3", "googlenet"):
        kwargs = {"aux_logits": False, "init_weights": False}
        size = 299 if name == "inception_v3" else 224
    model = _torchvision().models.get_model(name, weights=None, **kwargs).eval()
    return model, torch.randn(1, 3, size, size)


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return f"{type(err).__name__}: {text}"


def run_one(name: str) -> dict[str, Any]:
    """Trace, score, and meet each target on one model; every stage's failure is recorded."""
    from prunekit.budget import parse_target, select_to_target
    from prunekit.config import PruneConfig
    from prunekit.estimators import get_estimator
    from prunekit.graph import build_structural_groups
    from prunekit.measure import count_macs, count_params
    from prunekit.surgery.apply import apply_surgery
    from prunekit.surgery.convert import replace_multihead_attention

    torch.set_num_threads(1)
    model, x = _build(name)
    row: dict[str, Any] = {"model": name, "params": count_params(model)}
    start = time.perf_counter()
    try:
        model, _ = replace_multihead_attention(model, share_tensors=True)
        groups = build_structural_groups(model, x)
    except Exception as err:
        row["failed"] = "trace: " + _reason(err)
        return row
    row["trace_s"] = time.perf_counter() - start
    row["groups"] = len(groups)
    if not groups:
        row["failed"] = "trace found no prunable group"
        return row
    try:
        scores = get_estimator("magnitude").score(model, groups, None)
    except Exception as err:
        row["failed"] = "score: " + _reason(err)
        return row
    dense = {"macs": count_macs(model, x).total, "params": count_params(model)}
    row["macs"] = dense["macs"]
    # prunekit's default selection for channels (per layer, 10% floor); the target replaces sparsity
    config = PruneConfig(granularity="channel", sparsity=0.5).selection()
    row["targets"] = {}
    for text in TARGETS:
        target = parse_target(text)
        entry: dict[str, Any] = {}
        row["targets"][text] = entry
        try:
            start = time.perf_counter()
            selection = select_to_target(model, x, groups, scores, config, target)
            entry["time_s"] = time.perf_counter() - start
            pruned, _ = apply_surgery(model, groups, selection)
            entry["params_ratio"] = count_params(pruned) / dense["params"]
            entry["narrowest"] = min(float(k.float().mean()) for k in selection.values())
            entry["macs_ratio"] = count_macs(pruned, x).total / dense["macs"]
        except Exception as err:
            entry["failed"] = _reason(err)
            entry["traceback"] = traceback.format_exc()[-1500:]
            continue
        achieved = entry[f"{target.metric}_ratio"]
        entry["achieved"] = achieved
        entry["error"] = achieved / target.keep - 1
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | params (M) | target | achieved | error | other ratio | narrowest group "
        "| select_to_target (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    failed = []
    for r in rows:
        if "failed" in r:
            failed.append(f"- `{r['model']}`: {r['failed']}")
            continue
        for text, e in r.get("targets", {}).items():
            if "failed" in e and "achieved" not in e:
                lines.append(f"| {r['model']} | {r['params'] / 1e6:.1f} | {text} | fails: "
                             f"{e['failed'][:90]} | | | | |")  # fmt: skip
                continue
            other = "macs_ratio" if text.startswith("params") else "params_ratio"
            lines.append(
                f"| {r['model']} | {r['params'] / 1e6:.1f} | {text} | {e['achieved']:.4f} | "
                f"{100 * e['error']:+.2f}% | {e.get(other, float('nan')):.3f} | "
                f"{e['narrowest']:.2f} | {e['time_s']:.2f} |"
            )
    out = "\n".join(lines)
    if failed:
        out += "\n\nNot traced or not pruned:\n\n" + "\n".join(failed)
    return out + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT.parent / "runs/bench/target_sweep")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one)), flush=True)
        return
    run_per_model(
        __file__, args.only or model_names(), args.out, timeout=args.timeout, table=table,
        extra_args=(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
