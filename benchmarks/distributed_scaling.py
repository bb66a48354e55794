"""Time one process against two: LLM pruning with the calibration split (Wanda, SparseGPT on
SmolLM2-135M) and DDP fine-tuning (an MNIST MLP), one thread per process, medians of repeats.

Each world size is one :func:`prunekit.distributed.run_processes` group; every rank loads its
inputs once, then runs the timed job ``--repeats`` times between barriers. Wall time is the
slowest rank's; CPU time is per rank (``time.process_time``), which shows the split of the work
even on a loaded machine. The LLM runs also compare every mask's SHA-256 between world sizes.

    python benchmarks/distributed_scaling.py --out runs/bench/distributed
    python benchmarks/distributed_scaling.py --quick --out /tmp/dist   # 4 blocks, fewer steps
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from prunekit.distributed import DDPConfig, finetune_ddp, prune_llm_distributed, run_processes

DATA = Path("/work/shared/data")


def _timed(job: Callable[[], Any], repeats: int) -> tuple[list[float], list[float], Any]:
    """Wall (slowest rank) and own CPU seconds of each repeat, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        dist.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        result = job()
        cpu = time.process_time() - cpu
        dist.barrier()
        seconds = torch.tensor([time.perf_counter() - wall])
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        walls.append(float(seconds))
        cpus.append(cpu)
    return walls, cpus, result


def llm_job(
    methods: list[str],
    blocks: int | None,
    n_samples: int,
    seq_len: int,
    repeats: int,
    masks_to: str | None = None,
) -> Any:
    """Load SmolLM2 once, then time each method; a digest of the masks for comparison (and,
    with ``masks_to``, rank 0's masks in ``{masks_to}/{method}-{world}.safetensors``)."""
    from prunekit.llm import LLMPruneConfig, calibration_windows, load_model
    from prunekit.masks import masks_of

    model, tokenizer = load_model("smollm2")
    if blocks is not None:
        model.model.layers = model.model.layers[:blocks]
        model.config.num_hidden_layers = blocks
    windows = calibration_windows(
        tokenizer, DATA / "wikitext-2/valid.txt", n_samples=n_samples, seq_len=seq_len
    )
    out = {}
    for method in methods:
        config = LLMPruneConfig(method=method, sparsity=0.5)
        walls, cpus, result = _timed(
            lambda c=config: prune_llm_distributed(model, windows, c), repeats
        )
        digest = hashlib.sha256()
        for name, mask in sorted(masks_of(result.model).items()):
            digest.update(name.encode() + mask.to(torch.uint8).numpy().tobytes())
        if masks_to is not None and dist.get_rank() == 0:
            from safetensors.torch import save_file

            masks = {k: v.bool().contiguous() for k, v in masks_of(result.model).items()}
            save_file(masks, str(Path(masks_to) / f"{method}-{dist.get_world_size()}.safetensors"))
        out[method] = {"wall": walls, "cpu": cpus, "masks_sha256": digest.hexdigest()}
    return out


def ddp_job(steps: int, batch_size: int, width: int, repeats: int) -> Any:
    from prunekit.data import load_dataset

    data = load_dataset("mnist", "train")
    flat = torch.utils.data.TensorDataset(data.tensors[0].flatten(1), data.tensors[1])

    def job() -> Any:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(784, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 10),
        )
        config = DDPConfig(batch_size=batch_size, max_steps=steps, lr=0.05, momentum=0.9)
        return finetune_ddp(model, flat, config)

    walls, cpus, result = _timed(job, repeats)
    return {"ddp": {"wall": walls, "cpu": cpus, "final_loss": result.losses[-1]}}


def first_difference(folder: Path, method: str) -> dict[str, Any]:
    """Which layers' masks differ between the saved 1- and 2-process runs, in model order, and
    how many weights flipped in each."""
    from safetensors.torch import load_file

    one = load_file(str(folder / f"{method}-1.safetensors"))
    two = load_file(str(folder / f"{method}-2.safetensors"))

    def order(name: str) -> tuple[int, str]:
        parts = name.split(".")
        index = next((int(p) for p in parts if p.isdigit()), -1)
        return index, name

    differ = {
        name: int((one[name] != two[name]).sum())
        for name in sorted(one, key=order)
        if not torch.equal(one[name], two[name])
    }
    return {"layers": len(one), "differing": differ, "identical": not differ}


def _summary(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0's wall times and extras, every rank's median CPU time."""
    return {
        "wall_median_s": statistics.median(per_rank[0]["wall"]),
        "wall_s": per_rank[0]["wall"],
        "cpu_median_per_rank_s": [statistics.median(r["cpu"]) for r in per_rank],
        **{k: v for k, v in per_rank[0].items() if k not in ("wall", "cpu")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/distributed"))
    parser.add_argument("--quick", action="store_true", help="4 blocks, 20 DDP steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8, help="calibration windows")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--jobs", default="wanda,sparsegpt,ddp")
    parser.add_argument("--blocks", type=int, default=None, help="first N blocks only")
    parser.add_argument(
        "--save-masks", action="store_true", help="keep the masks; name the first differing layer"
    )
    args = parser.parse_args()
    blocks, steps = (4, 20) if args.quick else (args.blocks, 60)
    jobs = args.jobs.split(",")
    methods = [j for j in jobs if j != "ddp"]
    rows: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    masks_to = str(args.out) if args.save_masks else None
    for world in (1, 2):
        results: dict[str, list[dict[str, Any]]] = {}
        if methods:
            out = run_processes(
                llm_job, world, methods, blocks, args.samples, args.seq_len, args.repeats, masks_to
            )
            results.update({m: [rank[m] for rank in out] for m in methods})
        if "ddp" in jobs:
            out = run_processes(ddp_job, world, steps, 256, 1024, args.repeats)
            results["ddp"] = [rank["ddp"] for rank in out]
        for job, per_rank in results.items():
            what = (
                f"DDP MLP 784-1024-1024-10, {steps} steps of 256"
                if job == "ddp"
                else f"{job} SmolLM2 {blocks or 30} blocks, {args.samples}x{args.seq_len} tokens"
            )
            rows.append({"job": job, "what": what, "world_size": world, **_summary(per_rank)})
            print(json.dumps(rows[-1]), flush=True)
    if masks_to is not None:
        for method in methods:
            print(json.dumps({method: first_difference(args.out, method)}), flush=True)
    meta = {"load_average": os.getloadavg(), "threads_per_process": 1, "repeats": args.repeats}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "| job | processes | wall median (s) | CPU per rank (s) | speed-up | masks as 1 process |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (jobs.index(r["job"]), r["world_size"])):
        one = next(r for r in rows if r["job"] == row["job"] and r["world_size"] == 1)
        cpu = ", ".join(f"{c:.1f}" for c in row["cpu_median_per_rank_s"])
        speed = one["wall_median_s"] / row["wall_median_s"]
        wall = f"{row['wall_median_s']:.1f}"
        same = "" if "masks_sha256" not in row else row["masks_sha256"] == one["masks_sha256"]
        cells = f"{row['world_size']} | {wall} | {cpu} | x{speed:.2f} | {same}"
        lines.append(f"| {row['what']} | {cells} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
